"""Helpers shared by tests."""

import math

import torch


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded random weights *and* BN statistics, scaled so deep models stay input-dependent.

    Default BN statistics (mean 0, var 1) would let a converter that drops them pass; naive
    N(0, 0.1) weights make logits nearly constant across inputs, so comparisons prove nothing.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def assert_logits_close(ours: torch.Tensor, ref: torch.Tensor, atol: float) -> None:
    """Logit parity that cannot pass by accident.

    Random-weight logits are dominated by an input-independent part, so besides the raw values we
    compare them after removing each sample's mean over classes, and the deviation of each sample
    from the batch mean — and require that deviation to be far above ``atol``, so that a model
    ignoring its input (or a wrong layer) fails.
    """
    ours, ref = ours.double(), ref.double()
    assert ours.shape == ref.shape, f"shapes {tuple(ours.shape)} vs {tuple(ref.shape)}"
    diff = (ours - ref).abs().max().item()
    assert diff <= atol, f"max abs logit difference {diff:.3g} > {atol}"
    per_sample = lambda t: t - t.mean(-1, keepdim=True)  # noqa: E731
    diff = (per_sample(ours) - per_sample(ref)).abs().max().item()
    assert diff <= atol, f"max abs difference after removing per-sample means {diff:.3g} > {atol}"
    across = lambda t: t - t.mean(0, keepdim=True)  # noqa: E731
    signal = across(ref).abs().max().item()
    assert signal >= 30 * atol, f"logits vary across inputs by only {signal:.3g}: the comparison proves nothing"
    diff = (across(ours) - across(ref)).abs().max().item()
    assert diff <= atol, f"input-dependent part differs by {diff:.3g} > {atol}"
