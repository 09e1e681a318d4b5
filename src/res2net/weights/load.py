"""Turn a weights file of any origin into a verified state dict for one of our models.

Every tensor must find its place: the key set and each shape are checked strictly, and a failure
names the missing, unexpected and mis-shaped keys — plus the registered model the file most
likely belongs to. The only tolerated difference is the classifier, when the caller asked for a
different ``num_classes`` (fine-tuning): the file's head is then dropped and re-initialised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from res2net.models.res2net import Res2Net, Res2NetConfig
from res2net.models.zoo import SEMANTICS, get_card, list_models
from res2net.weights.formats import RawWeights, WeightsError, read_weights
from res2net.weights.paddle import detect_key_style, file_key_shapes, paddle_key_maps, state_shapes

log = logging.getLogger(__name__)

_PREFIXES = (("module.", ""), ("backbone.", ""), ("head.fc.", "fc."), ("model.", ""))


def _strip_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unwrap DDP (``module.``) and mmpretrain (``backbone.``/``head.fc.``) key prefixes."""
    for old, new in _PREFIXES:
        if tensors and all(k.startswith(old) or (old == "backbone." and k.startswith("head.")) for k in tensors):
            tensors = {(new + k[len(old) :]) if k.startswith(old) else k: v for k, v in tensors.items()}
    return tensors


def _from_paddle(raw: RawWeights, cfg: Res2NetConfig) -> dict[str, torch.Tensor]:
    maps = paddle_key_maps(cfg)
    if raw.origin == "paddle_inference":
        # save_combine writes parameters sorted by name and stores no names (see pdiparams.py).
        ordered = sorted(maps, key=lambda m: m.param_name)
        arrays = [raw.tensors[f"@{i}"] for i in range(len(raw.tensors))]
        if len(arrays) != len(ordered):
            raise WeightsError(f"{raw.path}: holds {len(arrays)} tensors, a {_describe(cfg)} needs {len(ordered)}")
        named = {m.param_name: a for m, a in zip(ordered, arrays)}
        style = "param_name"
    else:
        named = raw.tensors
        style = detect_key_style(set(named))
        if style is None:
            sample = ", ".join(sorted(named)[:3])
            raise WeightsError(f"{raw.path}: keys ({sample}, ...) are not PaddleClas Res2Net names")
    out: dict[str, torch.Tensor] = {}
    used = set()
    for m in maps:
        src = m.structured if style == "structured" else m.param_name
        if src in named:
            t = named[src]
            out[m.ours] = t.t() if m.transpose and t.ndim == 2 else t  # a view: copied only into a model
            used.add(src)
    for k in set(named) - used:
        out[f"<paddle>{k}"] = named[k]  # keep leftovers so the strict check reports them
    return out


def _describe(cfg: Res2NetConfig) -> str:
    return f"Res2Net with layers={list(cfg.layers)}, {cfg.base_width}w x {cfg.scale}s"


def _check(tensors: dict[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> tuple[list, list, list]:
    missing = sorted(k for k in expected if k not in tensors)
    unexpected = sorted(k for k in tensors if k not in expected)
    mismatched = sorted(
        (k, tuple(tensors[k].shape), tuple(s)) for k, s in expected.items() if k in tensors and tensors[k].shape != s
    )
    return missing, unexpected, mismatched


def _expected_shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def guess_model(raw: RawWeights) -> str | None:
    """The registered model whose key set and shapes this file matches exactly (ignoring the head size)."""
    family = "paddleclas" if weights_origin(raw) == "paddle" else "timm"
    for card in sorted(map(get_card, list_models()), key=lambda c: c.family != family):
        cfg = card.config
        expected = state_shapes(cfg)  # no model is built: matching all configs takes milliseconds
        try:
            tensors = convert_tensors(raw, cfg)
        except WeightsError:
            continue
        missing, unexpected, mismatched = _check(tensors, expected)
        if not missing and not unexpected and all(k.startswith("fc.") for k, _, _ in mismatched):
            return card.name
    return None


def convert_tensors(raw: RawWeights, cfg: Res2NetConfig) -> dict[str, torch.Tensor]:
    """``raw``'s tensors under our state-dict names for ``cfg`` (unchecked: :func:`load_weights` checks)."""
    if raw.origin in ("paddle", "paddle_inference"):
        return _from_paddle(raw, cfg)
    tensors = _strip_prefixes(dict(raw.tensors))
    if detect_key_style(set(tensors)) == "structured":  # a .pdparams renamed to .pth, or re-saved by torch
        return _from_paddle(RawWeights(tensors, "paddle", raw.path), cfg)
    return {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}


def weights_origin(raw: RawWeights) -> str:
    """Which ecosystem's forward semantics the weights were trained under: ``"paddle"``, ``"timm"``
    or ``"unknown"``.

    Paddle files and PaddleClas key names say "paddle"; our own files record it in their metadata.
    Otherwise it is unknown: timm's, the authors' and any re-saved state dict share the same key
    names and shapes, so the keys cannot tell the two semantics apart.
    """
    if raw.origin.startswith("paddle"):
        return "paddle"
    if raw.metadata.get("origin") in SEMANTICS:
        return raw.metadata["origin"]
    if detect_key_style(set(_strip_prefixes(dict(raw.tensors)))) == "structured":
        return "paddle"
    return "unknown"


def semantics_origin(cfg: Res2NetConfig) -> str:
    """The ecosystem whose forward semantics a config runs (``"unknown"`` for a custom mix)."""
    for origin, semantics in SEMANTICS.items():
        if all(getattr(cfg, k) == v for k, v in semantics.items()):
            return origin
    return "unknown"


def classifier_size(raw: RawWeights, cfg: Res2NetConfig) -> int | None:
    """The number of classes ``raw``'s classifier has under ``cfg`` (``None``: no classifier we recognise)."""
    fc = convert_tensors(raw, cfg).get("fc.weight")
    return int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None


def load_weights(model: Res2Net, source: str | Path | RawWeights, *, strict_head: bool = True) -> str:
    """Load ``source`` (a file, or one already read by :func:`read_weights`) into ``model`` after strict
    key/shape checks; return the weights' origin.

    Passing the :class:`RawWeights` a caller already has (the Predictor reads a file once to learn its
    classifier size) saves reading a large file again. With ``strict_head=False`` a classifier of a
    different size is skipped (the model keeps its freshly initialised head), which is what
    fine-tuning on a new label set needs.
    """
    cfg = model.cfg
    # Arrays the model cannot take are not materialised (read_weights): a wrong file costs no memory.
    raw = source if isinstance(source, RawWeights) else read_weights(source, expected=file_key_shapes(cfg))
    path = raw.path
    tensors = convert_tensors(raw, cfg)
    expected = _expected_shapes(model)
    missing, unexpected, mismatched = _check(tensors, expected)
    head_only = mismatched and all(k.startswith("fc.") for k, _, _ in mismatched)
    if not strict_head and head_only and not missing and not unexpected:
        log.info("%s: classifier shape %s differs from the model's; keeping a new head", path, mismatched[0][1])
        tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
        missing, mismatched = [k for k in expected if k.startswith("fc.")], []
        allowed_missing = set(missing)
    else:
        allowed_missing = set()
        if cfg.num_classes == 0:  # headless backbone: ignore the file's classifier
            unexpected = [k for k in unexpected if not k.startswith("fc.")]
            tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    if (set(missing) - allowed_missing) or unexpected or mismatched:
        raise WeightsError(_mismatch_message(raw, cfg, missing, unexpected, mismatched))

    current = model.state_dict()
    model.load_state_dict({k: v.to(current[k].dtype) for k, v in tensors.items()}, strict=False)
    for name, buf in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            buf.zero_()

    origin = weights_origin(raw)
    if origin in SEMANTICS and semantics_origin(cfg) != origin:
        rule, count_pad = SEMANTICS[origin]["stage_rule"], SEMANTICS[origin]["pool_count_include_pad"]
        log.warning(
            "%s: %s weights loaded into a model with stage_rule=%r, pool_count_include_pad=%s; the source ran "
            "them with stage_rule=%r, pool_count_include_pad=%s, so outputs will differ from the source's. Use "
            "the matching model name (PaddleClas names for PaddleClas weights, timm names for timm/authors' "
            "weights) or pass those two options.",
            path,
            origin,
            cfg.stage_rule,
            cfg.pool_count_include_pad,
            rule,
            count_pad,
        )
    return origin


def _mismatch_message(raw: RawWeights, cfg: Res2NetConfig, missing, unexpected, mismatched) -> str:
    def show(items, n=8):
        items = list(items)
        return ", ".join(map(str, items[:n])) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")

    lines = [f"{raw.path} does not fit a {_describe(cfg)}:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {show(k.replace('<paddle>', '') for k in unexpected)}")
    if mismatched:
        lines.append(
            f"  shape mismatches ({len(mismatched)}): "
            + show(f"{k}: file {fs} vs model {ms}" for k, fs, ms in mismatched)
        )
    guess = guess_model(raw)
    if guess:
        lines.append(f"  This file looks like weights for {guess!r}: create_model({guess!r}, pretrained=...).")
    return "\n".join(lines)
