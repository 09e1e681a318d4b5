"""Checkpoints never lose work: SIGKILL mid-epoch or mid-checkpoint-write, resume, same final weights.

Every stateful feature is on (EMA, drop path, mixup, gradient accumulation, warm-up + cosine, mid-epoch
checkpoints), and the resumed run uses DataLoader workers where the reference used none — the weights
must still be bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import signal

import pytest
import torch

from res2net.training.checkpoint import LAST, load_checkpoint
from tests.training.conftest import read_metrics, read_weights, run_training, small_overrides


@pytest.fixture(scope="module")
def reference_run(small_digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = run_training(small_overrides(small_digits, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _assert_same_weights(a, b):
    wa, wb = read_weights(a / "last.safetensors"), read_weights(b / "last.safetensors")
    assert wa.keys() == wb.keys()
    diffs = {k: (wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] == 0.0, f"resumed run differs from the uninterrupted one: {worst} by {diffs[worst]:.3g}"
    # and the run really trained: the EMA weights moved away from a fresh model's
    import res2net

    fresh = res2net.create_model("res2net_tiny", num_classes=10).state_dict()
    assert (wa["fc.weight"] - fresh["fc.weight"]).abs().max() > 1e-3


def _assert_same_metrics(a, b):
    ma, mb = read_metrics(a), read_metrics(b)
    assert [r["epoch"] for r in mb] == [1, 2, 3], "each epoch exactly once in metrics.jsonl"
    for ra, rb in zip(ma, mb):
        assert rb["val_top1"] == ra["val_top1"]
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-9)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(reference_run, small_digits, tmp_path):
    out = tmp_path / "run"
    # die just before optimizer step 12 of 24: last checkpoint is step 9, mid-way through epoch 2
    proc = run_training(small_overrides(small_digits, out), mode="step", k=12)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    ck = load_checkpoint(out / LAST)
    assert (ck["state"]["epoch"], ck["state"]["step"], ck["state"]["batch"]) == (1, 9, 2)
    assert [r["epoch"] for r in read_metrics(out)] == [1]
    with open(out / "metrics.jsonl", "ab") as f:  # as if the disk filled up mid-write of epoch 2's line
        f.write(b'{"epoch": 2, "step": 18, "train_lo')

    proc = run_training(small_overrides(small_digits, out, "DataLoader.Train.num_workers=2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "resumed from" in log and "dropping its torn last line" in log
    _assert_same_weights(reference_run, out)
    _assert_same_metrics(reference_run, out)


def test_sigkill_during_checkpoint_write_keeps_previous_checkpoint(reference_run, small_digits, tmp_path):
    out = tmp_path / "run"
    # die inside the 3rd write of last.pt (end of epoch 1), with the temp file half-written
    proc = run_training(small_overrides(small_digits, out), mode="write", k=3)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    torn = list(out.glob(".last.pt.tmp-*"))
    assert torn, "the kill should have left a half-written temporary file"
    with pytest.raises(Exception):  # noqa: B017 - the torn file really is unreadable
        torch.load(torn[0], weights_only=True)
    ck = load_checkpoint(out / LAST)  # the previous complete checkpoint (step 6) is intact
    assert ck["state"]["step"] == 6

    proc = run_training(small_overrides(small_digits, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(out.glob(".last.pt.tmp-*")), "stale temporaries are cleaned up"
    _assert_same_weights(reference_run, out)
    _assert_same_metrics(reference_run, out)


def test_finished_run_is_not_retrained(reference_run, small_digits):
    before = (reference_run / "last.safetensors").read_bytes()
    proc = run_training(small_overrides(small_digits, reference_run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (reference_run / "last.safetensors").read_bytes() == before
    assert len(read_metrics(reference_run)) == 3
