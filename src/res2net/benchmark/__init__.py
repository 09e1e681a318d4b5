"""Latency and throughput of Res2Net on this machine, side by side with PaddleClas's own engine.

:func:`run_benchmark` times every (model, engine, precision, batch size) alternately (see
:mod:`res2net.benchmark.core`); :mod:`res2net.benchmark.report` writes the seed's tables as markdown,
CSV and JSON; :mod:`res2net.benchmark.plot` redraws the seed's four charts. The ``res2net benchmark``
command (:mod:`res2net.cli.benchmark`) does all three.
"""

from __future__ import annotations

from res2net.benchmark.core import BenchmarkResult, E2ERecord, LatencyRecord, Settings, run_benchmark

__all__ = ["BenchmarkResult", "E2ERecord", "LatencyRecord", "Settings", "run_benchmark"]
