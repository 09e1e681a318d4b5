"""Shared fixtures for export tests: small vd models with random weights and real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import res2net
from res2net.data.transforms import EvalTransform
from tests.utils import randomize_

# Real photographs from scikit-image (no network): different content, so logits differ per image.
SKIMAGE_NAMES = ("astronaut", "chelsea", "coffee", "rocket")


def real_images() -> list[np.ndarray]:
    skdata = pytest.importorskip("skimage.data")
    from res2net.data.image import load_image

    return [load_image(getattr(skdata, n)()) for n in SKIMAGE_NAMES]


def real_batch(size: int = 224, n: int = 4) -> torch.Tensor:
    """``n`` real images preprocessed as PaddleClas does, centre-cropped to ``size``."""
    t = EvalTransform().at_crop(size)
    return torch.from_numpy(np.stack([t(im) for im in real_images()[:n]]))


def tiny_vd(seed: int = 0, **kw) -> torch.nn.Module:
    """res2net_tiny with the vd stem and avg-down shortcut: exercises AvgPool2d(ceil_mode=True)."""
    return randomize_(res2net.create_model("res2net_tiny", deep_stem=True, avg_down=True, **kw), seed)


@pytest.fixture(scope="session")
def tiny_vd_model() -> torch.nn.Module:
    return tiny_vd()
