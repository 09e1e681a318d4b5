"""Res2Net: blocks -> stages -> model (the shared trunk and the headless backbone: ``models/backbone.py``).

One ``Bottle2neck`` serves every published flavour of the architecture. The flavours differ in
two *forward-only* details, so they are settings of the config rather than separate classes
(compare PaddleClas's ``ppcls/arch/backbone/model_zoo/res2net_vd.py`` with timm's
``timm/models/res2net.py``):

``stage_rule``
    Which blocks are "stage" blocks (no hierarchical adds; the last split is average-pooled).
    ``"stride"`` (PaddleClas): only blocks whose stride is 2. ``"downsample"`` (timm and the
    authors' code): the first block of every stage, including ``layer1.0`` whose stride is 1.
``pool_count_include_pad``
    Whether the last-split ``AvgPool2d(3, stride, 1)`` counts the zero padding. PaddleClas uses
    ``exclusive=True`` (``False`` here); timm/authors use PyTorch's default (``True``).

Parameter names follow timm / the authors' checkpoints (``conv1``, ``bn1``, ``convs.k``,
``bns.k``, ``conv3``, ``bn3``, ``downsample.*``, ``fc``), so their files load unchanged and a
PaddleClas ``.pdparams`` needs only a deterministic rename (see ``res2net.weights.paddle``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from res2net.models.backbone import Res2NetFeatures, Trunk, freeze_batch_norm
from res2net.models.features import take_indices

StageRule = Literal["stride", "downsample"]


@dataclass(frozen=True)
class Res2NetConfig:
    """Everything that determines a Res2Net graph. Frozen so registry entries cannot drift."""

    layers: tuple[int, int, int, int]
    base_width: int = 26
    scale: int = 4
    cardinality: int = 1
    deep_stem: bool = False  # vd/d/v1b: three 3x3 convs (32, 32, 64) instead of one 7x7
    stem_width: int = 32
    avg_down: bool = False  # vd/d/v1b: 2x2 avg-pool before a stride-1 1x1 conv in the shortcut
    stage_rule: StageRule = "stride"
    pool_count_include_pad: bool = False
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.0  # dropout before the classifier (PaddleClas has none)
    drop_path_rate: float = 0.0  # stochastic depth, linearly increasing over blocks
    zero_init_last: bool = True  # zero the last BN gamma of each block when training from scratch
    paddle_family: str | None = None  # PaddleClas constructor family ("vd"/"plain"), for key names

    def __post_init__(self) -> None:
        if self.stage_rule not in ("stride", "downsample"):
            raise ValueError(f"stage_rule must be 'stride' or 'downsample', got {self.stage_rule!r}")
        if self.scale < 1 or self.base_width < 1 or self.cardinality < 1:
            raise ValueError(
                f"scale, base_width and cardinality must be >= 1, got "
                f"{self.scale}, {self.base_width}, {self.cardinality}"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    def with_overrides(self, **overrides) -> Res2NetConfig:
        """A copy with some fields changed; unknown names raise ``TypeError`` listing valid ones."""
        valid = set(self.__dataclass_fields__)
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(f"unknown model option(s) {unknown}; valid options: {sorted(valid)}")
        if "layers" in overrides:
            overrides["layers"] = tuple(overrides["layers"])
        return replace(self, **overrides)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch per sample with probability ``p``."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class Bottle2neck(nn.Module):
    """The Res2Net bottleneck: 1x1 -> ``scale`` channel splits with hierarchical 3x3s -> 1x1.

    ``is_stage`` selects the "stage" form (each split convolved on its own, last split pooled);
    otherwise split ``k`` receives the previous split's output added to its input.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        *,
        base_width: int,
        scale: int,
        cardinality: int,
        is_stage: bool,
        pool_count_include_pad: bool,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        width = int(math.floor(planes * (base_width / 64.0))) * cardinality
        outplanes = planes * self.expansion
        self.width = width  # a Python int: torch.split sizes must not be tensors (ONNX export)
        self.scale = scale
        self.is_stage = is_stage
        n_convs = max(1, scale - 1)

        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False) for _ in range(n_convs)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(n_convs))
        # Only stage blocks pool the pass-through split; with stride 1 this is a 3x3 blur (timm).
        self.pool = (
            nn.AvgPool2d(3, stride, 1, count_include_pad=pool_count_include_pad) if is_stage and scale > 1 else None
        )
        self.conv3 = nn.Conv2d(width * scale, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, 1)
        outs: list[torch.Tensor] = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i > 0:
                sp = splits[i] if self.is_stage else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]) if self.pool is not None else splits[-1])
        out = torch.cat(outs, 1)
        out = self.bn3(self.conv3(out))
        return self.relu(self.drop_path(out) + shortcut)


def _downsample(inplanes: int, outplanes: int, stride: int, avg_down: bool) -> nn.Sequential:
    """Projection shortcut. ``avg_down`` (ResNet-D) pools first so the 1x1 conv sees every pixel.

    For ``avg_down`` the index-0 slot is always present (an ``Identity`` at stride 1) so that the
    conv/BN keys are ``downsample.1``/``downsample.2`` in every stage, as in timm's checkpoints.
    """
    conv_bn = [nn.Conv2d(inplanes, outplanes, 1, 1 if avg_down else stride, bias=False), nn.BatchNorm2d(outplanes)]
    if not avg_down:
        return nn.Sequential(*conv_bn)
    pool: nn.Module = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, *conv_bn)


class Res2Net(Trunk):
    """Res2Net / Res2Net-vd (ResNet-D tweaks) / Res2NeXt classifier, with timm's model contract.

    ``forward_features`` returns the final 2048-channel map, ``forward_head`` pools and classifies.
    The methods timm's tools call (``forward_intermediates``, ``prune_intermediate_layers``,
    ``set_grad_checkpointing``, ``group_matcher``, ``no_weight_decay``, ``get_classifier``,
    ``reset_classifier``) follow timm's ``ResNet`` signatures and semantics, so timm's
    ``train.py``/``validate.py``/``benchmark.py`` and optimizer factory treat this model as one of
    theirs. Feature index 0 is the stem before the max-pool (stride 2), 1..4 the stages
    (strides 4, 8, 16, 32), as in timm's ResNet.
    """

    def __init__(self, cfg: Res2NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_features = self.head_hidden_size = 512 * Bottle2neck.expansion
        self.grad_checkpointing = False
        # Set by create_model: a timm-style dict (what timm's data config reads) and our card.
        self.pretrained_cfg: dict[str, Any] = {}
        self.card = None

        if cfg.deep_stem:
            w = cfg.stem_width
            self.conv1 = nn.Sequential(
                nn.Conv2d(cfg.in_chans, w, 3, 2, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, 1, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False),
            )
            stem_out = 2 * w
        else:
            self.conv1 = nn.Conv2d(cfg.in_chans, 64, 7, 2, 3, bias=False)
            stem_out = 64
        self.bn1 = nn.BatchNorm2d(stem_out)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        total_blocks = sum(cfg.layers)
        block_idx = 0
        inplanes = stem_out
        # A list of dicts on the classifier, as timm's models keep it; features_only wraps it in FeatureInfo.
        self.feature_info: list[dict] = [{"num_chs": stem_out, "reduction": 2, "module": "act1"}]
        for stage, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), cfg.layers)):
            stride = 1 if stage == 0 else 2
            outplanes = planes * Bottle2neck.expansion
            blocks = []
            for i in range(n_blocks):
                s = stride if i == 0 else 1
                downsample = _downsample(inplanes, outplanes, s, cfg.avg_down) if i == 0 else None
                is_stage = s > 1 if cfg.stage_rule == "stride" else downsample is not None
                dpr = cfg.drop_path_rate * block_idx / max(1, total_blocks - 1)
                blocks.append(
                    Bottle2neck(
                        inplanes,
                        planes,
                        s,
                        downsample,
                        base_width=cfg.base_width,
                        scale=cfg.scale,
                        cardinality=cfg.cardinality,
                        is_stage=is_stage,
                        pool_count_include_pad=cfg.pool_count_include_pad,
                        drop_path_rate=dpr,
                    )
                )
                inplanes = outplanes
                block_idx += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": outplanes, "reduction": 4 * 2**stage, "module": f"layer{stage + 1}"})

        self.global_pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.init_weights()

    # ------------------------------------------------------------------ init / head management
    def init_weights(self) -> None:
        """Kaiming-normal convs, unit BN, PaddleClas's uniform(±1/sqrt(fan_in)) classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_fc()
        if self.cfg.zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottle2neck):
                    m.zero_init_last()

    def _init_fc(self) -> None:
        if isinstance(self.fc, nn.Linear):
            bound = 1.0 / math.sqrt(self.fc.in_features)
            nn.init.uniform_(self.fc.weight, -bound, bound)
            nn.init.zeros_(self.fc.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head (e.g. for fine-tuning on a new label set); 0 removes it.

        ``global_pool``: ``None`` keeps the current pooling, ``"avg"``/``"fast"`` (the same
        operation here) average-pool, ``""`` returns the unpooled map (timm's convention; only
        with ``num_classes=0``, since the classifier needs pooled features).
        """
        if global_pool is not None:
            if global_pool not in ("avg", "fast", ""):
                raise ValueError(f"global_pool must be 'avg', 'fast' or '', got {global_pool!r}")
            if global_pool == "" and num_classes > 0:
                raise ValueError("global_pool='' returns feature maps; it needs num_classes=0")
            self.global_pool = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        self.num_classes = num_classes
        self.cfg = replace(self.cfg, num_classes=num_classes)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_fc()

    # ------------------------------------------------------------------ timm training hooks
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups for layer-wise LR decay (timm's ``param_groups_layer_decay``): stem, then blocks."""
        return {"stem": r"^conv1|^bn1", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay: none by name. Like timm's ResNet, we rely on the optimizer
        factory's rule of not decaying 1-D parameters (BN scales/shifts, biases)."""
        return set()

    # ------------------------------------------------------------------ forward
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in self.stages():
            x = self._run_stage(stage, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if isinstance(self.global_pool, nn.AdaptiveAvgPool2d):
            x = x.flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and head) that the taps ``indices`` do not need; returns the kept indices.

        Removed stages become empty ``nn.Sequential``s, so ``forward_intermediates`` still runs.
        """
        take, max_index = take_indices(len(self.feature_info), indices)
        for i in range(max_index + 1, 5):
            setattr(self, f"layer{i}", nn.Sequential())
        if max_index == 0:
            self.maxpool = nn.Identity()
        prune_end = max_index < 4
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


__all__ = ["Bottle2neck", "DropPath", "Res2Net", "Res2NetConfig", "Res2NetFeatures", "drop_path", "freeze_batch_norm"]
