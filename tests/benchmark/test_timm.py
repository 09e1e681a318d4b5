"""The timm anchor: which timm model each of ours maps to, that it runs *our* weights, and its reports."""

from __future__ import annotations

import pytest
import torch

import res2net
from res2net.benchmark import Settings, run_benchmark
from res2net.benchmark.report import markdown
from res2net.benchmark.runners import Unsupported, build_runner, check_supported
from tests.export.conftest import real_batch
from tests.utils import assert_logits_close, randomize_

pytest.importorskip("timm")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("Res2Net50_26w_4s", "res2net50_26w_4s"),
        ("Res2Net50_14w_8s", "res2net50_14w_8s"),
        ("Res2Net50_vd_26w_4s", "res2net50d"),
        ("Res2Net50_vd_26w_4s_ssld", "res2net50d"),
        ("Res2Net101_vd_26w_4s", "res2net101d"),
        ("res2net50d", "res2net50d"),
        ("res2next50", "res2next50"),
    ],
)
def test_timm_names_from_the_zoo(ours, theirs):
    from res2net.benchmark.timm_anchor import timm_model_name

    assert timm_model_name(ours) == theirs


@pytest.mark.parametrize("name", ["res2net_tiny", "Res2Net200_vd_26w_4s", "Res2Net152_vd_26w_4s"])
def test_no_timm_equivalent_is_a_skip_with_a_reason(name):
    with pytest.raises(Unsupported, match="timm has no Res2Net-"):
        check_supported("timm", "fp32", "cpu", model=name)
    if name == "res2net_tiny":  # the built model is refused the same way (what a worker reports)
        with pytest.raises(Unsupported, match=r"timm has no Res2Net-14 8w x 4s \(res2net_tiny\)"):
            build_runner(res2net.create_model(name), "timm", "fp32")
    with pytest.raises(Unsupported, match="no int8 path"):
        check_supported("timm", "int8", "cpu", model="res2net50d")


def test_timm_runs_our_weights():
    """Same semantics (a timm-named card), same weights: timm's logits are ours; it times and runs files."""
    from res2net.benchmark.timm_anchor import TimmRunner
    from res2net.export.verify import default_images

    model = randomize_(res2net.create_model("res2net50_26w_4s"))
    runner = TimmRunner(model, "fp32", device="cpu", input_size=64, check=False)
    assert runner.label == "timm fp32" and runner.timm_name == "res2net50_26w_4s"
    assert type(runner.model).__module__.startswith("timm.")  # timm's class, not ours
    x = real_batch(64, n=2)
    with torch.inference_mode():
        ours = model(x)
    assert_logits_close(runner.run(x), ours, atol=1e-4)
    x1 = runner._input(1)
    assert x1.dtype == torch.float32 and x1.is_contiguous()  # as shipped: NCHW fp32, autocast does the rest
    samples = runner.time(1, 2)
    assert len(samples) == 2 and all(s > 0 for s in samples)
    assert runner.e2e(default_images()[:2], 2) > 0
    assert runner.data_config["input_size"] == (3, 224, 224)  # timm's own eval pipeline


def test_timm_in_the_harness(tmp_path):
    """Dispatched in a worker like every runner; tiny skips; ratio and e2e tables get timm columns."""
    settings = Settings(
        models=["res2net_tiny", "res2net50d"],
        batch_sizes=[1],
        engines=["timm"],
        precisions=["fp32"],
        input_size=64,
        warmup=1,
        repeats=2,
        rounds=1,
        e2e_count=2,
        e2e_batch_size=2,
        e2e_passes=1,
        cache_dir=str(tmp_path / "cache"),
    )
    result = run_benchmark(settings, command="test")
    [skip] = result.skipped
    assert skip["model"] == "res2net_tiny" and "timm has no" in skip["reason"]
    [lat] = result.latency
    assert lat.label == "timm fp32" and lat.model == "res2net50d" and lat.n == 2
    [info] = result.runners
    assert info["process"] == "own worker process" and info["timm_model"] == "res2net50d"
    assert info["parity"]["max_abs_logit_diff"] <= 1e-4 and info["parity"]["top1_agreement"] == 1.0
    md = markdown(result)
    assert "#### Latency relative to timm" in md and "| res2net50d | timm fp32 | 1.00x |" in md
    assert "| vs Paddle predict_cls | vs timm |" in md and "| res2net50d | timm fp32 | 2 | 2 |" in md
