"""PaddleClas's eval preprocessing, reproduced with OpenCV (what PaddleClas itself uses).

``ResizeImage(resize_short=256)``: scale = 256 / min(h, w), new size ``int(round(side * scale))``,
``cv2.INTER_LINEAR``; ``CropImage(224)``: offsets ``(W - 224) // 2``, ``(H - 224) // 2``;
``NormalizeImage``: ``(x / 255 - mean) / std`` in float32, RGB order; then HWC -> CHW.
(PaddleClas: ``ppcls/data/preprocess/ops/operators.py`` and the ``Eval`` transforms of
``ppcls/configs/ImageNet/Res2Net/*.yaml``.)

:class:`EvalTransform` also takes PIL images and torch tensors, so it can be the ``transform=`` of
a torchvision dataset (``ImageFolder(root, transform=card.transforms())``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

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


def _tensor_to_hwc(img: Any) -> np.ndarray:
    """A torchvision-style CHW tensor (uint8 0..255, or float 0..1) -> HWC array on the 0..255 scale."""
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected a CHW image tensor with 1 or 3 channels, got shape {tuple(img.shape)}")
    arr = img.detach().cpu().permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(arr.astype(np.float32) * 255.0)


@dataclass(frozen=True)
class EvalTransform(Preprocess):
    """An image -> normalized ``float32`` CHW, as PaddleClas evaluates.

    Input: an RGB ``uint8`` HWC array (returns an array, what the engines take), or a PIL image
    or a CHW tensor (``uint8``, or float in 0..1 as torchvision's ``ToTensor`` gives; returns a
    ``torch.Tensor``, what a torchvision dataset's ``transform=`` must give). PIL images go
    through the same decoding rules as files (mode, EXIF orientation).

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

    def __call__(self, img: Any) -> Any:
        if isinstance(img, np.ndarray):
            return self.normalize(self.crop(img))
        import torch

        if isinstance(img, torch.Tensor):
            arr = _tensor_to_hwc(img)
        else:
            from PIL import Image

            if not isinstance(img, Image.Image):
                raise TypeError(f"expected a numpy array, PIL image or torch tensor, got {type(img).__name__}")
            from res2net.data.image import load_image

            arr = load_image(img)
        return torch.from_numpy(self.normalize(self.crop(arr)))
