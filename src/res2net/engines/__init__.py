"""Deprecated: the inference engines moved to :mod:`res2net.runtime` (``res2net.engines.X`` = ``res2net.runtime.X``)."""

import importlib

from res2net._deprecated import alias_package, warn_moved
from res2net.runtime import *  # noqa: F403  # the old package's names
from res2net.runtime import __all__  # noqa: F401

warn_moved("res2net.engines", "res2net.runtime")
alias_package(__name__, "res2net.runtime")


def __getattr__(name: str):
    try:
        return importlib.import_module(f"res2net.runtime.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
