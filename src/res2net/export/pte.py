"""Running a ``.pte`` program from Python through ExecuTorch's runtime, and the metadata file beside it.

Apart from the exporter (:mod:`res2net.export.executorch`) so that verification and reports can load
a program without importing the exporter, and the exporter can verify without a cycle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from res2net.export._common import ExportError, quiet


def require_executorch() -> None:
    try:  # optional dependency (the edge extra)
        import executorch  # noqa: F401
    except ImportError:
        raise ExportError("the pte format needs ExecuTorch: pip install 'res2net[edge]'") from None


def sidecar(path: str | Path) -> Path:
    """``model.pte`` -> ``model.pte.json``, the metadata a ``.pte`` cannot hold."""
    return Path(str(path) + ".json")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata :func:`export_pte` wrote beside ``path`` (``{}`` if there is none)."""
    f = sidecar(path)
    return json.loads(f.read_text()) if f.is_file() else {}


class PteModel:
    """A ``.pte`` program run by ExecuTorch's runtime: ``model(x)`` -> logits, any batch size.

    The program's batch is fixed; larger inputs are run in chunks and the last chunk is padded.
    """

    def __init__(self, path: str | Path) -> None:
        require_executorch()
        from executorch.runtime import Runtime  # optional dependency (the edge extra)

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: no such .pte file")
        try:
            with quiet():
                program = Runtime.get().load_program(self.path)
                self._method = program.load_method("forward")
        except Exception as e:
            raise ExportError(f"{self.path}: not a loadable ExecuTorch program: {e}") from e
        meta = self._method.metadata
        self.input_shape = tuple(meta.input_tensor_meta(0).sizes())
        self.metadata = read_metadata(self.path)

    @property
    def batch_size(self) -> int:
        return int(self.input_shape[0])

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            want = ", ".join(map(str, self.input_shape[1:]))
            raise ExportError(f"{self.path}: takes [N, {want}], got {list(x.shape)}")
        b = self.batch_size
        outs = []
        for start in range(0, len(x), b):
            chunk = x[start : start + b]
            n = len(chunk)
            if n < b:
                chunk = torch.cat([chunk, chunk[-1:].expand(b - n, *chunk.shape[1:])])
            outs.append(self._method.execute([chunk.contiguous()])[0][:n].clone())
        return torch.cat(outs)
