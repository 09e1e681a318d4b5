"""``create_model``: a registered name (+ options) -> a ready model, weights loaded and verified."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from res2net.models.res2net import Res2Net, Res2NetFeatures
from res2net.models.zoo import get_card
from res2net.weights.hub import download_weights
from res2net.weights.load import load_weights


def create_model(
    name: str,
    pretrained: bool | str | Path = False,
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
            or ``.safetensors`` file from PaddleClas, timm, the authors or ``res2net convert``.
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
    elif pretrained:
        path = Path(pretrained)
    else:
        path = None
    if path is not None:
        load_weights(model, path, strict_head=num_classes == card.config.num_classes)
    if features_only:
        return Res2NetFeatures(model, out_indices)
    return model
