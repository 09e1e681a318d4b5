"""The optimizer and the learning-rate schedule of PaddleClas's recipe (a function of the step, so a
resumed run gets the very same rates)."""

from __future__ import annotations

import math

import torch
from torch import nn


def lr_schedule(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
    kind: str = "cosine",
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): PaddleClas's ``Cosine`` (+ ``LinearWarmup``).

    Linear warm-up from ``warmup_start_lr`` over ``warmup_steps``, then
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2`` with ``t`` and ``T`` counted in
    iterations after the warm-up (decay per iteration, not per epoch). A pure function of the step,
    so a resumed run continues the schedule exactly.
    """
    if step < warmup_steps:
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / warmup_steps
    if kind == "constant":
        return base_lr
    t, span = step - warmup_steps, max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * min(t, span) / span))


def build_optimizer(model: nn.Module, opt_cfg: dict, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """SGD with momentum (PaddleClas ``Momentum`` + coupled L2) or AdamW; optional no-decay group for norms/biases."""
    wd = float(opt_cfg["weight_decay"])
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if opt_cfg["norm_weight_decay"] is None:
        groups = [{"params": [p for _, p in params], "weight_decay": wd}]
    else:
        norm = [p for n, p in params if p.ndim <= 1]
        other = [p for n, p in params if p.ndim > 1]
        groups = [
            {"params": other, "weight_decay": wd},
            {"params": norm, "weight_decay": float(opt_cfg["norm_weight_decay"])},
        ]
    fused = opt_cfg["fused"]
    kw = {"fused": True} if fused else ({"foreach": True} if fused is None else {"foreach": False})
    name = opt_cfg["name"]
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=float(opt_cfg["momentum"]), nesterov=name == "nesterov", **kw)
    return torch.optim.AdamW(groups, lr=lr, **kw)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
