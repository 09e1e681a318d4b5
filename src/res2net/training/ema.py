"""Exponential moving average of a model's weights (and BN statistics).

``ema = decay * ema + (1 - decay) * weights`` after every ``every_steps`` optimizer steps, over every
floating-point parameter *and* buffer (so the EMA model's BN running statistics follow its weights);
integer buffers (``num_batches_tracked``) are copied. During the first updates the decay is capped at
``(1 + n) / (10 + n)`` (timm / TF's warm-up), so an EMA started from random weights is useful early.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_state = self.module.state_dict()
        floats_ema, floats_new = [], []
        for k, v in model.state_dict().items():
            e = ema_state[k]
            if e.dtype.is_floating_point:
                floats_ema.append(e)
                floats_new.append(v.detach().to(e.dtype))
            else:
                e.copy_(v)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_new, 1.0 - d)
        self.num_updates += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
