"""Decoding: every image mode a user may have, compared with what PaddleClas's ``cv2.imread`` reads.

PaddleClas decodes with ``cv2.imread(path)`` (IMREAD_COLOR: 3 channels, alpha dropped, 16 bit
reduced to 8 bit, EXIF orientation applied) and flips BGR to RGB; we decode with Pillow and must
give the same pixels (JPEG: within decoder rounding), or fail with a one-line error naming the file.
"""

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from res2net.data.image import ImageError, escape_name, find_images, load_image, prepare_image


def cv2_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return img[:, :, ::-1]


@pytest.fixture(scope="module")
def photo():
    import skimage.data

    return skimage.data.chelsea()  # 300x451 RGB, CC0


def test_rgb_png_exact(tmp_path, photo):
    p = tmp_path / "a.png"
    Image.fromarray(photo).save(p)
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == photo.shape and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, photo)
    np.testing.assert_array_equal(out, cv2_rgb(p))


def test_jpeg_matches_cv2_within_rounding(tmp_path, photo):
    p = tmp_path / "a.jpg"
    Image.fromarray(photo).save(p, quality=90)
    diff = np.abs(load_image(p).astype(int) - cv2_rgb(p).astype(int))
    assert diff.max() <= 2 and diff.mean() <= 0.25, (diff.max(), diff.mean())


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "1", "CMYK"])
def test_modes_match_cv2(tmp_path, photo, mode):
    im = Image.fromarray(photo)
    if mode == "P":
        im = im.quantize(64)
    elif mode in ("RGBA", "LA"):
        im = im.convert(mode)
        alpha = Image.fromarray(np.tile(np.linspace(0, 255, im.width, dtype=np.uint8), (im.height, 1)))
        im.putalpha(alpha)  # alpha must be dropped, not blended (cv2.imread does not blend either)
    else:
        im = im.convert(mode)
    p = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    im.save(p)
    out = load_image(p)
    assert out.shape == (*photo.shape[:2], 3) and out.dtype == np.uint8
    ref = cv2_rgb(p)
    tol = 2 if mode == "CMYK" else 0  # CMYK JPEG: two decoders' colour conversions
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= tol


def test_grayscale_is_replicated(tmp_path, photo):
    p = tmp_path / "g.png"
    Image.fromarray(photo).convert("L").save(p)
    out = load_image(p)
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_matches_cv2(tmp_path, channels):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(40, 50) if channels == 1 else (40, 50, 3), dtype=np.uint16)
    p = tmp_path / "a16.png"
    assert cv2.imwrite(str(p), arr)
    np.testing.assert_array_equal(load_image(p), cv2_rgb(p))


def test_dark_16bit_stays_dark(tmp_path):
    # values < 256 in a 16-bit file are near-black: must not be taken for 8-bit data
    arr = np.full((16, 16), 200, np.uint16)
    p = tmp_path / "dark16.png"
    assert cv2.imwrite(str(p), arr)
    assert load_image(p).max() == 0
    np.testing.assert_array_equal(load_image(p), cv2_rgb(p))


def test_exif_rotation_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "rot.jpg"
    Image.fromarray(photo).save(p, exif=exif.tobytes(), quality=95)
    out = load_image(p)
    assert out.shape == (photo.shape[1], photo.shape[0], 3)
    ref = cv2_rgb(p)  # cv2 applies EXIF orientation as well
    assert ref.shape == out.shape
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 1.0


def test_other_sources(photo):
    np.testing.assert_array_equal(load_image(photo), photo)
    np.testing.assert_array_equal(load_image(Image.fromarray(photo)), photo)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "PNG")
    np.testing.assert_array_equal(load_image(buf.getvalue()), photo)
    gray = photo[:, :, 0]
    assert load_image(gray).shape == photo.shape
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    np.testing.assert_array_equal(load_image(rgba), photo)
    with pytest.raises(ImageError, match="uint8"):
        load_image(photo.astype(np.float32))


def _png_header_only(w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_bad_files_raise_one_clear_error(tmp_path, photo):
    jpg = tmp_path / "good.jpg"
    Image.fromarray(photo).save(jpg)
    cases = {
        "missing.jpg": (None, "no such file"),
        "empty.jpg": (b"", "empty"),
        "text.jpg": (b"this is not an image\n" * 10, "not an image"),
        "truncated.jpg": (jpg.read_bytes()[: len(jpg.read_bytes()) // 3], "corrupt or truncated"),
        "huge.png": (_png_header_only(200_000, 200_000), "refusing"),
    }
    for name, (data, message) in cases.items():
        p = tmp_path / name
        if data is not None:
            p.write_bytes(data)
        t = time.perf_counter()
        with pytest.raises(ImageError) as e:
            load_image(p)
        assert time.perf_counter() - t < 2.0  # a 40-gigapixel header is refused before decoding
        msg = str(e.value)
        assert str(p) in msg and message in msg and "\n" not in msg, msg


def test_find_images(tmp_path, photo):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/b.jpg", "d/a.PNG", "d/sub/c.jpeg", "d/notes.txt"):
        (tmp_path / rel).write_bytes(b"x")
    found = find_images([tmp_path / "d"])
    assert [f.relative_to(tmp_path).as_posix() for f in found] == ["d/a.PNG", "d/b.jpg", "d/sub/c.jpeg"]
    # explicit files are kept whatever their extension; globs filter; duplicates removed; order kept
    found = find_images([tmp_path / "d" / "notes.txt", str(tmp_path / "d" / "*.jpg"), tmp_path / "d" / "b.jpg"])
    assert [f.name for f in found] == ["notes.txt", "b.jpg"]
    # a name that matches nothing is kept, so that the caller reports it
    assert find_images([tmp_path / "nope.jpg"]) == [tmp_path / "nope.jpg"]


def tiff_rational_strip_offsets() -> bytes:
    """A 1x1 grey TIFF whose StripOffsets tag (273) is typed RATIONAL: Pillow 10-13 raise ``TypeError``
    on it (``'IFDRational' object cannot be interpreted as an integer``), found by fuzzing."""
    short, long_, rational = 3, 4, 5
    entries = [(256, short, 1), (257, short, 1), (258, short, 8), (259, short, 1), (262, short, 1)]
    entries += [(273, rational, None), (277, short, 1), (278, short, 1), (279, long_, 1)]
    data_at = 8 + 2 + 12 * len(entries) + 4  # header, IFD; then the rational, then the pixel
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, value in entries:
        out += struct.pack("<HHII" if kind != short else "<HHIHxx", tag, kind, 1, data_at if value is None else value)
    return out + struct.pack("<I", 0) + struct.pack("<II", data_at + 8, 1) + b"\x80"


def test_any_decoder_exception_is_that_files_image_error(tmp_path, monkeypatch, photo):
    p = tmp_path / "rational.tif"
    p.write_bytes(tiff_rational_strip_offsets())
    with pytest.raises(ImageError, match=r"rational.tif: corrupt image \(TypeError in the decoder") as e:
        load_image(p)
    assert "\n" not in str(e.value)
    with pytest.raises(ImageError, match=r"<\d+ bytes>: corrupt image \(TypeError"):
        load_image(p.read_bytes())
    # whatever a decoder raises (here: KeyError from a patched Pillow), it is the file's own error
    good = tmp_path / "good.png"
    Image.fromarray(photo).save(good)

    def broken_load(self):
        raise KeyError("mode table")

    monkeypatch.setattr(Image.Image, "load", broken_load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", broken_load)
    with pytest.raises(ImageError, match=r"good.png: corrupt image \(KeyError in the decoder"):
        load_image(good)


def test_prepare_image_names_the_input_whatever_the_transform_raises(tmp_path, photo):
    p = tmp_path / "a.png"
    Image.fromarray(photo).save(p)
    assert prepare_image(p, lambda im: im.shape) == photo.shape

    def transform(img):
        raise ZeroDivisionError("geometry")

    with pytest.raises(ImageError, match=r"a.png: cannot preprocess \(ZeroDivisionError: geometry\)"):
        prepare_image(p, transform)
    with pytest.raises(ImageError, match="corrupt image"):  # decoding failures keep their own message
        prepare_image(tiff_rational_strip_offsets(), transform)


def test_file_names_are_escaped_in_messages(tmp_path):
    assert escape_name("cat.jpg") == "cat.jpg" and escape_name("猫 café.jpg") == "猫 café.jpg"
    assert escape_name("a\nb\tc\rd\x1b[31m\x7f\u2028\\n.jpg") == "a\\nb\\tc\\rd\\x1b[31m\\x7f\\u2028\\\\n.jpg"
    forged = tmp_path / "x.jpg\nerror: all good.jpg"
    forged.write_bytes(b"not an image")
    with pytest.raises(ImageError) as e:
        load_image(forged)
    assert "\n" not in str(e.value) and "x.jpg\\nerror: all good.jpg" in str(e.value)
