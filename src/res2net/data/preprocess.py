"""The preprocessing spec: what a checkpoint expects its input images to go through before the model.

It lives at the bottom of the package (models' cards carry one, the transforms apply one, exports
record one) so that every layer reads the same definition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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

    def at_crop(self, crop_size: int) -> Preprocess:
        """The same preprocessing for a ``crop_size`` input: the short side scaled in proportion.

        PaddleClas evaluates 224 crops of 256 short sides; a 288 input keeps that ratio (329), which
        is what the card means for any other input size. The one place that derivation is made.
        """
        if crop_size == self.crop_size:
            return self
        return replace(self, resize_short=round(self.resize_short * crop_size / self.crop_size), crop_size=crop_size)

    def with_sizes(self, resize_short: int | None = None, crop_size: int | None = None) -> Preprocess:
        """Command-line overrides: a new crop scales the resize (:meth:`at_crop`) unless a resize is given too."""
        p = self.at_crop(crop_size) if crop_size else self
        return replace(p, resize_short=resize_short) if resize_short else p
