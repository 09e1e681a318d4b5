"""PaddleClas's eval preprocessing, reproduced with OpenCV (what PaddleClas itself uses).

``ResizeImage(resize_short=256)``: scale = 256 / min(h, w), new size ``int(round(side * scale))``,
``cv2.INTER_LINEAR``; ``CropImage(224)``: offsets ``(W - 224) // 2``, ``(H - 224) // 2``;
``NormalizeImage``: ``(x / 255 - mean) / std`` in float32, RGB order; then HWC -> CHW.
(shared/reference/paddleclas.md §4.1)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from res2net.data.preprocess import Preprocess

INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


# A sliver (say 20000x1 px) passes the decoder's pixel limit but would be resized to 256 x 5 million:
# beyond this many resized pixels, only the part that survives the centre crop is computed.
MAX_RESIZED_PIXELS = 50_000_000


def _resized_size(h: int, w: int, size: int) -> tuple[int, int]:
    """PaddleClas ``ResizeImage(resize_short=size)``: ``(new_h, new_w)``, Python ``round`` of each side."""
    scale = size / min(h, w)
    return int(round(h * scale)), int(round(w * scale))


def resize_short(img: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    h, w = img.shape[:2]
    new_h, new_w = _resized_size(h, w, size)
    if new_w * new_h > MAX_RESIZED_PIXELS:
        raise ValueError(
            f"a {w}x{h} image resized to short side {size} would be {new_w}x{new_h} pixels: aspect ratio too extreme"
        )
    return cv2.resize(img, (new_w, new_h), interpolation=INTERPOLATION[interpolation])


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from a {w}x{h} image")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def resize_center_crop(
    img: np.ndarray, size: int, crop: int, interpolation: str = "bilinear", max_resized_pixels: int = MAX_RESIZED_PIXELS
) -> np.ndarray:
    """``center_crop(resize_short(img, size), crop)``, in bounded memory whatever the aspect ratio.

    Up to ``max_resized_pixels`` this *is* the plain cv2 resize then crop (PaddleClas's pixels,
    bit for bit). Beyond, resizing the whole image would allocate ``size`` x (long side x scale)
    pixels — a 4000x3 image would become 341333x256 — so only the ``crop`` x ``crop`` window is
    interpolated, from the few source pixels under it, with cv2's own sampling positions and
    weights (:func:`_taps`) and, for bilinear ``uint8``, its fixed-point arithmetic
    (:func:`_linear_u8`). Promised: the plain path's pixels within 1/255 (bit-exact on x86 with
    opencv-python 4.x; bicubic, computed in floating point, within 1/255).
    """
    h, w = img.shape[:2]
    new_h, new_w = _resized_size(h, w, size)
    if new_h < crop or new_w < crop:
        raise ValueError(f"cannot crop {crop}x{crop} from a {w}x{h} image resized to {new_w}x{new_h}")
    if new_h * new_w <= max_resized_pixels:
        return center_crop(cv2.resize(img, (new_w, new_h), interpolation=INTERPOLATION[interpolation]), crop)
    rows, row_w = _taps(h, new_h, (new_h - crop) // 2, crop, interpolation, columns=False)
    cols, col_w = _taps(w, new_w, (new_w - crop) // 2, crop, interpolation, columns=True)
    # gather only the source pixels under the window: at most (taps * crop) squared of them
    ys, row_at = np.unique(rows, return_inverse=True)
    xs, col_at = np.unique(cols, return_inverse=True)
    patch = img[np.ix_(ys, xs)].reshape(len(ys), len(xs), -1)  # HW[C] -> HWC
    rows, cols = row_at.reshape(rows.shape), col_at.reshape(cols.shape)
    if interpolation == "bilinear" and img.dtype == np.uint8:
        out = _linear_u8(patch, rows, row_w, cols, col_w)
    else:
        across = np.einsum("xk,yxkc->yxc", col_w, patch[:, cols].astype(np.float64))
        out = np.einsum("yk,ykxc->yxc", row_w, across[rows])
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8) if img.dtype == np.uint8 else out.astype(img.dtype)
    return out.reshape(crop, crop, *img.shape[2:])


def _linear_u8(patch: np.ndarray, rows: np.ndarray, row_w: np.ndarray, cols: np.ndarray, col_w: np.ndarray):
    """cv2's uint8 bilinear arithmetic: 11-bit fixed-point weights, an exact horizontal pass, and the
    vertical pass of its SIMD kernel (``VResizeLinearVec_32s8u``: ``mulhi`` of ``D >> 4``, then
    ``(v + 2) >> 2``), whose truncations are what PaddleClas's pixels carry."""
    a, b = np.rint(col_w * 2048).astype(np.int64), np.rint(row_w * 2048).astype(np.int64)
    across = np.einsum("xk,yxkc->yxc", a, patch[:, cols].astype(np.int64))
    top, bottom = across[rows[:, 0]] >> 4, across[rows[:, 1]] >> 4
    v = ((top * b[:, :1, None]) >> 16) + ((bottom * b[:, 1:, None]) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def _cubic_weights(x: np.ndarray) -> np.ndarray:
    """cv2's ``interpolateCubic`` (Keys, A = -0.75) for fractional offsets ``x``: ``[n, 4]``."""
    a = -0.75
    w0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    w1 = ((a + 2) * x - (a + 3)) * x * x + 1
    w2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return np.stack([w0, w1, w2, 1 - w0 - w1 - w2], axis=1)


def _taps(
    src: int, dst: int, start: int, count: int, interpolation: str, columns: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``[count, taps]`` of outputs ``start .. start+count`` of a 1-D
    ``src -> dst`` resize, as ``cv2.resize`` computes them (its ``resizeNN`` / ``resizeGeneric`` setup):
    single-precision half-pixel positions; at the border, indices are replicated, and for linear
    *columns* (not rows) the position itself is clamped to the edge pixel."""
    scale = 1.0 / (dst / src)  # cv2: inv_scale = dst / src, scale = 1 / inv_scale
    d = np.arange(start, start + count, dtype=np.float64)
    if interpolation == "nearest":
        return np.minimum(np.floor(d * scale).astype(np.int64), src - 1)[:, None], np.ones((count, 1))
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f)
    f = (f - i).astype(np.float64)
    i = i.astype(np.int64)
    if interpolation == "bicubic":
        return np.clip(i[:, None] + np.arange(-1, 3), 0, src - 1), _cubic_weights(f)
    if interpolation != "bilinear":
        raise ValueError(f"unknown interpolation {interpolation!r}")
    if columns:
        f[(i < 0) | (i >= src - 1)] = 0
        i = np.clip(i, 0, src - 1)
    return np.clip(np.stack([i, i + 1], axis=1), 0, src - 1), np.stack([1 - f, f], axis=1)


@dataclass(frozen=True)
class EvalTransform(Preprocess):
    """RGB ``uint8`` HWC image -> normalized ``float32`` CHW array, as PaddleClas evaluates.

    The fields are the :class:`~res2net.data.preprocess.Preprocess` spec's (one definition); this
    class adds the operations.
    """

    @classmethod
    def from_preprocess(cls, p: Preprocess) -> EvalTransform:
        return cls(**{f.name: getattr(p, f.name) for f in fields(Preprocess)})

    def crop(self, img: np.ndarray) -> np.ndarray:
        """Resize + crop only (uint8 HWC): what a server or a pixel-parity test needs."""
        return resize_center_crop(img, self.resize_short, self.crop_size, self.interpolation)

    def normalize(self, img: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(self.std, np.float32) * 255.0)
        return ((img.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1).copy()

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.normalize(self.crop(img))
