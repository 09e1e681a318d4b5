"""``res2net stats``: the seed's metrics table, recomputed from the models themselves.

Conventions (stated because the published tables mix them):

* **Params** are trainable parameters only (BN running statistics excluded) — the seed's
  convention. PaddleClas's newer ``model_list.md`` also counts BN running mean/var.
* **FLOPs** are 2 x MACs of convolutions and the classifier at 224x224, counted by PyTorch's
  maintained ``torch.utils.flop_counter`` on the meta device (no memory, no compute);
  **GMACs** are half of that. BN/ReLU/pooling are not counted.
* The seed page's rows for Res2Net50_vd_26w_4s and Res2Net50_14w_8s are swapped: a vd model
  cannot have fewer parameters than its non-vd twin (its deep stem adds 19,104 weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from res2net.factory import create_model
from res2net.models.zoo import get_card

SEED_MODELS = (
    "Res2Net50_26w_4s",
    "Res2Net50_vd_26w_4s",
    "Res2Net50_vd_26w_4s_ssld",
    "Res2Net50_14w_8s",
    "Res2Net101_vd_26w_4s",
    "Res2Net101_vd_26w_4s_ssld",
    "Res2Net200_vd_26w_4s",
    "Res2Net200_vd_26w_4s_ssld",
)

SWAP_NOTE = (
    "Note: the seed page lists 8.37 GFLOPs / 25.06 M for Res2Net50_vd_26w_4s and 9.01 / 25.72 for "
    "Res2Net50_14w_8s; those two rows are swapped (measured above). Params are trainable only; "
    "FLOPs = 2 x MACs of conv/linear layers at 224x224 (torch.utils.flop_counter)."
)


@dataclass
class ModelStats:
    name: str
    params: int
    flops_g: float
    gmacs: float
    top1: float | None
    top5: float | None
    seed_flops_g: float | None
    seed_params_m: float | None


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: torch.nn.Module, image_size: int = 224) -> int:
    """2 x MACs of one image through ``model`` (which may live on the meta device)."""
    device = next(model.parameters()).device
    x = torch.empty(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops()


def model_stats(name: str, image_size: int = 224) -> ModelStats:
    card = get_card(name)
    with torch.device("meta"):
        model = create_model(name)
    flops = count_flops(model, image_size)
    return ModelStats(
        name=card.name,
        params=count_params(model),
        flops_g=round(flops / 1e9, 3),
        gmacs=round(flops / 2e9, 3),
        top1=card.top1,
        top5=card.top5,
        seed_flops_g=card.seed_flops_g,
        seed_params_m=card.seed_params_m,
    )


def markdown_table(rows: list[ModelStats]) -> str:
    def fmt(v, spec):
        return "" if v is None else format(v, spec)

    lines = [
        "| Model | Top-1 | Top-5 | FLOPs (G) | GMACs | Params (M) | Params (exact) | seed FLOPs | seed Params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {fmt(r.top1, '.3f')} | {fmt(r.top5, '.3f')} | {r.flops_g:.2f} | {r.gmacs:.2f} | "
            f"{r.params / 1e6:.2f} | {r.params:,} | {fmt(r.seed_flops_g, '.2f')} | {fmt(r.seed_params_m, '.2f')} |"
        )
    return "\n".join(lines)
