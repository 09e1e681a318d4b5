"""How res2net decides that two models compute the same function: one comparison, one tolerance rule.

Every check — an export against PyTorch eager (:mod:`res2net.export.verify`), an engine against
PyTorch fp32 before the Predictor trusts it (:mod:`res2net.runtime`), the benchmark's accuracy
columns — measures outputs with :func:`compare_outputs` and holds fp32 to :func:`tolerance`:
``1e-4`` for logits up to 10 in size, proportionally more beyond (float32 rounding grows with the
values). bf16 / int8 are judged by relative logit error and top-1 agreement instead
(docs/predict.md, "How engines are trusted").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")  # what the engines run; the benchmark adds fp16 on GPUs

FP32_ATOL = 1e-4  # max |output difference| in fp32 for outputs up to LOGIT_SCALE in size
LOGIT_SCALE = 10.0  # outputs up to this size are held to the atol itself; larger ones proportionally
REDUCED_MAX_REL_ERROR = 0.10  # mean relative error of the centred logits for bf16 / int8
REDUCED_MIN_TOP1 = 0.90  # fraction of check images whose top-1 class is unchanged


def tolerance(max_abs_ref: float, atol: float = FP32_ATOL) -> float:
    """The fp32 tolerance for outputs of size ``max_abs_ref``: ``atol`` up to 10, relative beyond."""
    return atol * max(1.0, max_abs_ref / LOGIT_SCALE)


def compare_outputs(ours: np.ndarray, ref: np.ndarray, k: int = 5) -> dict[str, float]:
    """Max abs difference, relative error of the per-image centred outputs, top-1 and ordered top-k agreement.

    ``ours`` and ``ref`` are ``[N, classes]`` of the same shape (a ``ValueError`` otherwise).
    """
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"output shape {ours.shape} differs from the reference's {ref.shape}")
    centred = lambda t: t - t.mean(axis=1, keepdims=True)  # noqa: E731
    rel = np.linalg.norm(centred(ours) - centred(ref), axis=1) / np.maximum(np.linalg.norm(centred(ref), axis=1), 1e-12)
    k = min(k, ref.shape[1])
    topk = lambda t: np.argsort(-t, axis=1, kind="stable")[:, :k]  # noqa: E731
    finite = bool(np.isfinite(ours).all())
    empty = ours.size == 0
    return {
        "max_abs_diff": (0.0 if empty else float(np.abs(ours - ref).max())) if finite else float("inf"),
        "max_abs_ref": 0.0 if empty else float(np.abs(ref).max()),
        "rel_error": float(rel.mean()) if finite and not empty else (0.0 if finite else float("inf")),
        "top1_agreement": float((ours.argmax(1) == ref.argmax(1)).mean()) if not empty else 0.0,
        "topk_agreement": float((topk(ours) == topk(ref)).all(axis=1).mean()) if not empty else 0.0,
        "k": k,
    }


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
    if np.shape(ours) != np.shape(ref):
        return AccuracyReport(engine, precision, len(ref), np.inf, 0.0, np.inf, 0.0, False, f"shape {np.shape(ours)}")
    m = compare_outputs(ours, ref)
    return judge(
        AccuracyReport(
            engine, precision, len(ref), m["max_abs_diff"], m["max_abs_ref"], m["rel_error"], m["top1_agreement"], False
        )
    )


def judge(report: AccuracyReport) -> AccuracyReport:
    """Set ``passed``/``reason`` from the measured numbers and the current thresholds.

    Cached reports are re-judged on load, so changing a threshold never trusts a stale verdict.
    """
    r = report
    if not (np.isfinite(r.max_abs_diff) and np.isfinite(r.rel_error)):
        r.passed, r.reason = False, "non-finite logits"
    elif r.precision == "fp32":
        tol = tolerance(r.max_abs_logit)
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
