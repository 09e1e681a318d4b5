"""SSLD-style distillation: the losses are right, and a student learns the teacher from unlabeled images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from res2net.training.config import load_config
from res2net.training.distill import DistillationLoss, js_divergence, kl_divergence
from res2net.training.train import train
from tests.training.conftest import small_overrides


def _reference_js(s: torch.Tensor, t: torch.Tensor) -> float:
    p, q = torch.softmax(s.double(), 1), torch.softmax(t.double(), 1)
    m = (p + q) / 2
    return float((0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)).mean())


def test_js_divergence_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g) * 3, torch.randn(8, 10, generator=g) * 3
    assert js_divergence(s, t).item() == pytest.approx(_reference_js(s, t), rel=1e-5)
    assert js_divergence(s, t).item() == pytest.approx(js_divergence(t, s).item(), rel=1e-6)  # symmetric
    assert js_divergence(s, s).item() == pytest.approx(0.0, abs=1e-6)
    far = js_divergence(torch.tensor([[100.0, -100.0]]), torch.tensor([[-100.0, 100.0]])).item()
    assert far == pytest.approx(math.log(2), rel=1e-5)  # bounded by log 2, finite when softmax underflows


def test_kl_with_temperature_matches_torch():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    T = 4.0
    ref = torch.nn.functional.kl_div(
        torch.log_softmax(s / T, 1), torch.log_softmax(t / T, 1), reduction="batchmean", log_target=True
    ) * (T * T)
    assert kl_divergence(s, t, T).item() == pytest.approx(ref.item(), rel=1e-5)


def test_label_loss_is_mixed_in_on_labeled_rows_only():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    targets = torch.zeros(4, 10)
    targets[0, 3] = targets[1, 5] = 1.0  # rows 2, 3 are unlabeled
    loss = DistillationLoss("js", distill_weight=0.5, label_weight=2.0)(s, t, targets)
    ce = torch.nn.functional.cross_entropy(s[:2], torch.tensor([3, 5]))
    assert loss.item() == pytest.approx(0.5 * js_divergence(s, t).item() + 2.0 * ce.item(), rel=1e-5)


def _agreement(student_weights, teacher, x: np.ndarray) -> float:
    import res2net

    student = res2net.create_model("res2net_tiny", pretrained=student_weights, num_classes=10).eval()
    with torch.no_grad():
        xs = torch.from_numpy(x)
        return float((student(xs).argmax(1) == teacher(xs).argmax(1)).float().mean())


def test_student_learns_the_teacher_from_unlabeled_images(digits_model, digits_tree, small_digits, tmp_path):
    """The student sees *no* label (label_weight 0): only the teacher's softmax on the digits train images."""
    from safetensors.torch import save_file

    import res2net

    teacher = digits_model.load()
    x_val, _ = digits_model.val_arrays()
    torch.manual_seed(0)
    init = tmp_path / "student_init.safetensors"
    save_file(res2net.create_model("res2net_tiny", num_classes=10).state_dict(), str(init), {"origin": "paddle"})
    before = _agreement(init, teacher, x_val)

    out = tmp_path / "distill"
    cfg = load_config(
        "digits_res2net_tiny",
        small_overrides(
            small_digits,
            out,
            "Distillation.enabled=true",
            "Distillation.teacher=res2net_tiny",
            f"Distillation.teacher_pretrained={digits_model.weights}",
            "Distillation.loss=js",
            "Distillation.label_weight=0.0",
            f"Distillation.unlabeled_root={digits_tree.train_dir}",
            "Global.epochs=2",
            "Global.save_interval_steps=0",
            "Optimizer.accum_steps=1",
            "DataLoader.Train.batch_size=64",
            "DataLoader.Train.mixup_alpha=0.0",
            "DataLoader.Train.scale=[0.85,1.0]",
            "Optimizer.lr=0.2",
            "Optimizer.warmup_epochs=0.5",
            "Arch.drop_path_rate=0.0",
            "EMA.enabled=false",
        ),
    )
    train(cfg)
    after = _agreement(out / "last.safetensors", teacher, x_val)
    assert after >= 0.8 and after > before + 0.5, f"agreement with the teacher: {before:.3f} -> {after:.3f}"
