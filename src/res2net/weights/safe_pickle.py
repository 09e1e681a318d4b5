"""A pickle reader that can only build numpy arrays and plain containers.

PaddleClas ``.pdparams`` files are plain pickles. ``pickle.load`` on a file from the internet runs
whatever callable the file names (``os.system`` included), so we never use it: this unpickler
resolves only the handful of globals a numpy array needs and refuses everything else *before*
anything is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

# Globals a pickled numpy array (numpy 1.x or 2.x writer, protocol 2-5) and an OrderedDict need.
_ALLOWED: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "numpy.core.multiarray._reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "numpy.core.multiarray._reconstruct",
    ("numpy.core.multiarray", "scalar"): "numpy.core.multiarray.scalar",
    ("numpy._core.multiarray", "scalar"): "numpy.core.multiarray.scalar",
    ("numpy", "ndarray"): "numpy.ndarray",
    ("numpy", "dtype"): "numpy.dtype",
    ("_codecs", "encode"): "_codecs.encode",
    ("collections", "OrderedDict"): "collections.OrderedDict",
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file asked to import something a weights file never needs."""


def _resolve(path: str) -> Any:
    import codecs
    import collections

    import numpy as np

    if path == "numpy.core.multiarray._reconstruct":
        return np.ndarray.__reduce__(np.empty(0))[0]  # the running numpy's own _reconstruct
    if path == "numpy.core.multiarray.scalar":
        return np.int64(0).__reduce__()[0]
    return {
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
        "_codecs.encode": codecs.encode,
        "collections.OrderedDict": collections.OrderedDict,
    }[path]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")  # protocol-2 ndarrays store raw bytes as latin1 str
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"{self._source}: refused to load — the file references {module}.{name}, which a "
                "weights file never needs. It may be malicious; nothing from it was executed."
            )
        return _resolve(target)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused to load — persistent references are not allowed")


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only numpy arrays, dtypes and builtin containers."""
    path = Path(path)
    with path.open("rb") as f:
        return _RestrictedUnpickler(f, str(path)).load()
