"""Where res2net keeps its files and how it names their contents: the cache home and file digests.

The lowest layer: the weights downloader, the artifact cache and the predictor all need these two
facts, and none of them should import another just to learn them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def res2net_home() -> Path:
    """``$RES2NET_HOME`` (default ``~/.cache/res2net``): downloaded weights and built artifacts live below it."""
    return Path(os.environ.get("RES2NET_HOME", Path.home() / ".cache" / "res2net"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-sized blocks (weights files can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_digest(model) -> str:
    """Hex sha256 of a module's state: every tensor's name, shape and bytes, in name order.

    What identifies an in-memory model's weights where there is no file to hash (a model passed to
    the Predictor, the benchmark's random weights) in artifact cache keys.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
