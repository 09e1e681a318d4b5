"""Old import paths that keep working after a module moved, with a ``DeprecationWarning``.

``alias_package("res2net.engine", "res2net.training")`` makes ``import res2net.engine.train`` return
the very module object ``res2net.training.train`` (not a second copy, so classes and module state
stay one), which is what code written against the old layout needs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} moved to {new}; the old name will be removed", DeprecationWarning, stacklevel=stacklevel)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(self.old + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a placeholder module; exec_module swaps in the real one

    def exec_module(self, module) -> None:
        new = self.new + module.__name__[len(self.old) :]
        # The import system returns whatever sys.modules holds after exec_module.
        sys.modules[module.__name__] = importlib.import_module(new)


def alias_package(old: str, new: str) -> None:
    """Serve every submodule ``old.X`` as ``new.X`` (call from ``old/__init__.py``)."""
    if not any(isinstance(f, _AliasFinder) and f.old == old for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder(old, new))
