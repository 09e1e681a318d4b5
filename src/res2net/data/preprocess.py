"""The preprocessing spec: what a checkpoint expects its input images to go through before the model.

It lives at the bottom of the package (models' cards carry one, the transforms apply one, exports
record one) so that every layer reads the same definition.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing a checkpoint expects (PaddleClas: resize short 256, crop 224)."""

    resize_short: int = 256
    crop_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
