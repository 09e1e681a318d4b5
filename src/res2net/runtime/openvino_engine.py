"""OpenVINO's CPU plugin: fp32, bf16 (an inference-precision hint on the fp32 IR) or NNCF int8.

OpenVINO folds BatchNorm, fuses conv+bias+ReLU(+add) and picks oneDNN's JIT kernels for the exact
CPU, which is why its fp32 already beats PyTorch eager on a CPU; int8 (NNCF post-training
quantization) uses VNNI/AMX dot products. The compiled blob is cached next to the IR
(``CACHE_DIR``), so a second start skips compilation.

fp32 is requested explicitly (``INFERENCE_PRECISION_HINT=f32``): on CPUs with bf16 support recent
OpenVINO releases otherwise run bf16 silently, which is a different precision than asked for.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import OrderedDict

import numpy as np

from res2net.export.openvino import export_openvino
from res2net.export.quantize import quantize_openvino
from res2net.runtime.base import BuildContext, Engine, EngineError, default_threads
from res2net.runtime.exported import cached_export, cached_int8

_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: layers NNCF left in float stay f32
_MAX_COMPILED = 4  # static-shape compilations kept per engine (batch sizes in use)


def _ov():
    try:
        import openvino
    except ImportError:
        raise EngineError("the openvino engine needs openvino: pip install 'res2net[deploy]'") from None
    return openvino


@functools.cache
def _cpu_capabilities() -> tuple[str, ...]:
    return tuple(_ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def build_ir(ctx: BuildContext) -> str:
    """Path of the cached fp32 OpenVINO IR (dynamic batch) for ``ctx``'s model, converting it if needed."""
    return cached_export(ctx, "openvino", "model.xml", export_openvino, "converting %s to OpenVINO IR")


class OpenVINOEngine(Engine):
    """OpenVINO on the CPU: fp32, bf16 or int8, one compiled model per batch size in use.

    Option ``split_batches`` (default ``True``): run a batch of several images as one share per
    thread on single-threaded streams instead of one multi-threaded pass.
    """

    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    @classmethod
    def unavailable_reason(cls, precision: str, device: str) -> str | None:
        if precision not in cls.precisions:
            return f"no {precision} path"
        if device != "cpu":
            return "the openvino engine runs on the CPU here"
        try:
            caps = _cpu_capabilities()
        except EngineError as e:
            return str(e)
        if precision == "bf16" and "BF16" not in caps:
            return "OpenVINO reports no bf16 support on this CPU"
        if precision == "int8":
            if "INT8" not in caps:
                return "OpenVINO reports no int8 support on this CPU"
            # find_spec, not import: importing nncf takes seconds, and a cached int8 model never needs it
            if importlib.util.find_spec("nncf") is None:
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
        base = {
            "INFERENCE_PRECISION_HINT": _HINT[precision],
            "CACHE_DIR": str(self.cache.path(self.key) / "compiled"),
            "INFERENCE_NUM_THREADS": self.threads,
            # No thread pinning: the single-stream (batch 1) and multi-stream compiled models share
            # the cores, and pinned stream threads of one slowed the other (and we share the machine).
            "ENABLE_CPU_PINNING": False,
        }
        # One image: one stream, all threads inside each layer. Several images: one single-threaded
        # stream per thread, each running its share of the batch — no per-layer thread barriers,
        # each core keeps its own weights/activations hot (measured faster from batch 2 up).
        self.streams = self.threads if ctx.options.get("split_batches", True) else 1
        self._configs = {
            "latency": {**base, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1},
            "streams": {**base, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams},
        }
        self._model = self.core.read_model(xml)
        self._compiled: OrderedDict[tuple[str, int], list] = OrderedDict()
        self._requests("latency", 1)  # compile now: errors surface at construction, not at the first image

    def _build_int8(self, ctx: BuildContext, fp32_xml: str) -> str:
        doing = "calibrating int8 OpenVINO model with NNCF"
        return cached_int8(ctx, self.key, fp32_xml, "model.xml", quantize_openvino, doing)

    def _requests(self, mode: str, batch: int) -> list:
        """Infer requests of a model compiled for exactly ``batch`` images (static shapes are fastest)."""
        key = (mode, batch)
        reqs = self._compiled.get(key)
        if reqs is None:
            model = self._model.clone()
            shape = model.inputs[0].get_partial_shape()
            shape[0] = batch
            model.reshape({0: shape})
            compiled = self.core.compile_model(model, "CPU", self._configs[mode])
            reqs = [compiled.create_infer_request() for _ in range(1 if mode == "latency" else self.streams)]
            self._compiled[key] = reqs
            if len(self._compiled) > _MAX_COMPILED:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return reqs

    def describe(self) -> str:
        split = f", batches split over {self.streams} streams" if self.streams > 1 else ""
        return f"openvino {self.precision} (cpu, {self.threads} threads{split})"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        n = x.shape[0]
        if n == 1 or self.streams == 1:
            (req,) = self._requests("latency", n)
            req.infer({0: x})
            return np.array(req.get_output_tensor(0).data, dtype=np.float32)
        per = -(-n // self.streams)  # images per stream; the last share is padded (it runs in parallel anyway)
        chunks = [x[i : i + per] for i in range(0, n, per)]
        if len(chunks[-1]) < per:
            pad = np.zeros((per - len(chunks[-1]), *x.shape[1:]), np.float32)
            chunks[-1] = np.concatenate([chunks[-1], pad])
        reqs = self._requests("streams", per)
        for req, chunk in zip(reqs, chunks):
            req.start_async({0: chunk})
        for req in reqs[: len(chunks)]:
            req.wait()
        out = np.concatenate([np.array(r.get_output_tensor(0).data, dtype=np.float32) for r in reqs[: len(chunks)]])
        return out[:n]
