"""``create_model``: a registered name (+ options) -> a ready model, weights loaded and verified."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from res2net.models.res2net import Res2Net, Res2NetFeatures
from res2net.models.zoo import get_card
from res2net.weights.formats import RawWeights
from res2net.weights.hub import download_weights, is_official
from res2net.weights.load import load_weights


def create_model(
    name: str,
    pretrained: bool | str | Path | RawWeights = False,
    num_classes: int = 1000,
    *,
    features_only: bool = False,
    out_indices: tuple[int, ...] = (1, 2, 3, 4),
    **kwargs,
) -> nn.Module:
    """Build the model ``name``.

    Args:
        name: a name from :func:`res2net.list_models` (aliases and unambiguous lowercase accepted).
        pretrained: ``False``; ``True`` for the official weights (downloaded once, verified, cached
            under ``$RES2NET_HOME``); or a path to a ``.pdparams``, ``.pdiparams``, ``.pth``/``.pt``
            or ``.safetensors`` file from PaddleClas, timm, the authors or ``res2net convert``, or
            such a file already read by :func:`res2net.weights.read_weights` (not read again).
        num_classes: classifier size. With pretrained weights of another size the head is
            re-initialised (fine-tuning); ``0`` builds a headless model.
        features_only: return a :class:`Res2NetFeatures` backbone yielding multi-scale maps.
        out_indices: with ``features_only``, which maps (0 = stem, 1..4 = stages).
        **kwargs: overrides of :class:`Res2NetConfig` fields, e.g. ``drop_path_rate=0.1``.
    """
    card = get_card(name)
    cfg = card.config.with_overrides(num_classes=num_classes, **kwargs)
    model = Res2Net(cfg)
    model.pretrained_cfg = card  # type: ignore[attr-defined]  # the card travels with the model
    if pretrained is True:
        path = download_weights(card.name)
    elif isinstance(pretrained, RawWeights):
        path = pretrained
    elif pretrained:
        path = Path(pretrained)
    else:
        path = None
    if path is not None:
        load_weights(model, path, strict_head=num_classes == card.config.num_classes)
    if features_only:
        return Res2NetFeatures(model, out_indices)
    return model


def create_model_for_weights(name: str, weights: str | Path | None, num_classes: int | None = None) -> nn.Module:
    """:func:`create_model` in eval mode for a ``--weights`` value: ``None`` (initialised, no weights),
    ``"official"`` / ``"pretrained"`` (the released weights) or a file. ``num_classes``: the card's by default."""
    card = get_card(name)
    n = num_classes if num_classes is not None else card.config.num_classes
    if weights is None:
        pretrained: bool | str | Path = False
    else:
        pretrained = True if is_official(str(weights)) else weights
    return create_model(card.name, pretrained=pretrained, num_classes=n).eval()
