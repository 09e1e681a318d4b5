"""Res2Net architectures and the registry of named models."""

from res2net.models.factory import create_model
from res2net.models.res2net import Bottle2neck, Res2Net, Res2NetConfig, Res2NetFeatures, freeze_batch_norm
from res2net.models.zoo import ModelCard, Preprocess, get_card, list_models

__all__ = [
    "Bottle2neck",
    "ModelCard",
    "Preprocess",
    "Res2Net",
    "Res2NetConfig",
    "Res2NetFeatures",
    "create_model",
    "freeze_batch_norm",
    "get_card",
    "list_models",
]
