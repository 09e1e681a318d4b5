"""Inference engines behind :class:`res2net.Predictor`: PyTorch, ONNX Runtime and OpenVINO.

``create_engine(name, precision, ctx)`` builds one engine; :func:`auto_candidates` lists the
``(engine, precision)`` pairs ``engine="auto"`` tries, fastest first for this machine. The ranking
comes from ``res2net benchmark`` (docs/benchmarks.md, "Inference latency"): on CPUs with int8 dot products
(VNNI/AMX) OpenVINO int8 is fastest, then ONNX Runtime int8; with native bf16, OpenVINO bf16; then
OpenVINO fp32 (which already beats PyTorch eager), ONNX Runtime fp32 and PyTorch. A reduced
precision is only used after its accuracy check against PyTorch fp32 passed (see the Predictor).
"""

from __future__ import annotations

from res2net.accuracy import PRECISIONS, AccuracyReport, compare_logits
from res2net.cpu import has_bf16, has_int8_dot
from res2net.runtime.base import BuildContext, Engine, EngineError
from res2net.runtime.cache import ArtifactCache, ArtifactKey
from res2net.runtime.onnxruntime_engine import OnnxRuntimeEngine
from res2net.runtime.openvino_engine import OpenVINOEngine
from res2net.runtime.torch_engine import TorchEngine

ENGINE_NAMES = ("torch", "onnxruntime", "openvino")


def engine_class(name: str) -> type[Engine]:
    if name == "torch":
        return TorchEngine
    if name == "onnxruntime":
        return OnnxRuntimeEngine
    if name == "openvino":
        return OpenVINOEngine
    raise EngineError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINE_NAMES)}")


def create_engine(name: str, precision: str, ctx: BuildContext) -> Engine:
    """Build engine ``name`` at ``precision`` (raises :class:`EngineError` if it cannot run here)."""
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    cls = engine_class(name)
    reason = cls.unavailable_reason(precision, ctx.device)
    if reason:
        raise EngineError(f"{name} {precision} is not available: {reason}")
    return cls(ctx, precision)


def auto_candidates(device: str = "cpu", precision: str | None = None) -> list[tuple[str, str]]:
    """``(engine, precision)`` pairs in the order ``engine="auto"`` tries them on this machine."""
    if device.startswith("cuda"):
        order = [("torch", "bf16"), ("onnxruntime", "fp32"), ("torch", "fp32")]
    else:
        int8 = [("openvino", "int8"), ("onnxruntime", "int8")]
        bf16 = [("openvino", "bf16"), ("torch", "bf16")] if has_bf16() else []
        fp32 = [("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32")]
        # With VNNI/AMX int8 dot products int8 is fastest; without them native bf16 (if any) comes
        # first, and int8 (u8s8 on AVX2/AVX-512 without VNNI) still beats fp32.
        order = int8 + bf16 + fp32 if has_int8_dot() else bf16 + int8 + fp32
    if precision is not None:
        order = [c for c in order if c[1] == precision]
    return [(e, p) for e, p in order if engine_class(e).unavailable_reason(p, device) is None]


__all__ = [
    "ENGINE_NAMES",
    "PRECISIONS",
    "AccuracyReport",
    "ArtifactCache",
    "ArtifactKey",
    "BuildContext",
    "Engine",
    "EngineError",
    "auto_candidates",
    "compare_logits",
    "create_engine",
    "engine_class",
]
