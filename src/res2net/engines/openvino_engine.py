"""OpenVINO's CPU plugin: fp32, bf16 (an inference-precision hint on the fp32 IR) or NNCF int8.

OpenVINO folds BatchNorm, fuses conv+bias+ReLU(+add) and picks oneDNN's JIT kernels for the exact
CPU, which is why its fp32 already beats PyTorch eager on a CPU; int8 (NNCF post-training
quantization) uses VNNI/AMX dot products. The compiled blob is cached next to the IR
(``CACHE_DIR``), so a second start skips compilation.

fp32 is requested explicitly (``INFERENCE_PRECISION_HINT=f32``): on CPUs with bf16 support recent
OpenVINO releases otherwise run bf16 silently, which is a different precision than asked for.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import numpy as np

from res2net.engines.base import BuildContext, Engine, EngineError, default_threads

log = logging.getLogger("res2net.engines")

_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: layers NNCF left in float stay f32
_MAX_COMPILED = 4  # static-shape compilations kept per engine (batch sizes in use)


def _ov():
    try:
        import openvino
    except ImportError:
        raise EngineError("the openvino engine needs openvino: pip install 'res2net[deploy]'") from None
    return openvino


def build_ir(ctx: BuildContext) -> str:
    """Path of the cached fp32 OpenVINO IR (dynamic batch) for ``ctx``'s model, converting it if needed."""
    from res2net.export.openvino import export_openvino

    key = ctx.key("openvino", "fp32")
    with ctx.cache.lock(key) as d:
        if not ctx.cache.is_complete(key):
            t = time.perf_counter()
            log.info("converting %s to OpenVINO IR (one-time, cached in %s)", ctx.model_id, d)
            d = ctx.cache.start_build(key)
            export_openvino(ctx.model_factory(), d / "model.xml", dynamic_batch=True, input_size=ctx.input_size)
            ctx.cache.finish_build(key, seconds=round(time.perf_counter() - t, 1))
    return str(d / "model.xml")


class OpenVINOEngine(Engine):
    """OpenVINO on the CPU: fp32, bf16 or int8, one compiled model per batch size in use."""

    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    @classmethod
    def unavailable_reason(cls, precision: str, device: str) -> str | None:
        if precision not in cls.precisions:
            return f"no {precision} path"
        if device != "cpu":
            return "the openvino engine runs on the CPU here"
        try:
            ov = _ov()
        except EngineError as e:
            return str(e)
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in caps:
            return "OpenVINO reports no bf16 support on this CPU"
        if precision == "int8":
            if "INT8" not in caps:
                return "OpenVINO reports no int8 support on this CPU"
            try:
                import nncf  # noqa: F401
            except ImportError:
                return "int8 calibration needs nncf: pip install 'res2net[deploy]'"
        return None

    def __init__(self, ctx: BuildContext, precision: str = "fp32") -> None:
        super().__init__(ctx, precision)
        ov = _ov()
        xml = build_ir(ctx)
        if precision == "int8":
            xml = self._build_int8(ctx, xml)
        self.path = xml
        self.threads = ctx.threads or default_threads()
        self.core = ov.Core()
        self.config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": _HINT[precision],
            "CACHE_DIR": str(self.cache.path(self.key) / "compiled"),
        }
        self._model = self.core.read_model(xml)
        self._requests: OrderedDict[int, object] = OrderedDict()
        self._request(1)  # compile now: errors surface at construction, not at the first image

    def _build_int8(self, ctx: BuildContext, fp32_xml: str) -> str:
        from res2net.export.quantize import quantize_openvino

        with ctx.cache.lock(self.key) as d:
            if not ctx.cache.is_complete(self.key):
                if ctx.calibration is None:
                    raise EngineError("int8 needs calibration images")
                t = time.perf_counter()
                log.info("calibrating int8 OpenVINO model with NNCF (one-time, cached in %s)", d)
                d = ctx.cache.start_build(self.key)
                data = ctx.calibration()
                quantize_openvino(fp32_xml, d / "model.xml", data)
                ctx.cache.finish_build(
                    self.key, seconds=round(time.perf_counter() - t, 1), calibration_images=len(data)
                )
        return str(d / "model.xml")

    def _request(self, batch: int):
        """An infer request of a model compiled for exactly ``batch`` images (static shapes are fastest)."""
        req = self._requests.get(batch)
        if req is None:
            ov = _ov()
            model = self._model.clone()
            shape = model.inputs[0].get_partial_shape()
            shape[0] = batch
            model.reshape({0: shape})
            req = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self._requests[batch] = req
            if len(self._requests) > _MAX_COMPILED:
                self._requests.popitem(last=False)
            del ov
        else:
            self._requests.move_to_end(batch)
        return req

    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        req = self._request(x.shape[0])
        req.infer({0: x})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32)
