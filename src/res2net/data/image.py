"""Decode any image a user may hand us into an RGB ``uint8`` array, or fail with a clear reason.

Handled: grayscale, palette, alpha (dropped, as PaddleClas's ``cv2.imread`` and timm's
``convert('RGB')`` do), CMYK, 16-bit, and EXIF orientation. Rejected with an
:class:`ImageError` naming the file: missing, zero bytes, not an image, truncated, and absurd
dimensions (checked from the header *before* decoding, so a decompression bomb costs nothing).

Pillow's decoders are a large attack surface: a malformed file can make them raise almost any
exception type (a TIFF whose ``StripOffsets`` tag is typed RATIONAL raises ``TypeError``). So
*every* exception while decoding one file becomes that file's :class:`ImageError`, and
:func:`prepare_image` — the one decode-and-preprocess step that prediction, evaluation, training,
calibration and the server share — extends the same promise to the preprocessing.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from res2net.errors import Res2NetError

ImageSource = str | Path | bytes | np.ndarray | Image.Image
T = TypeVar("T")

MAX_PIXELS = 100_000_000  # 100 Mpx: far above any camera photo, far below a decompression bomb
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


class ImageError(Res2NetError, ValueError):
    """An input image could not be decoded."""


# Control characters (C0, DEL, C1), the Unicode line/paragraph separators and the backslash itself.
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_char(m: re.Match) -> str:
    c = m.group()
    return "\\\\" if c == "\\" else c.encode("unicode_escape").decode("ascii")


def escape_name(name: str) -> str:
    """``name`` safe to print on one line: control characters as ``\\n``, ``\\t``, ``\\x1b`` ...
    and backslashes doubled (so the escaping cannot be forged either), as ``ls -b`` does.

    A file may legally be called ``"cat.jpg\\n0 class id(s): ..."``; printed raw, it would forge a
    result line in text output.
    """
    return _UNSAFE.sub(_escape_char, name)


def describe_source(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return escape_name(str(source))
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    if im.mode.startswith("I;16"):
        # 16-bit grayscale: keep the high byte, as cv2.imread(IMREAD_COLOR) does (a dark 16-bit
        # image must stay dark, not be mistaken for an 8-bit one).
        arr = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode == "I":
        # 32-bit integer pixels (some TIFF/PNG readers): 16-bit range when it exceeds 8 bits.
        arr = np.asarray(im, dtype=np.int64)
        arr = np.clip(arr >> 8, 0, 255) if arr.max(initial=0) > 255 else np.clip(arr, 0, 255)
        return np.repeat(arr.astype(np.uint8)[:, :, None], 3, axis=2)
    if im.mode == "F":
        arr = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, P, LA, RGBA (alpha dropped), CMYK, YCbCr ...
    return np.asarray(im, dtype=np.uint8)


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``source`` (path, encoded bytes, HWC array or PIL image) -> contiguous RGB ``uint8`` HWC array.

    Raises :class:`ImageError` naming the source for anything wrong with it, whatever the decoder raised.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise ImageError(f"{name}: expected an RGB(A) uint8 HxWx3 array, got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr[:, :, :3])
    if isinstance(source, Image.Image):
        return _decode(lambda: source, name, max_pixels)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: no such file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    else:
        data = source
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    return _decode(lambda: Image.open(io.BytesIO(data)), name, max_pixels)


def _decode(open_image: Callable[[], Image.Image], name: str, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = open_image()
            w, h = im.size
            if w <= 0 or h <= 0 or w * h > max_pixels:
                raise ImageError(
                    f"{name}: refusing {w}x{h} image ({w * h / 1e6:.0f} Mpx > {max_pixels / 1e6:.0f} Mpx limit)"
                )
            im.load()
            return _to_rgb_array(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: refusing oversized image ({e})") from None
    except (OSError, SyntaxError, EOFError, ValueError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None
    except Exception as e:  # a malformed file can make a decoder raise anything (module docstring)
        raise ImageError(f"{name}: corrupt image ({type(e).__name__} in the decoder: {e})") from None


def prepare_image(source: ImageSource, transform: Callable[[np.ndarray], T], max_pixels: int = MAX_PIXELS) -> T:
    """Decode ``source`` and apply ``transform`` to its RGB array: the step every pipeline shares.

    Whatever goes wrong with this one input — decoding, or a geometry the transform cannot handle —
    is raised as an :class:`ImageError` naming it, so callers can skip it and go on with the others.
    """
    img = load_image(source, max_pixels)
    try:
        return transform(img)
    except Exception as e:
        raise ImageError(f"{describe_source(source)}: cannot preprocess ({type(e).__name__}: {e})") from None


def find_images(inputs: list[str | Path], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Expand files, directories (recursive) and globs into a sorted, de-duplicated file list.

    Files named explicitly are kept whatever their extension (so a bad file gets its own error);
    directories and globs contribute only files with an image extension.
    """
    import glob

    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in extensions)
        elif p.exists():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            if not matches:
                found.append(p)  # reported later as "no such file"
            found += [m for m in matches if m.is_file() and m.suffix.lower() in extensions]
    seen: set[Path] = set()
    return [f for f in found if not (f in seen or seen.add(f))]
