"""int8 post-training quantization for servers: ONNX Runtime static QDQ and OpenVINO NNCF.

Both quantize weights per output channel (symmetric int8) and activations with ranges measured on
calibration images (:mod:`res2net.export.calibration`: where they come from, and why the few with
extreme fp32 logits are left out first).

Why these recipes: ONNX Runtime's QDQ format with per-channel weights is what its CPU provider
fuses into int8 convolutions; BatchNorm is folded *before* quantization (ORT's basic optimizer) so the
folded weights, not the raw ones, get the int8 scales. Which int8 types depend on the CPU that will
run the model (:data:`ONNX_INT8_RECIPES`, :func:`onnx_int8_recipe`): with VNNI/AMX, u8 activations
times s8 weights accumulate in 32 bits; without (AVX2, AVX-512 without VNNI) ORT's u8s8 kernels add
pairs of products in 16 bits first, which saturates — the trained digits model's logits were 25%
off on an emulated Zen 3 (AVX2) against 2.4% with VNNI. There, weights get 7 bits
(``reduce_range``), so that no pair can overflow. The recipe is stored in the model's metadata and
in the artifact cache key, so a model quantized for one CPU kind is not reused on another. NNCF's
``PERFORMANCE`` preset (symmetric activations) is OpenVINO's default CPU recipe; we take activation
ranges from the calibration extremes (MinMax, like ORT) instead of NNCF's mean-of-extremes, and
skip bias correction: both measurably hurt Res2Net's logits (see :func:`quantize_openvino`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from res2net.cpu import has_int8_dot, isa_level
from res2net.data.transforms import EvalTransform
from res2net.export.calibration import (
    CALIBRATION_SCALES,
    CHECK_SCALES,
    OUTLIER_FRACTION,
    CalibrationError,
    CalibrationSource,
    calibration_data,
    calibration_files,
    default_calibration,
    sample_images,
    sample_views,
    trim_outliers,
)

log = logging.getLogger("res2net.quantize")

# ONNX Runtime int8 recipes: (activation type, weight type, 7-bit weights). Measured on the trained
# digits model (rel. logit error vs fp32; tests/export/test_quantize_isa.py reruns it under an
# emulated AVX2 CPU): u8s8 2.4% with VNNI, 25% on AVX2; u8s8-reduce-range 3.4% on both; u8u8 2.6% on
# AVX2 but through ORT's slower 16-bit u8u8 kernels.
ONNX_INT8_RECIPES: dict[str, tuple[str, str, bool]] = {
    "u8s8": ("QUInt8", "QInt8", False),  # VNNI / AMX: 32-bit accumulation of u8 x s8, full 8-bit weights
    "u8s8-reduce-range": ("QUInt8", "QInt8", True),  # AVX2 / AVX-512 without VNNI: no 16-bit saturation
    "u8u8": ("QUInt8", "QUInt8", False),  # the alternative ORT documents for non-VNNI CPUs
}
INT8_METADATA_KEYS = ("res2net.int8_recipe", "res2net.quantized_on")


def onnx_int8_recipe() -> str:
    """The ONNX Runtime int8 recipe for this CPU (``RES2NET_CPU_ISA`` caps it, see :mod:`res2net.cpu`)."""
    return "u8s8" if has_int8_dot() else "u8s8-reduce-range"


def _batched(fn, data: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(data[i : i + batch_size])) for i in range(0, len(data), batch_size)])


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
    outlier_fraction: float = OUTLIER_FRACTION,
    recipe: str | None = None,
) -> Path:
    """Quantize the fp32 ONNX model ``src`` to a static-QDQ int8 model at ``dst``; return ``dst``.

    Args:
        calibration: see :func:`calibration_data` (``None``: the packaged sample photos).
        per_channel: per-output-channel weight scales (recommended: conv filters differ a lot in range).
        method: activation range estimator, ``"minmax"``, ``"percentile"`` (99.999th) or ``"entropy"``.
        outlier_fraction: calibration images left out for extreme fp32 logits (:func:`trim_outliers`).
        recipe: one of :data:`ONNX_INT8_RECIPES`; ``None``: the one for this CPU (:func:`onnx_int8_recipe`).
            Pass ``"u8s8-reduce-range"`` to quantize on a VNNI machine for AVX2 deployment CPUs.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    calibrate_method = _calibration_method(method)
    recipe = recipe or onnx_int8_recipe()
    if recipe not in ONNX_INT8_RECIPES:
        raise CalibrationError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(ONNX_INT8_RECIPES)}")
    activation_type, weight_type, reduce_range = ONNX_INT8_RECIPES[recipe]
    data = calibration_data(calibration, transform)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        folded = str(Path(tmp) / "folded.onnx")
        input_name, logits = _fold_batchnorm(src, folded, data if outlier_fraction else None, batch_size)
        if outlier_fraction:
            data = trim_outliers(data, logits, outlier_fraction)
        # The histogram calibrators stack each tensor's batches into one array: equal batches only.
        step = batch_size if method == "minmax" else 1
        # s8 weights are symmetric (zero point 0, what the s8 kernels assume); u8 weights need a zero point
        extra = {"ActivationSymmetric": False, "WeightSymmetric": weight_type == "QInt8"}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            folded,
            str(dst),
            _calibration_reader(data, input_name, step),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType[activation_type],
            weight_type=QuantType[weight_type],
            calibrate_method=calibrate_method,
            extra_options=extra,
        )
    _set_metadata(dst, dict(zip(INT8_METADATA_KEYS, (recipe, isa_level()))))
    log.info("wrote int8 QDQ model %s (%s, %d calibration images, %s)", dst, recipe, len(data), method)
    return dst


def _calibration_method(method: str):
    """ORT's activation range estimator named ``method`` (a clear error for any other name)."""
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise CalibrationError(f"unknown calibration method {method!r}; choose one of {sorted(methods)}")
    return methods[method]


def _fold_batchnorm(
    src: str | Path, folded: str, data: np.ndarray | None, batch_size: int
) -> tuple[str, np.ndarray | None]:
    """Write ``src`` with BN and constants folded to ``folded``; return its input name and fp32 logits of ``data``.

    ORT's basic optimization level only, so the file holds no hardware-specific layouts; the same
    session then answers the fp32 logits that :func:`trim_outliers` ranks (``None`` without ``data``).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = folded
    so.log_severity_level = 3
    session = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    logits = None
    if data is not None:
        logits = _batched(lambda x, s=session: s.run(None, {input_name: x})[0], data, batch_size)
    del session
    _mark_preprocessed(folded)
    return input_name, logits


def _calibration_reader(data: np.ndarray, input_name: str, step: int):
    """An ORT ``CalibrationDataReader`` handing out ``data`` in batches of ``step`` images."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([data[i : i + step] for i in range(0, len(data), step)])

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {input_name: b}

    return Reader()


def _set_metadata(path: Path, props: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **props})
    onnx.save(model, str(path))


def int8_recipe_of(path: str | Path) -> str | None:
    """The :data:`ONNX_INT8_RECIPES` name an int8 ONNX model was quantized with (``None``: not ours / unknown)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == INT8_METADATA_KEYS[0]), None)


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
    outlier_fraction: float = OUTLIER_FRACTION,
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
        outlier_fraction: calibration images left out for extreme fp32 logits (:func:`trim_outliers`).
            On the trained digits Res2Net50_vd_26w_4s this, not the estimator, is what int8 needed:
            MinMax over all images gave 45% relative logit error, 6.9% without the top 3%, while
            ``"mean_minmax"`` (11%), preset mixed (45%) or bias correction (46%) did not pass.
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
    core = ov.Core()
    model = src if isinstance(src, ov.Model) else core.read_model(str(src))
    if outlier_fraction:
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        fp32 = core.compile_model(model.clone() if isinstance(src, ov.Model) else model, "CPU", config)
        data = trim_outliers(data, _batched(lambda x: fp32(x)[0], data, 8), outlier_fraction)
        del fp32
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
    "ONNX_INT8_RECIPES",
    "CHECK_SCALES",
    "OUTLIER_FRACTION",
    "CalibrationError",
    "calibration_data",
    "calibration_files",
    "default_calibration",
    "int8_recipe_of",
    "onnx_int8_recipe",
    "quantize_onnx",
    "quantize_openvino",
    "sample_images",
    "sample_views",
    "trim_outliers",
]
