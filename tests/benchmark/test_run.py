"""The benchmark harness on a small model (a few calls, not a measurement), and the Paddle anchor."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import res2net
from res2net.benchmark import Settings, run_benchmark
from res2net.benchmark.report import markdown
from tests.export.conftest import real_batch
from tests.utils import randomize_


def test_harness_alternates_and_records(tmp_path):
    settings = Settings(
        models=["res2net_tiny"],
        batch_sizes=[1, 2],
        engines=["torch", "torchscript", "paddle"],
        precisions=["fp32", "int8"],
        warmup=1,
        repeats=4,
        rounds=2,
        e2e_count=3,
        e2e_batch_size=2,
        e2e_passes=1,
        cache_dir=str(tmp_path / "cache"),
    )
    result = run_benchmark(settings, command="test")
    labels = {(r.label, r.batch_size) for r in result.latency}
    assert labels == {(lbl, b) for lbl in ("torch fp32", "torchscript fp32") for b in (1, 2)}
    assert all(r.n == 4 and 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.max_ms for r in result.latency)
    [e2e] = result.e2e  # only the Predictor engine runs JPEG -> top-5
    assert e2e.label == "torch fp32" and e2e.images == 3 and e2e.images_per_s > 0
    reasons = {(s["engine"], s["precision"]): s["reason"] for s in result.skipped}
    assert "no int8 path" in reasons[("torch", "int8")]
    assert "PaddleClas has no model" in reasons[("paddle", None)]  # a skip with its reason, not a crash
    torch_runner = next(r for r in result.runners if r["label"] == "torch fp32")
    assert torch_runner["accuracy"]["passed"]
    md = markdown(result)
    assert "#### torchscript fp32 (cpu)" in md and "skipped res2net_tiny / torch int8" in md


def test_in_process_mode(tmp_path):
    settings = Settings(
        models=["res2net_tiny"],
        batch_sizes=[1],
        engines=["torchscript", "cudagraph"],
        precisions=["fp32", "fp16"],
        warmup=1,
        repeats=2,
        rounds=2,
        e2e=False,
        isolate=False,
        cache_dir=str(tmp_path / "cache"),
    )
    result = run_benchmark(settings)
    assert [r.label for r in result.latency] == ["torchscript fp32"]
    reasons = {(s["engine"], s["precision"]): s["reason"] for s in result.skipped}
    assert "GPU only" in reasons[("torchscript", "fp16")] and "CUDA" in reasons[("cudagraph", "fp32")]
    acc = result.runners[0]["accuracy"]  # our own runners report their difference to eager on the photos
    assert acc["images"] == 5 and acc["max_abs_diff"] <= 1e-4 and acc["top1_agreement"] == 1.0


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "res2net", *args], capture_output=True, text=True, timeout=600)


def test_cli_refuses_too_few_repeats_and_replots(tmp_path):
    out = run_cli("benchmark", "--repeats", "5")
    assert out.returncode == 1 and "at least 30" in out.stderr and "Traceback" not in out.stderr
    from res2net.benchmark.report import write_all
    from tests.benchmark.test_report import synthetic

    paths = write_all(synthetic(), tmp_path)
    out = run_cli("benchmark", "--plot-only", str(paths["json"]), "--output-dir", str(tmp_path / "charts"))
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "charts").glob("*.png"))) == 4


@pytest.mark.paddle
@pytest.mark.slow
def test_paddle_anchor_runs_our_weights():
    """The anchor runs PaddleClas's own Res2Net50_26w_4s with *our* weights: same logits, real timings."""
    from res2net.benchmark.paddle_anchor import PaddleAnchor, PaddleUnavailable, paddle_python

    try:
        paddle_python()
    except PaddleUnavailable as e:
        pytest.skip(str(e))
    model = randomize_(res2net.create_model("Res2Net50_26w_4s"))
    x = real_batch(224)
    with PaddleAnchor(model, threads=1, softmax=False) as anchor:
        theirs = anchor.run(x.numpy())
        with torch.no_grad():
            ours = model(x).numpy()
        # oneDNN's fused kernels round differently from eager: 1e-3 on logits of size ~10
        assert np.abs(theirs - ours).max() <= 1e-3 * max(1.0, np.abs(ours).max())
        spread = np.abs(ours - ours.mean(0)).max()
        assert spread > 0.1, "random logits barely depend on the input: the comparison would prove nothing"
        samples = anchor.time(1, 3)
        assert len(samples) == 3 and all(s > 0 for s in samples)
        from res2net.export.verify import default_images

        seconds = anchor.e2e(default_images()[:2], 2)
        assert len(seconds) == 1 and seconds[0] > 0
        assert anchor.info["threads"] == 1 and anchor.info["mkldnn"] is True
    assert json.dumps(anchor.info)


def test_random_weights_are_input_dependent_and_well_conditioned():
    """The benchmark's stand-in weights must make accuracy checks mean something: the top class
    varies from photo to photo, and float32 rounding is not amplified through the depth (with
    training-like small last-BN gammas fp32 stays within 1e-5 of fp64; without them 3e-5 on
    Res2Net-50 and 1e-3 on Res2Net-200, which failed the fp32 engines' 1e-4 check)."""
    from res2net.benchmark.core import _calibration_batch, random_weights_
    from res2net.factory import create_model

    model = random_weights_(create_model("Res2Net50_vd_26w_4s")).eval()
    x = _calibration_batch(model)
    with torch.no_grad():
        fp32 = model(x).double()
        fp64 = model.double()(x.double())
    assert len(set(fp64.argmax(1).tolist())) == len(x) >= 5
    assert (fp32 - fp64).abs().max().item() < 1e-5
    assert random_weights_(create_model("Res2Net50_vd_26w_4s")).fc.bias.equal(model.fc.bias.float())  # seeded
