"""Timing primitives: samples of wall-clock seconds around one call, with a device sync where needed.

A latency sample is one call on an already-resident input, timed with ``perf_counter``; on CUDA the
device is synchronised before the clock starts and before it stops, so the sample is the GPU's time
and not the launch's. Summaries are the median (robust to the odd preempted run on a shared machine)
and the 90th percentile (what a user waits for most of the time).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples: list[float]) -> Summary:
        if not samples:
            raise ValueError("no timing samples")
        ms = sorted(1000.0 * s for s in samples)
        return cls(
            n=len(ms),
            median_ms=statistics.median(ms),
            p90_ms=percentile(ms, 90),
            mean_ms=statistics.fmean(ms),
            min_ms=ms[0],
            max_ms=ms[-1],
        )


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (numpy's default method)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def cuda_sync(device: str) -> Callable[[], None] | None:
    """A synchronise function for ``device`` if it is a CUDA device, else ``None``."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.synchronize


def time_calls(fn: Callable[[], object], n: int, sync: Callable[[], None] | None = None) -> list[float]:
    """``n`` samples (seconds) of ``fn()``; ``sync`` (e.g. ``torch.cuda.synchronize``) brackets each."""
    samples = []
    for _ in range(n):
        if sync is not None:
            sync()
        t = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        samples.append(time.perf_counter() - t)
    return samples
