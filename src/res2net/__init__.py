"""res2net: the Res2Net image-classification family in PyTorch, numerically identical to PaddleClas."""

from res2net._version import __version__
from res2net.factory import create_model
from res2net.models import ModelCard, Res2Net, Res2NetConfig, get_card, list_models

__all__ = ["ModelCard", "Res2Net", "Res2NetConfig", "__version__", "create_model", "get_card", "list_models"]


def __getattr__(name: str):
    # Start-up time: the predictor pulls in image/engine dependencies; import it only when asked for.
    if name == "Predictor":
        from res2net.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'res2net' has no attribute {name!r}")
