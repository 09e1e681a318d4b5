"""PaddleClas parameter names for a Res2Net graph, derived from the graph itself.

PaddleClas has written weights under two key styles (shared/reference/paddleclas.md §2):

* *structured* names, from ``Layer.state_dict()`` (``bb_0_0.conv0._conv.weight``, ``out.weight``);
* *parameter* names, the ``ParamAttr`` names of the static-graph era, also used inside inference
  models (``res2a_branch2a_weights``, ``bn2a_branch2a_scale``, ``bnv1_1_mean``, ``fc_weights``).

Both are generated here from a :class:`Res2NetConfig`, so the mapping cannot drift from the model.
Paddle's ``Linear`` stores its weight as ``[in, out]``; ours is ``[out, in]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from res2net.models.res2net import Res2NetConfig

_BN_STRUCT = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}
_BN_PARAM = {"weight": "scale", "bias": "offset", "running_mean": "mean", "running_var": "variance"}


@dataclass(frozen=True)
class KeyMap:
    """One tensor: our key, its two PaddleClas names, and whether it is stored transposed."""

    ours: str
    structured: str
    param_name: str
    transpose: bool = False
    shape: tuple[int, ...] = ()  # the shape in our model (PaddleClas stores transposed ones as shape[::-1])


def _depth(cfg: Res2NetConfig) -> int:
    return 3 * sum(cfg.layers) + 2


def _block_prefix(cfg: Res2NetConfig, stage: int, i: int) -> str:
    """PaddleClas's ``res{stage+2}{letter}`` name, with ``res4a``/``res4b{i}`` for deep stage 3."""
    deep = (101, 152, 200) if cfg.paddle_family != "plain" else (101, 152)
    if stage == 2 and _depth(cfg) in deep:
        return "res4a" if i == 0 else f"res4b{i}"
    return f"res{stage + 2}{chr(97 + i)}"


def _bn_param_prefix(conv_name: str) -> str:
    return "bn_" + conv_name if conv_name == "conv1" else "bn" + conv_name[3:]


def _conv_bn(
    ours_conv: str, ours_bn: str, structured: str, conv_name: str, conv_shape: tuple[int, int, int, int]
) -> list[KeyMap]:
    """A conv (``conv_shape`` = out, in/groups, k, k) and its BN, whose tensors have ``out`` entries."""
    maps = [KeyMap(f"{ours_conv}.weight", f"{structured}._conv.weight", f"{conv_name}_weights", shape=conv_shape)]
    bn = _bn_param_prefix(conv_name)
    for ours_suffix in ("weight", "bias", "running_mean", "running_var"):
        maps.append(
            KeyMap(
                f"{ours_bn}.{ours_suffix}",
                f"{structured}._batch_norm.{_BN_STRUCT[ours_suffix]}",
                f"{bn}_{_BN_PARAM[ours_suffix]}",
                shape=conv_shape[:1],
            )
        )
    return maps


def paddle_key_maps(cfg: Res2NetConfig) -> list[KeyMap]:
    """Every tensor of the model (BN ``num_batches_tracked`` excluded) in PaddleClas's key order.

    The shapes follow :class:`res2net.models.res2net.Res2Net`'s construction (a test checks them
    against built models), so weights can be matched to a config without building a model.
    """
    maps: list[KeyMap] = []
    c = cfg.in_chans
    if cfg.deep_stem:
        w = cfg.stem_width
        maps += _conv_bn("conv1.0", "conv1.1", "conv1_1", "conv1_1", (w, c, 3, 3))
        maps += _conv_bn("conv1.3", "conv1.4", "conv1_2", "conv1_2", (w, w, 3, 3))
        maps += _conv_bn("conv1.6", "bn1", "conv1_3", "conv1_3", (2 * w, w, 3, 3))
        inplanes = 2 * w
    else:
        maps += _conv_bn("conv1", "bn1", "conv1", "conv1", (64, c, 7, 7))
        inplanes = 64
    n_splits = max(1, cfg.scale - 1)
    for stage, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), cfg.layers)):
        width = int(math.floor(planes * (cfg.base_width / 64.0))) * cfg.cardinality
        out = planes * 4  # Bottle2neck.expansion
        for i in range(n_blocks):
            ours = f"layer{stage + 1}.{i}"
            bb = f"bb_{stage}_{i}"
            prefix = _block_prefix(cfg, stage, i)
            maps += _conv_bn(
                f"{ours}.conv1", f"{ours}.bn1", f"{bb}.conv0", f"{prefix}_branch2a", (width * cfg.scale, inplanes, 1, 1)
            )
            for k in range(n_splits):
                name = f"{prefix}_branch2b_{k + 1}"
                shape = (width, width // cfg.cardinality, 3, 3)
                maps += _conv_bn(f"{ours}.convs.{k}", f"{ours}.bns.{k}", f"{bb}.{name}", name, shape)
            maps += _conv_bn(
                f"{ours}.conv3", f"{ours}.bn3", f"{bb}.conv2", f"{prefix}_branch2c", (out, width * cfg.scale, 1, 1)
            )
            if i == 0:
                d = 1 if cfg.avg_down else 0
                maps += _conv_bn(
                    f"{ours}.downsample.{d}",
                    f"{ours}.downsample.{d + 1}",
                    f"{bb}.short",
                    f"{prefix}_branch1",
                    (out, inplanes, 1, 1),
                )
            inplanes = out
    maps.append(KeyMap("fc.weight", "out.weight", "fc_weights", transpose=True, shape=(cfg.num_classes, inplanes)))
    maps.append(KeyMap("fc.bias", "out.bias", "fc_offset", shape=(cfg.num_classes,)))
    return maps


@functools.lru_cache(maxsize=64)
def state_shapes(cfg: Res2NetConfig) -> Mapping[str, tuple[int, ...]]:
    """Our state-dict key -> shape for ``Res2Net(cfg)`` (``num_batches_tracked`` excluded), without building it.

    Guessing which model a file belongs to compares it with every registered config; building
    19 models (even on the meta device) made a bad file take seconds to be refused.
    """
    shapes = {m.ours: m.shape for m in paddle_key_maps(cfg) if cfg.num_classes > 0 or not m.ours.startswith("fc.")}
    return MappingProxyType(shapes)  # cached: read-only


def detect_key_style(keys: set[str]) -> str | None:
    """``"structured"``, ``"param_name"`` or ``None`` if the keys look like neither."""
    if any(k.endswith(("._conv.weight", "._batch_norm._mean")) for k in keys):
        return "structured"
    if any(k.endswith(("_weights", "_variance")) for k in keys):
        return "param_name"
    return None


@functools.lru_cache(maxsize=64)
def file_key_shapes(cfg: Res2NetConfig) -> Mapping[str, tuple[int, ...]]:
    """Key -> shape a file for ``Res2Net(cfg)`` may hold, in all three namings (ours, structured, parameter)."""
    shapes = dict(state_shapes(cfg))
    for m in paddle_key_maps(cfg):
        if m.ours in shapes:
            shapes[m.structured] = shapes[m.param_name] = m.shape[::-1] if m.transpose else m.shape
    return MappingProxyType(shapes)
