"""Deprecated: the inference engines moved to :mod:`res2net.runtime` (``res2net.engines.X`` = ``res2net.runtime.X``)."""

from res2net._deprecated import alias_package
from res2net.runtime import *  # noqa: F403  # the old package's names
from res2net.runtime import __all__  # noqa: F401

__getattr__ = alias_package(__name__, "res2net.runtime")
