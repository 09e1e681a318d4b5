"""ONNX Runtime: the exported ONNX graph (fp32) or its static-QDQ int8 quantization.

The fp32 artifact is :func:`res2net.export.export_onnx` with a dynamic batch; the int8 artifact is
that file quantized by :func:`res2net.export.quantize.quantize_onnx` (per-channel weights,
calibrated activations) with the int8 recipe for this CPU kind
(:func:`res2net.export.quantize.onnx_int8_recipe`), which is part of its cache key: an int8 model
calibrated on a VNNI machine is never reused on an AVX2 one, where its kernels would saturate.
Both are cached, so only the first run exports or calibrates.
"""

from __future__ import annotations

import functools

import numpy as np

from res2net.export.onnx import export_onnx
from res2net.export.quantize import onnx_int8_recipe, quantize_onnx
from res2net.runtime.base import BuildContext, Engine, EngineError, default_threads
from res2net.runtime.exported import cached_export, cached_int8


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise EngineError("the onnxruntime engine needs onnxruntime: pip install 'res2net[deploy]'") from None
    return onnxruntime


def build_onnx(ctx: BuildContext) -> str:
    """Path of the cached fp32 ONNX export (dynamic batch) for ``ctx``'s model, exporting it if needed."""
    return cached_export(ctx, "onnx", "model.onnx", export_onnx, "exporting %s to ONNX")


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime's CPU (or CUDA) execution provider, fp32 or int8 (QDQ)."""

    name = "onnxruntime"
    precisions = ("fp32", "int8")

    @classmethod
    def unavailable_reason(cls, precision: str, device: str) -> str | None:
        if precision not in cls.precisions:
            return f"no {precision} path"
        try:
            ort = _ort()
        except EngineError as e:
            return str(e)
        if device.startswith("cuda"):
            if precision == "int8":
                return "int8 QDQ models run on the CPU provider"
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "onnxruntime has no CUDA provider here (install onnxruntime-gpu)"
        return None

    def __init__(self, ctx: BuildContext, precision: str = "fp32") -> None:
        super().__init__(ctx, precision)
        self.recipe = None
        if precision == "int8":
            self.recipe = onnx_int8_recipe()
            self.key = ctx.key(self.name, precision, f"{ctx.calibration_digest}-{self.recipe}")
        ort = _ort()
        onnx_path = build_onnx(ctx)
        if precision == "int8":
            onnx_path = self._build_int8(ctx, onnx_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = ctx.threads or default_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if ctx.device.startswith("cuda"):
            device_id = int(ctx.device.partition(":")[2] or 0)
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        self.threads = so.intra_op_num_threads
        self.session = ort.InferenceSession(onnx_path, so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.path = onnx_path
        # Batches of several images on the CPU: one single-threaded run per thread, concurrently (a
        # session may be run from several threads; each run then computes on its calling thread).
        split = ctx.options.get("split_batches", True) and self.threads > 1 and providers == ["CPUExecutionProvider"]
        self._split_options = so if split else None
        self._split_session = None
        self._pool = None

    def _build_int8(self, ctx: BuildContext, fp32_path: str) -> str:
        quantize = functools.partial(quantize_onnx, recipe=self.recipe)
        doing = f"calibrating int8 ONNX model ({self.recipe})"
        return cached_int8(ctx, self.key, fp32_path, "model.onnx", quantize, doing)

    def describe(self) -> str:
        split = f", batches split over {self.threads} threads" if self._split_options is not None else ""
        recipe = f"{self.recipe}, " if self.recipe else ""
        return f"onnxruntime {self.precision} ({recipe}{self.device}, {self.threads} threads{split})"

    def _run(self, session, x: np.ndarray) -> np.ndarray:
        return session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if len(x) == 1 or self._split_options is None:
            return self._run(self.session, x)
        if self._split_session is None:
            from concurrent.futures import ThreadPoolExecutor

            ort = _ort()
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            self._split_session = ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ort-split")
        per = -(-len(x) // self.threads)
        parts = self._pool.map(lambda i: self._run(self._split_session, x[i : i + per]), range(0, len(x), per))
        return np.concatenate(list(parts))
