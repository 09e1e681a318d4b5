"""``create_model``: a registered name (+ options) -> a ready model, weights loaded and verified."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from res2net.models.backbone import Res2NetFeatures, freeze_batch_norm
from res2net.models.res2net import Res2Net
from res2net.models.zoo import get_card
from res2net.weights.formats import RawWeights
from res2net.weights.hub import download_weights, is_official
from res2net.weights.load import load_weights


def resolve_pretrained(name: str, pretrained: bool | str | Path | RawWeights) -> Path | RawWeights | None:
    """The local weights file ``pretrained`` designates for model ``name`` (downloading if needed)."""
    if pretrained is True:
        return download_weights(name)
    if isinstance(pretrained, RawWeights):
        return pretrained
    if not pretrained:
        return None
    from res2net.weights.hf import is_hf_hub, weights_from_hf

    if is_hf_hub(pretrained):
        return weights_from_hf(str(pretrained))
    path = Path(pretrained)
    if path.is_dir():
        return path / "model.safetensors"  # a save_pretrained / Hub directory
    from res2net.weights.prefix import resolve_weights_prefix

    return resolve_weights_prefix(path)  # PaddleClas prefixes: output/NAME/latest, best_model, epoch_N


def create_model(
    name: str,
    pretrained: bool | str | Path | RawWeights = False,
    num_classes: int | None = None,
    *,
    features_only: bool = False,
    out_indices: tuple[int, ...] = (1, 2, 3, 4),
    feature_cls: str = "list",
    frozen_bn: bool = False,
    **kwargs,
) -> nn.Module:
    """Build the model ``name``.

    Args:
        name: a name from :func:`res2net.list_models` (aliases and unambiguous lowercase accepted),
            or ``"hf-hub:ORG/REPO"``: the architecture named in that repository's ``config.json``
            (with ``pretrained=True``, its weights too), as ``timm.create_model`` does.
        pretrained: ``False``; ``True`` for the official weights (downloaded once, verified, cached
            under ``$RES2NET_HOME``, or in the Hugging Face cache for timm's cards); a path to a
            ``.pdparams``, ``.pdiparams``, ``.pth``/``.pt`` or ``.safetensors`` file from PaddleClas,
            timm, the authors or ``res2net convert``; or ``"hf-hub:ORG/REPO[@REVISION]"`` for the
            ``model.safetensors`` of a Hugging Face Hub repository (needs ``res2net[hf]``), or a
            directory written by :func:`res2net.save_pretrained`. A path without a suffix is a
            PaddleClas-style prefix: ``output/NAME/latest`` (or ``best_model``, ``epoch_N``, our
            ``last``/``best``) finds the ``.pdparams``/``.safetensors``/``.pth``/``.pt`` written there.
            Or such a file already read by :func:`res2net.weights.read_weights` (not read again).
        num_classes: classifier size; ``None``: the model's (1000), or that of the ``hf-hub:``
            repository's ``config.json``. With pretrained weights of another size the head is
            re-initialised (fine-tuning); ``0`` builds a headless model.
        features_only: return a :class:`Res2NetFeatures` backbone yielding multi-scale maps.
        out_indices: with ``features_only``, which maps (0 = stem at stride 2, 1..4 = stages at
            strides 4..32), as in timm.
        feature_cls: with ``features_only``, ``"list"`` (timm's default) or ``"dict"`` (keyed by
            module name, what torchvision's ``FeaturePyramidNetwork`` takes).
        frozen_bn: replace BatchNorm by torchvision's ``FrozenBatchNorm2d`` after loading weights
            (detection/segmentation fine-tuning with small batches).
        **kwargs: overrides of :class:`Res2NetConfig` fields, e.g. ``drop_path_rate=0.1``.
    """
    from res2net.weights.hf import is_hf_hub

    if is_hf_hub(name):
        from res2net.weights.hf import config_from_hf

        hub_id = name
        hub_config = config_from_hf(hub_id)
        name = hub_config["architecture"]
        pretrained = hub_id if pretrained is True else pretrained
        if num_classes is None and isinstance(hub_config.get("num_classes"), int):
            num_classes = hub_config["num_classes"]
    card = get_card(name)
    if num_classes is None:
        num_classes = card.config.num_classes
    cfg = card.config.with_overrides(num_classes=num_classes, **kwargs)
    model = Res2Net(cfg)
    model.card = card  # the card travels with the model
    model.pretrained_cfg = card.pretrained_cfg(num_classes=num_classes, in_chans=cfg.in_chans)
    path = resolve_pretrained(card.name, pretrained)
    if path is not None:
        load_weights(model, path, strict_head=num_classes == card.config.num_classes)
    if frozen_bn:
        freeze_batch_norm(model)
    if features_only:
        return Res2NetFeatures(model, out_indices, output=feature_cls)
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
