"""Deprecated: training moved to :mod:`res2net.training` (``res2net.engine.X`` is ``res2net.training.X``)."""

from res2net._deprecated import alias_package

__getattr__ = alias_package(__name__, "res2net.training")
