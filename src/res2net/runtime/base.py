"""What every inference engine shares: the interface, the build context and the accuracy check.

An engine turns a preprocessed ``float32`` NCHW batch into ``float32`` logits. Engines differ in
runtime (PyTorch, ONNX Runtime, OpenVINO) and precision (fp32, bf16, int8); whatever they are, the
:class:`res2net.Predictor` trusts one only after :func:`check_accuracy` compared it with PyTorch
eager fp32 on real images, because a fast engine that changes predictions is worse than a slow one.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
from torch import nn

from res2net.accuracy import AccuracyReport, judge
from res2net.errors import Res2NetError
from res2net.runtime.cache import ArtifactCache, ArtifactKey


class EngineError(Res2NetError):
    """An engine cannot be built or run here (missing package, unsupported precision or device)."""


@dataclass
class BuildContext:
    """Everything an engine needs to build (or load from the cache) its artifact.

    ``model_factory`` builds the fp32 eval-mode PyTorch model only when it is called, so an engine
    whose artifact is already cached starts without constructing the model or reading weights.
    """

    model_id: str  # model name + config digest: which graph
    weights_sha256: str  # which weights
    model_factory: Callable[[], nn.Module]
    input_size: int = 224
    cache: ArtifactCache = field(default_factory=ArtifactCache)
    threads: int | None = None
    device: str = "cpu"
    calibration: Callable[[], np.ndarray] | None = None  # int8 only: float32 NCHW calibration inputs
    calibration_digest: str = "default"
    options: dict = field(default_factory=dict)  # engine-specific knobs, e.g. {"split_batches": False}

    def key(self, engine: str, precision: str, extra: str = "") -> ArtifactKey:
        return ArtifactKey(self.model_id, self.weights_sha256, engine, precision, self.input_size, extra)


class Engine(ABC):
    """A compiled model: ``forward(float32 NCHW batch) -> float32 logits``."""

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]

    def __init__(self, ctx: BuildContext, precision: str) -> None:
        if precision not in self.precisions:
            raise EngineError(
                f"the {self.name} engine does not run {precision}; it supports {', '.join(self.precisions)}"
            )
        self.precision = precision
        self.device = ctx.device
        self.threads = ctx.threads
        self.key = ctx.key(self.name, precision, ctx.calibration_digest if precision == "int8" else "")
        self.cache = ctx.cache

    @classmethod
    def unavailable_reason(cls, precision: str, device: str) -> str | None:
        """Why this engine cannot run ``precision`` on ``device`` here, or ``None`` if it can."""
        return None

    @abstractmethod
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 NCHW batch (any batch size) and return float32 logits ``[N, classes]``."""

    def describe(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.name} {self.precision} ({self.device}{threads})"

    # -------------------------------------------------------------- cached accuracy reports
    def cached_report(self, check_digest: str) -> AccuracyReport | None:
        meta = self.cache.read_meta(self.key) or {}
        report = meta.get("checks", {}).get(check_digest)
        return judge(AccuracyReport(**report)) if report else None

    def store_report(self, check_digest: str, report: AccuracyReport) -> None:
        with self.cache.lock(self.key):
            meta = self.cache.read_meta(self.key) or {}
            meta.setdefault("checks", {})[check_digest] = asdict(report)
            self.cache.write_meta(self.key, meta)


def array_digest(*arrays: np.ndarray) -> str:
    """A short content digest of arrays (cache keys for calibration and check sets)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(json.dumps([str(a.dtype), list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def default_threads() -> int:
    """Threads per process: the CPUs this process may use, divided among co-located torchrun workers."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cpus // max(1, local))
