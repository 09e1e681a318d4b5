"""The stem-and-stages trunk with timm's feature contract, and the headless backbone built on it.

:class:`Trunk` holds what the classifier (:class:`res2net.models.res2net.Res2Net`) and the
features-only backbone share: stage iteration, gradient checkpointing and timm's
``forward_intermediates``. :class:`Res2NetFeatures` and :func:`freeze_batch_norm` serve
detection/segmentation (timm's ``features_only``, torchvision's FPN wrappers).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from res2net.models.features import FeatureInfo, take_indices


class Trunk(nn.Module):
    """The stem + four stages shared by the classifier and the features-only backbone.

    Subclasses own ``conv1``, ``bn1``, ``act1``, ``maxpool``, ``layer1..4`` and ``feature_info``.
    """

    grad_checkpointing: bool

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward: less memory for larger batches, ~30% more compute."""
        self.grad_checkpointing = enable

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            for block in stage:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return stage(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's contract: ``indices`` None = all five taps, an int = the last n, a sequence = those
        (negative from the end); returns ``(final_features, taps)`` or only ``taps``.

        ``norm`` is accepted for signature compatibility: a ResNet has no final norm to apply.
        ``stop_early`` skips the stages after the last requested tap.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = take_indices(len(self.feature_info), indices)
        feats: list[torch.Tensor] = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take:
            feats.append(x)
        x = self.maxpool(x)
        stages = self.stages()[:max_index] if stop_early else self.stages()
        for i, stage in enumerate(stages, start=1):
            x = self._run_stage(stage, x)
            if i in take:
                feats.append(x)
        return feats if intermediates_only else (x, feats)


class Res2NetFeatures(Trunk):
    """A headless backbone returning the feature maps selected by ``out_indices``.

        Index 0 is the stem before the max-pool (stride 2), 1..4 are the stages (strides 4, 8, 16,
        32), as in timm. ``feature_info`` is a timm-style :class:`FeatureInfo` (``channels()``,
        ``reduction()``, ``module_name()``). Output is a list (``output="list"``, timm's default) or
        a dict keyed by module name (``"dict"``, timm's ``feature_cls="dict"``; what torchvision's
        ``FeaturePyramidNetwork`` consumes). ``model`` is the :class:`~res2net.models.res2net.Res2Net`
    classifier whose stem and stages it takes over; parameter names stay that model's, so
        classification checkpoints load with ``strict=False`` ignoring only ``fc.*``; and the modules
        are direct children in forward order, so torchvision's ``BackboneWithFPN`` can wrap it.
    """

    def __init__(self, model: Trunk, out_indices: tuple[int, ...] = (1, 2, 3, 4), output: str = "list") -> None:
        super().__init__()
        if output not in ("list", "dict"):
            raise ValueError(f"output must be 'list' or 'dict', got {output!r}")
        bad = [i for i in out_indices if not -5 <= i <= 4]
        if bad or not out_indices:
            raise ValueError(f"out_indices must be a non-empty sequence in 0..4 (or -5..-1), got {list(out_indices)}")
        self.out_indices = tuple(i % 5 for i in out_indices)
        self.output = output
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)
        self.grad_checkpointing = False
        for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(model, name))
        self.cfg = model.cfg
        self.pretrained_cfg = model.pretrained_cfg
        self.card = model.card

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | dict[str, torch.Tensor]:
        feats = self.forward_intermediates(x, list(self.out_indices), stop_early=True, intermediates_only=True)
        if self.output == "dict":
            return dict(zip(self.feature_info.module_name(), feats))
        return feats


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` with torchvision's ``FrozenBatchNorm2d`` (fixed statistics and affine).

    Detection and segmentation fine-tuning uses batches of one or two images, whose statistics
    would wreck the pretrained ones; torchvision's own ResNet backbones freeze BN for that reason.
    Load weights *before* freezing. Returns ``module`` (changed in place, or the replacement if
    ``module`` itself is a BatchNorm).
    """
    from torchvision.ops import FrozenBatchNorm2d

    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            frozen.weight.copy_(module.weight)
            frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module


__all__ = ["Res2NetFeatures", "Trunk", "freeze_batch_norm"]
