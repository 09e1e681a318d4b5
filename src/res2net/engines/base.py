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

from res2net.engines.cache import ArtifactCache, ArtifactKey
from res2net.errors import Res2NetError

PRECISIONS = ("fp32", "bf16", "int8")

# Accuracy-check thresholds (see docs/predict.md "How engines are trusted").
FP32_ATOL = 1e-4  # max |logit difference| for an fp32 engine, scaled by max(1, max|logit| / 10)
REDUCED_MAX_REL_ERROR = 0.10  # mean relative error of the centred logits for bf16 / int8
REDUCED_MIN_TOP1 = 0.90  # fraction of check images whose top-1 class is unchanged


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


@dataclass
class AccuracyReport:
    """How an engine's logits compare with PyTorch eager fp32 on the same preprocessed images."""

    engine: str
    precision: str
    images: int
    max_abs_diff: float  # max |logit difference|
    max_abs_logit: float  # max |reference logit|: the scale max_abs_diff is judged against
    rel_error: float  # mean over images of ||d(ours) - d(ref)|| / ||d(ref)||, d = logits minus their mean
    top1_agreement: float  # fraction of images with the same top-1 class
    passed: bool
    reason: str = ""

    def summary(self) -> str:
        verdict = "passed" if self.passed else f"FAILED ({self.reason})"
        return (
            f"accuracy check vs PyTorch fp32 on {self.images} images: max |logit diff| {self.max_abs_diff:.2e}, "
            f"rel. logit error {self.rel_error:.2%}, top-1 agreement {self.top1_agreement:.0%} -> {verdict}"
        )


def compare_logits(ours: np.ndarray, ref: np.ndarray, engine: str, precision: str) -> AccuracyReport:
    """Measure ``ours`` against the reference logits ``ref`` and judge them by ``precision``'s thresholds."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return AccuracyReport(engine, precision, len(ref), np.inf, 0.0, np.inf, 0.0, False, f"shape {ours.shape}")
    finite = bool(np.isfinite(ours).all())
    diff = float(np.abs(ours - ref).max()) if ours.size and finite else (0.0 if finite else np.inf)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    centred = lambda t: t - t.mean(axis=1, keepdims=True)  # noqa: E731
    num = np.linalg.norm(centred(ours) - centred(ref), axis=1)
    den = np.maximum(np.linalg.norm(centred(ref), axis=1), 1e-12)
    rel = float((num / den).mean()) if finite else np.inf
    top1 = float((ours.argmax(1) == ref.argmax(1)).mean())
    return judge(AccuracyReport(engine, precision, len(ref), diff, scale, rel, top1, False))


def judge(report: AccuracyReport) -> AccuracyReport:
    """Set ``passed``/``reason`` from the measured numbers and the current thresholds.

    Cached reports are re-judged on load, so changing a threshold never trusts a stale verdict.
    """
    r = report
    if not (np.isfinite(r.max_abs_diff) and np.isfinite(r.rel_error)):
        r.passed, r.reason = False, "non-finite logits"
    elif r.precision == "fp32":
        tol = FP32_ATOL * max(1.0, r.max_abs_logit / 10.0)
        r.passed, r.reason = r.max_abs_diff <= tol, f"max |logit diff| {r.max_abs_diff:.2e} > {tol:.1e}"
    elif r.rel_error > REDUCED_MAX_REL_ERROR:
        r.passed, r.reason = False, f"rel. logit error {r.rel_error:.2%} > {REDUCED_MAX_REL_ERROR:.0%}"
    elif r.top1_agreement < REDUCED_MIN_TOP1:
        r.passed, r.reason = False, f"top-1 agreement {r.top1_agreement:.0%} < {REDUCED_MIN_TOP1:.0%}"
    else:
        r.passed = True
    r.passed = bool(r.passed)
    if r.passed:
        r.reason = ""
    return r


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
