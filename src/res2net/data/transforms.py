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


# A sliver (say 20000x1 px) passes the decoder's pixel limit but would be resized to 256 x 5 million.
MAX_RESIZED_PIXELS = 50_000_000


def resize_short(img: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    h, w = img.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
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
        return center_crop(resize_short(img, self.resize_short, self.interpolation), self.crop_size)

    def normalize(self, img: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(self.std, np.float32) * 255.0)
        return ((img.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1).copy()

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.normalize(self.crop(img))
