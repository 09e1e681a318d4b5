"""Deprecated: training moved to :mod:`res2net.training` (``res2net.engine.X`` is ``res2net.training.X``)."""

import importlib

from res2net._deprecated import alias_package, warn_moved

warn_moved("res2net.engine", "res2net.training")
alias_package(__name__, "res2net.training")


def __getattr__(name: str):
    try:
        return importlib.import_module(f"res2net.training.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
