"""Calibration sets for int8 post-training quantization (ONNX Runtime, OpenVINO, ExecuTorch).

Activation ranges are measured on calibration images preprocessed exactly as at inference
(:class:`res2net.data.transforms.EvalTransform`).
Calibration comes from a folder (recursive), a list file (one image per line; PaddleClas
``path label`` lines work, paths relative to the list file), a glob, a list of paths, or an array.
Without one, :func:`default_calibration` uses the package's sample photos with a few deterministic
crops and flips (12 views each) — fine for a demo; for production pass 100-300 images of your own data.

Outlier images: MinMax ranges are only as good as the worst calibration image. A trained network can
answer a few inputs with activations two orders of magnitude above the rest (the trained digits
Res2Net50_vd_26w_4s: 5 of 300 training images reach 309 at the last residual output against a median
per-image maximum of 1.5, and 156 at the logits against 4.5); their extremes then set every range
and int8 rounding swamps the other images' activations. Every int8 recipe (ONNX Runtime's and OpenVINO's in
:mod:`res2net.export.quantize`, ExecuTorch's :func:`res2net.export.executorch.quantize_pt2e`)
therefore first runs the fp32 model on the calibration images and leaves out the
:data:`OUTLIER_FRACTION` with the largest (centred) logit norm (:func:`trim_outliers`);
at inference those few inputs are clipped instead.
Measured on that model (32 px, 300 calibration images from ``train_list.txt``, 359 val images;
rel. logit error / top-1 agreement with fp32 / delta val accuracy in points):

===========================================  ======================  ======================
calibration ranges                           OpenVINO (NNCF)         ONNX Runtime (QDQ)
===========================================  ======================  ======================
MinMax, all 300 images (before)              45.2% / 97.5% / -2.5    80.4% / 57.4% / -41.0
ORT percentile 99.999                        n/a                     56.9% / 89.1% / -9.8
ORT entropy                                  n/a                     80.4% / 57.4% / -41.0
NNCF mean_minmax (mean of extremes)          11.2% / 97.5% / -2.5    n/a
NNCF median_minmax                           14.4% / 93.9% / -5.3    n/a
NNCF mean_no_outliers (p=0.01)               11.5% / 97.2% / -2.8    n/a
NNCF histogram                               37.7% / 97.2% / -2.2    n/a
NNCF preset mixed / full bias correction     44.8% / 46.0% error     n/a
MinMax, stage 4 left in float                6.5% / 99.2% / -0.8     7.9% / 99.4% / -0.6
MinMax less the top 1% logit-norm images     7.8% / 98.9% / -1.1     n/a
MinMax less the top 3% (the default)         6.9% / 99.4% / -0.6     8.5% / 99.7% / +0.3
MinMax less the top 10%                      6.6% / 99.2% / -0.8     n/a
===========================================  ======================  ======================

Per-tensor comparisons (ORT) put the damage in stage 4, where the residual stream of the outlier
images sets ranges ~100x the typical ones; weight quantization alone costs 1.3% (per channel).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from res2net.data.image import IMAGE_EXTENSIONS, ImageError, find_images, load_image, prepare_image
from res2net.data.transforms import EvalTransform, resize_short
from res2net.errors import Res2NetError

log = logging.getLogger("res2net.quantize")

CalibrationSource = str | Path | Sequence[str | Path] | np.ndarray
DEFAULT_CALIBRATION_LIMIT = 300  # NNCF's default subset size; more rarely changes min/max ranges
OUTLIER_FRACTION = 0.03  # calibration images left out for their extreme fp32 logits (module docstring)


class CalibrationError(Res2NetError, ValueError):
    """The calibration set is missing, empty or unreadable."""


def sample_images() -> list[Path]:
    """The photos shipped in ``res2net/assets/images`` (see its README for sources and licences)."""
    from importlib import resources

    root = resources.files("res2net") / "assets" / "images"
    return sorted(Path(str(p)) for p in root.iterdir() if Path(str(p)).suffix.lower() in IMAGE_EXTENSIONS)


def calibration_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand a folder, list file, glob or sequence of paths into image paths (list files: one per line).

    A list file is a text file (``.txt``/``.list``/``.csv``/no image extension) whose lines are an
    image path optionally followed by whitespace and a label, as PaddleClas's ``val_list.txt``;
    relative paths are taken relative to the list file's folder. Blank lines and ``#`` comments skip.
    """
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS:
            files = []
            for line in p.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name = line.split()[0] if not Path(line).exists() else line
                f = Path(name)
                files.append(f if f.is_absolute() else p.parent / f)
            if not files:
                raise CalibrationError(f"{p}: the calibration list file names no images")
            return files
        if not p.exists() and not any(ch in str(p) for ch in "*?["):
            raise CalibrationError(f"{p}: no such calibration folder or list file")
        files = find_images([p])
    else:
        files = find_images(list(source))
    if not files:
        raise CalibrationError(f"{source}: no images found for calibration")
    return files


def sample_views(
    transform: EvalTransform | None = None, scales: Sequence[float] = (1.0,), corners: bool = False
) -> np.ndarray:
    """Deterministic views of the packaged sample photos, preprocessed (float32 NCHW).

    For each photo and each ``scale``: resize the short side to ``resize_short * scale`` (scale 1 is
    exactly the eval preprocessing), take the centre crop (and, with ``corners``, the top-left and
    bottom-right crops), each as is and mirrored.
    """
    transform = transform or EvalTransform()
    c = transform.crop_size
    views = []
    for f in sample_images():
        img = load_image(f)
        for scale in scales:
            big = resize_short(img, round(transform.resize_short * scale), transform.interpolation)
            H, W = big.shape[:2]
            offsets = [((H - c) // 2, (W - c) // 2)] + ([(0, 0), (H - c, W - c)] if corners else [])
            for top, left in offsets:
                view = big[top : top + c, left : left + c]
                views += [transform.normalize(view), transform.normalize(view[:, ::-1])]
    return np.stack(views).astype(np.float32)


# Default calibration and the Predictor's default accuracy check use *disjoint* views of the photos
# (other scales and crops), so the check does not grade int8 on the very inputs it was calibrated on.
CALIBRATION_SCALES = (1.25, 1.6)  # x centre + 2 corners x mirror: 12 views per photo
CHECK_SCALES = (1.0, 1.125)  # x centre x mirror: 4 views per photo


def default_calibration(transform: EvalTransform | None = None) -> np.ndarray:
    """Calibration inputs from the packaged sample photos: 12 deterministic views each (float32 NCHW)."""
    return sample_views(transform, CALIBRATION_SCALES, corners=True)


def calibration_data(
    source: CalibrationSource | None,
    transform: EvalTransform | None = None,
    limit: int = DEFAULT_CALIBRATION_LIMIT,
    seed: int = 0,
) -> np.ndarray:
    """Preprocessed float32 NCHW calibration inputs from ``source`` (see module docstring).

    More than ``limit`` images are subsampled with a fixed ``seed``, so the result (and hence the
    cache key of the quantized artifact) is deterministic. Unreadable images are skipped with a
    warning naming them; an empty result raises :class:`CalibrationError`.
    """
    transform = transform or EvalTransform()
    if source is None:
        return default_calibration(transform)
    if isinstance(source, np.ndarray):
        if source.ndim != 4 or source.shape[1] != 3:
            raise CalibrationError(f"calibration array must be float32 [N, 3, H, W], got {source.shape}")
        return np.ascontiguousarray(source, dtype=np.float32)
    files = calibration_files(source)
    if len(files) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files = [files[i] for i in idx]
    arrays = []
    for f in files:
        try:
            arrays.append(prepare_image(f, transform))
        except ImageError as e:
            log.warning("calibration: skipping %s", e)
    if not arrays:
        raise CalibrationError(f"{source}: none of the {len(files)} calibration images could be read")
    return np.stack(arrays).astype(np.float32)


def trim_outliers(data: np.ndarray, logits: np.ndarray, fraction: float = OUTLIER_FRACTION) -> np.ndarray:
    """``data`` less the ``round(fraction * len(data))`` images whose fp32 ``logits`` have the largest norm.

    The norm is that of the logits minus their per-image mean (what :func:`res2net.runtime.compare_logits`
    measures). Images whose activations dwarf the rest's answer with extreme logits, so this is a cheap
    proxy for the images that would otherwise set every MinMax range (see the module docstring).
    Order is kept; with ``fraction`` 0 or too few images to drop one, ``data`` comes back unchanged.
    """
    if not 0 <= fraction < 1:
        raise CalibrationError(f"outlier fraction must be in [0, 1), got {fraction}")
    drop = round(fraction * len(data))
    if drop == 0:
        return data
    logits = np.asarray(logits, np.float64).reshape(len(data), -1)
    norm = np.linalg.norm(logits - logits.mean(axis=1, keepdims=True), axis=1)
    keep = np.sort(np.argsort(norm, kind="stable")[: len(data) - drop])
    log.info(
        "calibration: leaving out %d of %d images with extreme logits (norm > %.3g)", drop, len(data), norm[keep].max()
    )
    return np.ascontiguousarray(data[keep])


__all__ = [
    "CALIBRATION_SCALES",
    "CHECK_SCALES",
    "DEFAULT_CALIBRATION_LIMIT",
    "OUTLIER_FRACTION",
    "CalibrationError",
    "CalibrationSource",
    "calibration_data",
    "calibration_files",
    "default_calibration",
    "sample_images",
    "sample_views",
    "trim_outliers",
]
