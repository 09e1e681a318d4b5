"""Fuzzing image decoding: mutated real images in every format Pillow reads -> a preprocessed array, or
that one input's :class:`ImageError` (no other exception, no crash, memory bounded; tests/fuzzing.py)."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from res2net.data.image import ImageError, prepare_image
from res2net.data.transforms import EvalTransform
from tests.data.test_image import tiff_rational_strip_offsets
from tests.fuzzing import run_fuzz_target

MAX_PIXELS = 4_000_000
TRANSFORM = EvalTransform(resize_short=36, crop_size=32)  # small: the decoder is under test, not the resize
BOUNDARY_INTS = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def _seeds() -> list[bytes]:
    """Small real images (a crop of skimage's chelsea) in each format and mode, plus known hostile files."""
    import skimage.data

    photo = Image.fromarray(skimage.data.chelsea()[100:140, 150:198])
    variants = [
        ("PNG", "RGB", {}),
        ("PNG", "P", {}),
        ("PNG", "LA", {}),
        ("PNG", "I;16", {}),
        ("JPEG", "RGB", {"quality": 80}),
        ("JPEG", "L", {"progressive": True}),
        ("JPEG", "CMYK", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("TIFF", "RGB", {}),
        ("TIFF", "RGBA", {"compression": "tiff_lzw"}),
        ("TIFF", "L", {"compression": "tiff_adobe_deflate"}),
        ("WEBP", "RGB", {"quality": 70}),
        ("PPM", "RGB", {}),
        ("ICO", "RGBA", {}),
    ]
    out = [tiff_rational_strip_offsets()]
    for fmt, mode, kw in variants:
        im = photo.convert("L").point(lambda v: v * 200).convert("I;16") if mode == "I;16" else photo.convert(mode)
        buf = io.BytesIO()
        try:
            im.save(buf, format=fmt, **kw)
        except (KeyError, OSError):  # a codec this Pillow build lacks
            continue
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated_images(draw) -> bytes:
    """A seed with a few byte-level mutations: bit flips, boundary integers in headers, cuts, splices."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "int", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "int":
            width = draw(st.sampled_from([1, 2, 4]))
            value = draw(st.sampled_from(BOUNDARY_INTS)) % 256**width
            data[pos : pos + width] = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@given(st.one_of(mutated_images(), st.binary(max_size=256)))
def fuzz_decode(data: bytes) -> None:
    try:
        x = prepare_image(data, TRANSFORM, max_pixels=MAX_PIXELS)
    except ImageError as e:
        message = str(e)
        assert "MemoryError" not in message, message  # the address-space cap was hit: a memory bomb
        assert "\n" not in message
        return
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all()


def test_fuzz_image_decoding():
    report = run_fuzz_target("tests.data.test_image_fuzz:fuzz_decode", budget_mb=512)
    assert report["examples"] >= 1 and len(SEEDS) >= 12
