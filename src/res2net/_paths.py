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
