"""Res2Net architectures and the registry of named models."""

from res2net.models.backbone import Res2NetFeatures, freeze_batch_norm
from res2net.models.res2net import Bottle2neck, Res2Net, Res2NetConfig
from res2net.models.zoo import ModelCard, Preprocess, get_card, list_models

__all__ = [
    "Bottle2neck",
    "ModelCard",
    "Preprocess",
    "Res2Net",
    "Res2NetConfig",
    "Res2NetFeatures",
    "freeze_batch_norm",
    "get_card",
    "list_models",
]


def __getattr__(name: str):
    # Deprecated alias: create_model loads weights, so it lives above models/ and weights/ in res2net.factory.
    if name == "create_model":
        from res2net._deprecated import warn_moved
        from res2net.factory import create_model

        warn_moved("res2net.models.create_model", "res2net.create_model")
        return create_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
