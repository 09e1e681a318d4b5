"""DDP on PyTorch's own engine: ``torchrun --nproc_per_node 2`` (gloo) == one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.training.conftest import read_weights, run_training, small_overrides


def _torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "res2net"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=env)


def _ddp_overrides(photos, out, *extra):
    return small_overrides(
        photos,
        out,
        "Arch.num_classes=4",
        "DataLoader.Train.crop_size=64",
        "DataLoader.Train.scale=[0.3,1.0]",
        "EMA.enabled=false",
        "Arch.drop_path_rate=0.0",
        "DataLoader.Train.mixup_alpha=0.0",  # mixup permutes within a process's batch: not comparable
        "Optimizer.accum_steps=1",
        "Global.max_steps=4",
        "Optimizer.warmup_epochs=0",
        "Global.eval_interval=0",
        "Global.save_interval_steps=0",
        "Arch.sync_bn=true",  # global-batch BN statistics (CpuSyncBatchNorm on gloo)
        *extra,
    )


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(photo_tree, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    proc = run_training(_ddp_overrides(photo_tree, single, "DataLoader.Train.batch_size=32"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    args = ["train", "-c", "digits_res2net_tiny"]
    for o in _ddp_overrides(photo_tree, ddp, "DataLoader.Train.batch_size=16"):
        args += ["-o", o]
    proc = _torchrun(*args)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "global batch 32 (16 x 2 processes" in (ddp / "train.log").read_text()

    import res2net

    init = res2net.create_model("res2net_tiny", num_classes=4, zero_init_last=False).state_dict()
    ws, wd = read_weights(single / "last.safetensors"), read_weights(ddp / "last.safetensors")
    assert ws.keys() == wd.keys()
    keys = [k for k in ws if ws[k].is_floating_point() and "running" not in k]
    update = sum((ws[k] - init[k]).double().pow(2).sum() for k in keys).sqrt().item()
    apart = sum((ws[k] - wd[k]).double().pow(2).sum() for k in keys).sqrt().item()
    assert update > 1.0, "the runs did not train"
    # Same math, different fp32 summation order (per-process sums + all-reduce). Early training of this
    # model is ill-conditioned in fp32 (BN of channels whose mean dwarfs their spread), so the orders
    # differ by more than rounding: measured 3.5e-4 of the update with SyncBN; a real mismatch — e.g.
    # per-process BN statistics (no SyncBN: 3.8e-3), a summed instead of averaged gradient (~1) or a
    # different sample order (~1) — is far above the bound.
    assert apart / update < 1.5e-3, f"DDP weights differ from single-process ones by {apart / update:.2e} of the update"


@pytest.mark.slow
def test_distributed_eval_matches_single_process(digits_model):
    common = [
        "--model",
        digits_model.model_name,
        "--num-classes",
        "10",
        "--weights",
        str(digits_model.weights),
        "--data",
        str(digits_model.data_root),
        "--list",
        str(digits_model.val_list),
        "-o",
        "DataLoader.Eval.resize_short=32",
        "-o",
        "DataLoader.Eval.crop_size=32",
        "--json",
    ]
    proc = _torchrun("eval", *common)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, "only rank 0 prints"
    res = lines[0]
    assert res["count"] == len(digits_model.val_samples)  # every image exactly once across the 2 shards
    assert res["top1"] == pytest.approx(digits_model.val_top1, abs=1e-9)


def test_cpu_sync_batchnorm_single_process_is_plain_batchnorm():
    from res2net.training.distributed import CpuSyncBatchNorm, convert_sync_batchnorm

    bn = torch.nn.BatchNorm2d(4)
    m = convert_sync_batchnorm(torch.nn.Sequential(bn), torch.device("cpu"))
    assert isinstance(m[0], CpuSyncBatchNorm)
    x = torch.randn(8, 4, 5, 5)
    torch.testing.assert_close(m(x), bn(x))


def test_cpu_sync_batchnorm_math_and_gradients_through_the_sync_path(tmp_path):
    """With a (1-process) group the all-reduce path runs; it must equal BatchNorm2d, forward and backward."""
    import torch.distributed as dist

    from res2net.training.distributed import convert_sync_batchnorm

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ref = torch.nn.BatchNorm2d(6)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.normal_()
        sync = convert_sync_batchnorm(torch.nn.Sequential(ref), torch.device("cpu"))[0]
        ref2 = torch.nn.BatchNorm2d(6)
        ref2.load_state_dict(ref.state_dict())
        x = torch.randn(4, 6, 3, 3) * 3 + 1
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = sync(xa), ref2(xb)
        torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sync.weight.grad, ref2.weight.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sync.running_var, ref2.running_var)
        torch.testing.assert_close(sync.running_mean, ref2.running_mean)
    finally:
        dist.destroy_process_group()
