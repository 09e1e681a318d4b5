"""What the config modules share: :class:`ConfigError` and dotted-key access (``"Optimizer.lr"``) to nested dicts.

Apart from :mod:`res2net.training.config` so that the PaddleClas translator
(:mod:`res2net.training.paddleclas_config`) can use them without importing the loader that imports it.
"""

from __future__ import annotations

from typing import Any

from res2net.errors import Res2NetError


class ConfigError(Res2NetError, ValueError):
    """A config file or override is wrong (unknown key, bad value, unsupported PaddleClas op)."""


def get_path(d: dict, key: str, default=None):
    """``d["A"]["b"]["c"]`` for ``key="A.b.c"``, or ``default`` where a part is missing."""
    node: Any = d
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node
