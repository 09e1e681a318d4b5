"""Training features on real digits data: schedule, NaN policy, fine-tuning, bad images, metrics, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from res2net.training.config import load_config
from res2net.training.train import NonFiniteLossError, lr_schedule, train
from tests.training.conftest import read_metrics, read_weights, small_overrides

METRIC_KEYS = {"epoch", "train_loss", "val_top1", "val_top5", "lr", "img_per_s", "seconds"}


def test_lr_schedule_is_paddleclas_cosine_per_iteration():
    kw = dict(base_lr=0.1, total_steps=1000)
    assert lr_schedule(0, **kw) == pytest.approx(0.1)
    assert lr_schedule(500, **kw) == pytest.approx(0.05)
    assert lr_schedule(250, **kw) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert lr_schedule(1000, **kw) == pytest.approx(0.0, abs=1e-12)
    # warm-up: linear from warmup_start_lr, then cosine over the remaining iterations
    kw = dict(base_lr=0.1, total_steps=1000, warmup_steps=100, warmup_start_lr=0.01)
    assert lr_schedule(0, **kw) == pytest.approx(0.01)
    assert lr_schedule(50, **kw) == pytest.approx(0.055)
    assert lr_schedule(100, **kw) == pytest.approx(0.1)
    assert lr_schedule(550, **kw) == pytest.approx(0.05)


def test_linear_lr_scaling_and_recipe_in_the_log(small_digits, tmp_path):
    cfg = load_config(
        "digits_res2net_tiny",
        small_overrides(small_digits, tmp_path, "Global.max_steps=1", "Global.eval_interval=0", "Optimizer.lr=0.4"),
    )
    train(cfg)
    # 0.4 for 256 -> 16 x 1 process x 2 accumulation = 32 -> 0.05
    assert "global batch 32 (16 x 1 processes x 2 accumulation), lr 0.05" in (tmp_path / "train.log").read_text()


def test_metrics_jsonl_has_one_complete_line_per_epoch(digits_model):
    rows = read_metrics(digits_model.run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        assert r.keys() >= METRIC_KEYS
        assert r["img_per_s"] > 0 and r["seconds"] > 0 and 0 <= r["val_top1"] <= r["val_top5"] <= 1
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["lr"] < rows[1]["lr"]  # cosine decay
    assert (digits_model.run_dir / "config.yaml").is_file()


def _nan_at(monkeypatch, bad_calls):
    import res2net.data.augment as augment

    real = augment.soft_cross_entropy
    calls = [0]

    def loss(logits, targets):
        calls[0] += 1
        out = real(logits, targets)
        return out * float("nan") if calls[0] in bad_calls else out

    monkeypatch.setattr(augment, "soft_cross_entropy", loss)


def test_nan_loss_stops_with_a_clear_message(small_digits, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {3})
    cfg = load_config("digits_res2net_tiny", small_overrides(small_digits, tmp_path, "Global.eval_interval=0"))
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, batch 3, step 2.*on_nonfinite=skip"):
        train(cfg)
    assert not (tmp_path / "last.safetensors").exists()  # nothing written from the poisoned step


def test_nan_loss_can_skip_the_step(small_digits, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {3})
    cfg = load_config(
        "digits_res2net_tiny",
        small_overrides(small_digits, tmp_path, "Global.on_nonfinite=skip", "Global.epochs=1", "EMA.enabled=false"),
    )
    result = train(cfg)
    (row,) = read_metrics(tmp_path)
    assert row["nonfinite_steps"] == 1 and math.isfinite(row["train_loss"])
    assert result.global_step == 8
    assert all(torch.isfinite(t).all() for t in read_weights(tmp_path / "last.safetensors").values())


def test_finetune_new_head_with_frozen_backbone(digits_model, small_digits, tmp_path):
    cfg = load_config(
        "digits_res2net_tiny",
        small_overrides(
            small_digits,
            tmp_path,
            f"Arch.pretrained={digits_model.weights}",
            "Arch.num_classes=12",
            "Arch.freeze_backbone=true",
            "Arch.drop_path_rate=0.0",
            "EMA.enabled=false",
            "Global.max_steps=3",
            "Global.eval_interval=0",
        ),
    )
    train(cfg)
    before, after = read_weights(digits_model.weights), read_weights(tmp_path / "last.safetensors")
    assert after["fc.weight"].shape == (12, 2048)
    for k, v in before.items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, after[k]), f"{k} changed although the backbone is frozen"
    # the new head trained (it was re-initialised, then moved)
    fresh = __import__("res2net").create_model("res2net_tiny", num_classes=12).state_dict()["fc.weight"]
    assert not torch.equal(after["fc.weight"], fresh)


def test_corrupt_images_are_logged_skipped_and_counted(small_digits, tmp_path):
    root = small_digits["root"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "garbage.png").write_bytes(b"this is not a png" * 10)
    lines = small_digits["train"].read_text().splitlines()[:46]
    lst = tmp_path / "train.txt"
    lst.write_text("\n".join(lines + [f"{bad / 'empty.png'} 1", f"{bad / 'garbage.png'} 2"]) + "\n")
    val = tmp_path / "val.txt"
    val.write_text("\n".join(small_digits["val"].read_text().splitlines()[:20] + [f"{bad / 'empty.png'} 1"]) + "\n")
    out = tmp_path / "run"
    cfg = load_config(
        "digits_res2net_tiny",
        small_overrides(
            small_digits,
            out,
            f"DataLoader.Train.list={lst}",
            f"DataLoader.Eval.list={val}",
            f"DataLoader.Train.root={root}",
            "Global.epochs=1",
        ),
    )
    train(cfg)
    (row,) = read_metrics(out)
    assert row["skipped_images"] == 2 and row["val_skipped_images"] == 1
    log = (out / "train.log").read_text()
    assert "empty.png" in log and "garbage.png" in log


def test_cli_train_and_eval_round_trip(digits_model, small_digits, tmp_path):
    """``res2net train`` / ``res2net eval`` as a user runs them; a bad override is one clear line."""
    out = tmp_path / "cli"
    args = [sys.executable, "-m", "res2net", "train", "-c", "digits_res2net_tiny"]
    for o in small_overrides(small_digits, out, "Global.max_steps=2", "Global.eval_interval=0"):
        args += ["-o", o]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "last.pt").is_file() and (out / "last.safetensors").is_file()

    proc = subprocess.run(args + ["-o", "Global.epoch=3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "unknown config key 'Global.epoch'" in proc.stderr and "Global.epochs" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = subprocess.run(
        [sys.executable, "-m", "res2net", "eval", "-c", "digits_res2net_tiny", "--weights", str(digits_model.weights)]
        + [
            "-o",
            f"DataLoader.Eval.root={digits_model.data_root}",
            "-o",
            f"DataLoader.Eval.list={digits_model.val_list}",
        ]
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["top1"] == pytest.approx(digits_model.val_top1, abs=1e-9) and res["count"] == 359


def test_bf16_autocast_channels_last_and_ema_run_on_cpu(small_digits, tmp_path):
    cfg = load_config(
        "digits_res2net_tiny",
        small_overrides(small_digits, tmp_path, "Global.amp=bf16", "Global.channels_last=true", "Global.epochs=1"),
    )
    result = train(cfg)
    (row,) = read_metrics(tmp_path)
    assert math.isfinite(row["train_loss"]) and row["ema_val_top1"] is not None
    assert result.best_weights is not None
    assert all(torch.isfinite(t).all() for t in read_weights(tmp_path / "last.safetensors").values())
    with pytest.raises(Exception, match="fp16 needs CUDA"):
        train(load_config("digits_res2net_tiny", small_overrides(small_digits, tmp_path / "x", "Global.amp=fp16")))
