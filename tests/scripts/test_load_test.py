"""``scripts/load_test.py`` end to end on the tiny model: real servers, real clients, its report.

The numbers themselves are machine-dependent (docs/benchmarks.md has the measured ones); what is
checked is that every scenario ran without errors, that the server-side forward-pass figures were
read from ``/metrics`` (batches grouped under load, single images without batching), and that the
summary relates the speed-up to its forward-only bound.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def load_test():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "scripts" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("load_test", None)


def test_batching_summary_relates_speedup_to_its_bound(load_test):
    R = load_test.Result
    results = [
        R("batching", 16, "", throughput=120.0, forward_ms_per_image=6.0),
        R("no-batching", 16, "", throughput=100.0, forward_ms_per_image=7.5),
    ]
    summary = load_test.batching_summary(results)
    assert summary["speedup"] == pytest.approx(1.2)
    assert summary["forward_gain"] == pytest.approx(1.25)
    assert summary["share_of_bound"] == pytest.approx(0.96)
    assert load_test.batching_summary(results[:1]) is None  # no baseline: no ratio invented


def test_load_test_runs_all_scenarios(load_test, tmp_path, capsys):
    out = tmp_path / "results.json"
    rc = load_test.main(
        [
            "--model", "res2net_tiny", "--engine", "torch", "--threads", "1",
            "--concurrency", "6", "--duration", "2", "--max-queue", "4", "--json", str(out),
        ]
    )  # fmt: skip
    report = capsys.readouterr().out
    assert rc == 0, report
    results = {r["scenario"]: r for r in json.loads(out.read_text())}
    assert set(results) == {"batching", "no-batching", "overload"}
    for r in results.values():
        assert r["server_alive"] and not r["errors"], r
        assert r["ok"] > 0 and r["batches"] > 0 and r["forward_ms_per_image"] > 0, r
    assert results["no-batching"]["mean_batch"] == 1.0
    assert results["batching"]["mean_batch"] > 1.0  # 6 clients against one inference thread: groups form
    assert set(results["overload"]["statuses"]) <= {"200", "503"}
    assert "batching speed-up at 6 clients" in report and "of that bound reached" in report
