"""Timing statistics, tables, CSV/JSON and the four charts, on synthetic results (no timing here)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from res2net.benchmark.core import BenchmarkResult, E2ERecord, LatencyRecord, Settings
from res2net.benchmark.report import load_json, markdown, write_all
from res2net.benchmark.seed import seed_latency
from res2net.benchmark.timing import Summary, percentile, time_calls
from res2net.errors import Res2NetError


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    samples = list(rng.uniform(0.01, 0.02, 31))
    s = Summary.of(samples)
    ms = np.array(samples) * 1000
    assert s.n == 31
    assert s.median_ms == pytest.approx(np.median(ms))
    assert s.p90_ms == pytest.approx(np.percentile(ms, 90))
    assert s.min_ms == pytest.approx(ms.min()) and s.max_ms == pytest.approx(ms.max())
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        Summary.of([])


def test_time_calls_counts_and_syncs():
    calls, syncs = [], []
    out = time_calls(lambda: calls.append(1), 5, sync=lambda: syncs.append(1))
    assert len(out) == 5 and len(calls) == 5 and len(syncs) == 10 and all(t >= 0 for t in out)


def test_settings_validation():
    with pytest.raises(Res2NetError):
        Settings(models=["x"], repeats=0)
    with pytest.raises(Res2NetError):
        Settings(models=["x"], batch_sizes=[0])


def rec(model, label, bs, median, precision="fp32"):
    engine = label.split()[0]
    p90, lo, hi = median * 1.1, median * 0.9, median * 2
    return LatencyRecord(model, 224, engine, precision, label, bs, "cpu", 30, median, p90, median, lo, hi)


def synthetic() -> BenchmarkResult:
    m = "Res2Net50_vd_26w_4s"
    lat = []
    for bs, paddle in ((1, 62.0), (4, 210.0), (8, 415.0)):
        lat += [rec(m, "paddle fp32", bs, paddle), rec(m, "openvino fp32", bs, paddle * 0.5)]
        lat.append(rec(m, "openvino int8", bs, paddle * 0.25, "int8"))
    e2e = [
        E2ERecord(m, "paddle", "fp32", "paddle fp32", 8, 64, 3, 8.0, 8.0),
        E2ERecord(m, "openvino", "int8", "openvino int8", 8, 64, 3, 2.0, 32.0),
    ]
    settings = Settings(models=[m]).__dict__
    machine = {"cpu": "Test CPU", "usable_cpus": 2, "torch": "2.x", "load_average": [0.1, 0.2, 0.3]}
    return BenchmarkResult(settings, machine, "res2net benchmark", "now", 12.0, lat, e2e, [], [])


def test_markdown_ratios_and_files(tmp_path):
    result = synthetic()
    md = markdown(result)
    assert "| Models | Size | Latency bs=1 | Latency bs=4 | Latency bs=8 |" in md
    assert "| Res2Net50_vd_26w_4s | 224 | 62.00 (68.20) | 210.0 (231.0) | 415.0 (456.5) |" in md
    assert "| Res2Net50_vd_26w_4s | openvino fp32 | 0.50x | 0.50x | 0.50x |" in md
    assert "| Res2Net50_vd_26w_4s | openvino int8 | 0.25x | 0.25x | 0.25x |" in md
    assert "| Res2Net50_vd_26w_4s | openvino int8 | 8 | 64 | 32.0 | 4.00x |" in md
    assert "Command: `res2net benchmark`" in md and "Test CPU" in md
    paths = write_all(result, tmp_path)
    rows = list(csv.DictReader(paths["latency_csv"].read_text().splitlines()))
    assert len(rows) == 9 and float(rows[0]["median_ms"]) == 62.0
    assert json.loads(paths["json"].read_text())["latency"][1]["label"] == "openvino fp32"
    again = load_json(paths["json"])
    assert again.latency == result.latency and again.e2e == result.e2e


def test_seed_numbers():
    assert seed_latency("T4 FP32 TensorRT", "Res2Net50_vd_26w_4s", 4) == 9.93247
    assert seed_latency("V100 FP32 TensorRT", "Res2Net101_vd_26w_4s_ssld", 8) == 16.11
    assert seed_latency("T4 FP16 TensorRT", "Res2Net50_vd_26w_4s_ssld", 1) == 3.69221  # ssld -> base graph
    assert seed_latency("T4 FP16 TensorRT", "res2net_tiny", 1) is None


def test_four_charts(tmp_path):
    pytest.importorskip("matplotlib")
    from res2net.benchmark.plot import plot_charts

    paths = plot_charts(synthetic(), tmp_path, models=["Res2Net50_vd_26w_4s", "Res2Net50_vd_26w_4s_ssld"])
    assert [p.name for p in paths] == [
        "top1_vs_flops.png",
        "top1_vs_params.png",
        "top1_vs_fp32_latency_bs4.png",
        "top1_vs_reduced_precision_latency_bs4.png",
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_ratios_against_each_anchor():
    """timm is an anchor too: a ratio table against it, and a 'vs timm' end-to-end column when it ran."""
    result = synthetic()
    m = "Res2Net50_vd_26w_4s"
    result.latency += [rec(m, "timm fp32", bs, ms) for bs, ms in ((1, 80.0), (4, 300.0), (8, 600.0))]
    result.e2e.append(E2ERecord(m, "timm", "fp32", "timm fp32", 8, 64, 3, 4.0, 16.0))
    md = markdown(result)
    paddle, timm = md.index("relative to PaddleClas's engine"), md.index("#### Latency relative to timm")
    assert paddle < timm
    assert "| Res2Net50_vd_26w_4s | openvino fp32 | 0.50x | 0.50x | 0.50x |" in md[paddle:timm]
    assert "| Res2Net50_vd_26w_4s | openvino fp32 | 0.39x | 0.35x | 0.35x |" in md[timm:]
    assert "| Res2Net50_vd_26w_4s | paddle fp32 | 0.78x | 0.70x | 0.69x |" in md[timm:]
    assert "| Images/s | vs Paddle predict_cls | vs timm |" in md
    assert "| Res2Net50_vd_26w_4s | openvino int8 | 8 | 64 | 32.0 | 4.00x | 2.00x |" in md
    assert "vs timm" not in markdown(synthetic())  # no timm run, no timm column (existing layout kept)
