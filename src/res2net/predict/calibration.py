"""What the Predictor feeds its int8 calibration and accuracy checks, and how the cache names them."""

from __future__ import annotations

import hashlib

import numpy as np

from res2net.data.transforms import EvalTransform
from res2net.export.calibration import CHECK_SCALES, calibration_data, calibration_files, sample_views
from res2net.runtime.base import array_digest


def calibration_digest(source, transform: EvalTransform) -> str:
    """What the int8 artifact's cache key says about its calibration inputs.

    Images (the packaged samples or the user's files) are calibrated *after* ``self.transform``, so
    the transform is part of the key: the same photos resized or normalised differently calibrate
    a different int8 model. Arrays are already model inputs and stand for themselves.
    """
    if isinstance(source, np.ndarray):
        return array_digest(source)
    transform = hashlib.sha256(repr(transform).encode()).hexdigest()[:8]
    if source is None:
        return f"samples-{transform}"
    files = calibration_files(source)
    h = hashlib.sha256(transform.encode())
    for f in files:
        st = f.stat() if f.exists() else None
        h.update(f"{f.resolve()}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()[:16]


def check_inputs(sources, transform: EvalTransform) -> np.ndarray:
    """Accuracy-check inputs: 4 views of each sample photo (disjoint from calibration) or the user's images."""
    if sources is None:
        return sample_views(transform, CHECK_SCALES)
    return calibration_data(sources, transform, limit=64)
