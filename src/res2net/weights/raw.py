"""What every weights reader returns and raises, and the bounds they share."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from res2net.errors import Res2NetError


class WeightsError(Res2NetError, ValueError):
    """A weights file is unreadable, unsafe, or does not fit the model."""


@dataclass
class RawWeights:
    """Tensors as found in a file, plus where they came from."""

    tensors: dict[str, torch.Tensor]
    origin: str  # "paddle" | "paddle_inference" | "torch" | "safetensors"
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)
    sha256: str = ""  # of the file's bytes, hashed by read_weights while it parsed them ("": not known)


# No Res2Net file comes near this (Res2Net-200: ~2,700 tensors); it bounds per-tensor bookkeeping.
MAX_TENSORS = 100_000


class CappedFile(io.FileIO):
    """A file whose ``read(n)`` never asks for more than the bytes left.

    ``tarfile``/``zipfile`` pass sizes from headers straight to ``read``; a buffered file would
    allocate that much before finding the file is short.
    """

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, os.fstat(self.fileno()).st_size - self.tell())
        return super().read(left if size is None or size < 0 else min(size, left))
