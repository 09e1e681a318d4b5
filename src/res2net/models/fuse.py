"""BatchNorm folding for inference, beside the model whose layout it knows.

An eval-mode BatchNorm is an affine map, so it can be merged into the convolution before it: a third
fewer kernels (every conv in a Res2Net is followed by a BN) and oneDNN's fused conv+bias(+ReLU) path.
Which attributes pair up is a fact about :mod:`res2net.models.res2net` (``conv1/bn1``, ``conv3/bn3``,
the ``convs[i]/bns[i]`` lists of a Res2Net block, ``(Conv2d, BatchNorm2d)`` in ``nn.Sequential`` stems
and shortcuts), so it lives here rather than in an engine.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (conv attribute, BN attribute) pairs of the blocks in res2net.models.res2net
CONV_BN_PAIRS = (("conv1", "bn1"), ("conv3", "bn3"))


def _fold_pair(owner: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(owner, conv_name, None), getattr(owner, bn_name, None)
    conv_owner, conv_attr = owner, conv_name
    if isinstance(conv, nn.Sequential) and len(conv) and isinstance(conv[-1], nn.Conv2d):
        conv_owner, conv_attr, conv = conv, str(len(conv) - 1), conv[-1]  # deep stem: (conv1[-1], bn1)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(conv_owner, conv_attr, fuse_conv_bn_eval(conv, bn))
        setattr(owner, bn_name, nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d into that conv, in place.

    Handles adjacent ``(Conv2d, BatchNorm2d)`` in any ``nn.Sequential`` (stems, shortcuts), the
    ``conv1/bn1``, ``conv3/bn3`` attribute pairs and the ``convs[i]/bns[i]`` lists of Res2Net blocks.
    Returns ``model``. Numerically equal to the unfolded model up to float rounding (~1e-6 relative).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model (BN running statistics are folded)")
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        for conv_name, bn_name in CONV_BN_PAIRS:
            _fold_pair(module, conv_name, bn_name)
        convs, bns = getattr(module, "convs", None), getattr(module, "bns", None)
        if isinstance(convs, nn.ModuleList) and isinstance(bns, nn.ModuleList) and len(convs) == len(bns):
            for i, (conv, bn) in enumerate(zip(convs, bns)):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    convs[i] = fuse_conv_bn_eval(conv, bn)
                    bns[i] = nn.Identity()
    return model
