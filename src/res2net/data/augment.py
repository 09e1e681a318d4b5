"""Training-time augmentation exactly as PaddleClas's Res2Net recipe does it (paddleclas.md §4.1).

Per image (in DataLoader workers, uint8 HWC RGB -> float32 CHW):

* ``RandCropImage``: aspect ratio ``sqrt(U(3/4, 4/3))`` applied as w-factor ``a`` and h-factor ``1/a``,
  area fraction ``U(min(0.08, bound), min(1, bound))`` with ``bound`` the largest fraction that fits,
  one try (never a fallback centre crop), integer crop size by truncation, offsets
  ``randint(0, W - w)``, then a cv2 ``INTER_LINEAR`` resize to ``size``;
* ``RandFlipImage(flip_code=1)``: horizontal flip with probability 0.5;
* ``NormalizeImage``: ``(x / 255 - mean) / std`` (shared with the eval transform).

Per batch (in the training process): ``MixupOperator`` — ``lam ~ Beta(alpha, alpha)`` and a random
permutation, images ``lam * x + (1 - lam) * x[perm]`` and the same for targets; label smoothing is then
applied to the mixed targets (``(1 - eps) * t + eps / K``), as PaddleClas's ``CELoss`` does.

Randomness comes from an explicit ``random.Random`` per sample (seeded by the sampler from
``(seed, epoch, index)``) and a ``numpy.random.Generator`` per batch, so an interrupted run resumed from a
checkpoint sees exactly the crops, flips and mixes of an uninterrupted one — whatever the number of
DataLoader workers or processes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from res2net.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from res2net.data.transforms import INTERPOLATION, EvalTransform


def rand_crop_box(
    img_h: int, img_w: int, rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """PaddleClas ``RandCropImage`` box ``(top, left, h, w)`` for an ``img_h`` x ``img_w`` image."""
    aspect = math.sqrt(rng.uniform(*ratio))
    fw, fh = aspect, 1.0 / aspect
    bound = min((img_w / img_h) / (fw * fw), (img_h / img_w) / (fh * fh))
    scale_max = min(scale[1], bound)
    scale_min = min(scale[0], bound)
    target = math.sqrt(img_w * img_h * rng.uniform(scale_min, scale_max))
    w = max(1, int(target * fw))
    h = max(1, int(target * fh))
    left = rng.randint(0, img_w - w)
    top = rng.randint(0, img_h - h)
    return top, left, h, w


@dataclass(frozen=True)
class TrainTransform:
    """RGB ``uint8`` HWC -> normalized ``float32`` CHW with PaddleClas's random crop and flip."""

    crop_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATION)}, got {self.interpolation!r}")
        if not (0 < self.scale[0] <= self.scale[1] <= 1) or not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"bad scale {self.scale} or ratio {self.ratio}")

    def crop(self, img: np.ndarray, rng: random.Random) -> np.ndarray:
        """Random crop + resize + flip only (uint8 HWC)."""
        top, left, h, w = rand_crop_box(img.shape[0], img.shape[1], rng, self.scale, self.ratio)
        out = cv2.resize(
            img[top : top + h, left : left + w],
            (self.crop_size, self.crop_size),
            interpolation=INTERPOLATION[self.interpolation],
        )
        if self.hflip > 0 and rng.random() < self.hflip:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def __call__(self, img: np.ndarray, rng: random.Random) -> np.ndarray:
        return EvalTransform(mean=self.mean, std=self.std).normalize(self.crop(img, rng))


def one_hot_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Labels -> float one-hot rows; a negative label (an unlabeled image) gets an all-zero row."""
    targets = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
    labeled = labels >= 0
    targets[labeled, labels[labeled]] = 1.0
    return targets


def mixup(
    images: torch.Tensor, targets: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """PaddleClas ``MixupOperator``: one ``lam ~ Beta(alpha, alpha)`` and one permutation per batch."""
    if alpha <= 0:
        return images, targets, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(images.shape[0])).to(images.device)
    images = images.mul(lam).add_(images[perm], alpha=1.0 - lam)
    targets = targets.mul(lam).add_(targets[perm], alpha=1.0 - lam)
    return images, targets, lam


def smooth_targets(targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``(1 - eps) * t + eps / K``, scaled by each row's mass so unlabeled (all-zero) rows stay zero."""
    if epsilon <= 0:
        return targets
    mass = targets.sum(1, keepdim=True)
    return targets * (1.0 - epsilon) + mass * (epsilon / targets.shape[1])


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability rows, averaged over the labeled mass of the batch.

    With one-hot rows this is ``F.cross_entropy``; rows of zeros (unlabeled images in distillation)
    contribute nothing, and a batch without labels gives 0 (connected to the graph).
    """
    logp = torch.log_softmax(logits.float(), dim=1)
    per_row = -(targets * logp).sum(1)
    mass = targets.sum()
    return per_row.sum() / mass.clamp_min(1e-12)
