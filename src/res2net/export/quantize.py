"""int8 post-training quantization for servers: ONNX Runtime static QDQ and OpenVINO NNCF.

Both quantize weights per output channel (symmetric int8) and activations with ranges measured on
calibration images preprocessed exactly as at inference (:class:`res2net.data.transforms.EvalTransform`).
Calibration comes from a folder (recursive), a list file (one image per line; PaddleClas
``path label`` lines work, paths relative to the list file), a glob, a list of paths, or an array.
Without one, :func:`default_calibration` uses the package's sample photos with a few deterministic
crops and flips (12 views each) — fine for a demo; for production pass 100-300 images of your own data.

Why these recipes: ONNX Runtime's QDQ format with per-channel weights is what its CPU provider
fuses into int8 convolutions (VNNI u8s8 dot products); BatchNorm is folded *before* quantization
(ORT's basic optimizer) so the folded weights, not the raw ones, get the int8 scales. NNCF's
``PERFORMANCE`` preset (symmetric activations) is OpenVINO's default CPU recipe; we take activation
ranges from the calibration extremes (MinMax, like ORT) instead of NNCF's mean-of-extremes, and
skip bias correction: both measurably hurt Res2Net's logits (see :func:`quantize_openvino`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from res2net.data.image import IMAGE_EXTENSIONS, ImageError, find_images, load_image
from res2net.data.transforms import EvalTransform
from res2net.errors import Res2NetError

log = logging.getLogger("res2net.quantize")

CalibrationSource = str | Path | Sequence[str | Path] | np.ndarray
DEFAULT_CALIBRATION_LIMIT = 300  # NNCF's default subset size; more rarely changes min/max ranges


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
    from res2net.data.transforms import resize_short

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
            arrays.append(transform(load_image(f)))
        except (ImageError, ValueError) as e:
            log.warning("calibration: skipping %s", e)
    if not arrays:
        raise CalibrationError(f"{source}: none of the {len(files)} calibration images could be read")
    return np.stack(arrays).astype(np.float32)


# ----------------------------------------------------------------------------------- ONNX Runtime
def quantize_onnx(
    src: str | Path,
    dst: str | Path,
    calibration: CalibrationSource | None = None,
    *,
    transform: EvalTransform | None = None,
    per_channel: bool = True,
    method: str = "minmax",
    batch_size: int = 8,
) -> Path:
    """Quantize the fp32 ONNX model ``src`` to a static-QDQ int8 model at ``dst``; return ``dst``.

    Args:
        calibration: see :func:`calibration_data` (``None``: the packaged sample photos).
        per_channel: per-output-channel weight scales (recommended: conv filters differ a lot in range).
        method: activation range estimator, ``"minmax"``, ``"percentile"`` (99.999th) or ``"entropy"``.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise CalibrationError(f"unknown calibration method {method!r}; choose one of {sorted(methods)}")
    data = calibration_data(calibration, transform)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        # Fold BN and constants first (ORT's basic level only: no hardware-specific layouts).
        folded = str(Path(tmp) / "folded.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = folded
        so.log_severity_level = 3
        session = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        del session
        _mark_preprocessed(folded)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([data[i : i + batch_size] for i in range(0, len(data), batch_size)])

            def get_next(self):
                b = next(self.batches, None)
                return None if b is None else {input_name: b}

        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            folded,
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options=extra,
        )
    log.info("wrote int8 QDQ model %s (%d calibration images, %s)", dst, len(data), method)
    return dst


def _mark_preprocessed(path: str) -> None:
    """Tag a BN-folded model as ORT's ``quant_pre_process`` does (we ran the same optimizer pass).

    ``quant_pre_process`` itself fails on models with external data; the ORT session above does its
    optimization step on any model, and ONNX shape inference runs inside ``quantize_static``.
    """
    import onnx
    from onnxruntime.quantization.quant_utils import add_pre_process_metadata

    model = onnx.load(path)
    add_pre_process_metadata(model)
    onnx.save(model, path)


# ----------------------------------------------------------------------------------- OpenVINO / NNCF
def quantize_openvino(
    src,
    dst: str | Path,
    calibration: CalibrationSource | None = None,
    *,
    transform: EvalTransform | None = None,
    preset: str = "performance",
    activation_range: str = "minmax",
    bias_correction: str = "none",
) -> Path:
    """Quantize an fp32 OpenVINO model (``.xml`` path, ONNX path or ``ov.Model``) with NNCF; write ``dst`` IR.

    Args:
        calibration: see :func:`calibration_data` (``None``: the packaged sample photos).
        preset: ``"performance"`` (symmetric activations: fastest on CPU) or ``"mixed"``
            (asymmetric activations: a little more accurate for activations not centred on zero).
        activation_range: ``"minmax"`` (the extremes over all calibration images, as ONNX Runtime's
            MinMax) or ``"mean_minmax"`` (NNCF's default: the mean of per-image extremes). On the
            trained digits Res2Net, NNCF's default clips enough activations to give 10.8% relative
            logit error against 1.7% with ``"minmax"`` (same top-1), hence our default.
        bias_correction: ``"none"``, ``"fast"`` (NNCF's default) or ``"full"``. On the same model,
            from the IR that :func:`res2net.export.export_openvino` writes, fast bias correction
            raised the error from 1.8% to 7.0% and full to 2.1%, so it is off by default.
    """
    import openvino as ov

    try:
        import nncf
    except ImportError:
        raise CalibrationError("OpenVINO int8 needs nncf: pip install 'res2net[deploy]'") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    ranges = {"minmax": RangeEstimatorParametersSet.MINMAX, "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX}
    if preset not in presets:
        raise CalibrationError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    if activation_range not in ranges:
        raise CalibrationError(f"unknown activation_range {activation_range!r}; choose one of {sorted(ranges)}")
    if bias_correction not in ("none", "fast", "full"):
        raise CalibrationError(f"unknown bias_correction {bias_correction!r}; choose none, fast or full")
    data = calibration_data(calibration, transform)
    model = src if isinstance(src, ov.Model) else ov.Core().read_model(str(src))
    dataset = nncf.Dataset([data[i : i + 1] for i in range(len(data))])
    # NNCF draws progress bars on stdout: keep stdout for results (``res2net predict --json``).
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(
            model,
            dataset,
            preset=presets[preset],
            subset_size=len(data),
            fast_bias_correction=bias_correction != "full",
            advanced_parameters=AdvancedQuantizationParameters(
                activations_range_estimator_params=ranges[activation_range],
                disable_bias_correction=bias_correction == "none",
            ),
        )
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(dst), compress_to_fp16=False)
    log.info("wrote int8 OpenVINO IR %s (%d calibration images, %s preset)", dst, len(data), preset)
    return dst


__all__ = [
    "CALIBRATION_SCALES",
    "CHECK_SCALES",
    "CalibrationError",
    "calibration_data",
    "calibration_files",
    "default_calibration",
    "quantize_onnx",
    "quantize_openvino",
    "sample_images",
    "sample_views",
]
