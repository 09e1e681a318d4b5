"""res2net: the Res2Net image-classification family in PyTorch, numerically identical to PaddleClas.

Importing the package is cheap (no torch): the public names load on first use, so ``res2net
--help`` answers at once. With timm installed, our PaddleClas-semantics models are registered with
timm as soon as both packages are imported, in either order (see :mod:`res2net.timm`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

from res2net._version import __version__

# public name -> module that defines it
_LAZY = {
    "ModelCard": "res2net.models",
    "Res2Net": "res2net.models",
    "Res2NetConfig": "res2net.models",
    "create_model": "res2net.factory",
    "get_card": "res2net.models",
    "list_models": "res2net.models",
    "save_pretrained": "res2net.weights.hf",
    "Predictor": "res2net.predict",
}

__all__ = [
    "ModelCard",
    "Predictor",
    "Res2Net",
    "Res2NetConfig",
    "__version__",
    "create_model",
    "get_card",
    "list_models",
    "save_pretrained",
]

if TYPE_CHECKING:
    from res2net.factory import create_model
    from res2net.models import ModelCard, Res2Net, Res2NetConfig, get_card, list_models
    from res2net.predict import Predictor
    from res2net.weights.hf import save_pretrained


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'res2net' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _RegisterWithTimm(importlib.abc.MetaPathFinder):
    """Registers our models with timm right after ``import timm`` finishes (timm has no plugin hook)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; also lets the lookup below find the real timm
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            importlib.import_module("res2net.timm").register()

        spec.loader.exec_module = exec_then_register
        return spec


if "timm" in sys.modules:
    importlib.import_module("res2net.timm").register()
elif importlib.util.find_spec("timm") is not None:
    sys.meta_path.insert(0, _RegisterWithTimm())
