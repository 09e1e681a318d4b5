"""The artifact cache: exported / quantized / compiled models, built once and reused.

Layout: ``$RES2NET_HOME/artifacts/<model id>-<weights sha256[:16]>/<engine>-<precision>-<size>[-<extra>]-v<N>/``
holding the engine's files and ``meta.json`` (written last, so a directory without it is an
interrupted build and is rebuilt). ``extra`` is the calibration-set digest for int8. Builds take a
file lock, so the processes of a ``torchrun`` job build an artifact once and the others wait for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from res2net._paths import res2net_home
from res2net._version import __version__

# Bump when what goes into an artifact changes (exporter options, quantization recipe).
ARTIFACT_VERSION = 5


@dataclass(frozen=True)
class ArtifactKey:
    model_id: str
    weights_sha256: str
    engine: str
    precision: str
    input_size: int
    extra: str = ""

    @property
    def relpath(self) -> str:
        extra = f"-{self.extra}" if self.extra else ""
        return (
            f"{self.model_id}-{self.weights_sha256[:16]}/"
            f"{self.engine}-{self.precision}-{self.input_size}{extra}-v{ARTIFACT_VERSION}"
        )


class ArtifactCache:
    """Directories of built artifacts under ``root`` (default ``$RES2NET_HOME/artifacts``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else res2net_home() / "artifacts"

    def path(self, key: ArtifactKey) -> Path:
        return self.root / key.relpath

    def read_meta(self, key: ArtifactKey) -> dict | None:
        try:
            return json.loads((self.path(key) / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def write_meta(self, key: ArtifactKey, meta: dict) -> None:
        d = self.path(key)
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".meta.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        os.replace(tmp, d / "meta.json")

    def is_complete(self, key: ArtifactKey) -> bool:
        return (self.read_meta(key) or {}).get("complete", False)

    @contextlib.contextmanager
    def lock(self, key: ArtifactKey) -> Iterator[Path]:
        """Exclusive lock on one artifact (POSIX ``flock``; a no-op where that does not exist)."""
        d = self.path(key)
        d.parent.mkdir(parents=True, exist_ok=True)
        lock_path = d.parent / f".{d.name}.lock"
        with open(lock_path, "a") as f:
            try:
                import fcntl

                fcntl.flock(f, fcntl.LOCK_EX)
            except ImportError:  # Windows: concurrent builds may race, each still writes atomically
                pass
            yield d

    def start_build(self, key: ArtifactKey) -> Path:
        """An empty directory for a (re)build of ``key``; call under :meth:`lock`."""
        d = self.path(key)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def get_or_build(self, key: ArtifactKey, build: Callable[[Path], dict | None]) -> Path:
        """The artifact directory of ``key``, calling ``build(empty_dir)`` first if it is not complete.

        The one place that locks, builds into a fresh directory, times the build and marks it complete
        (``build`` may return extra metadata), so concurrent processes build an artifact only once.
        """
        with self.lock(key):
            if not self.is_complete(key):
                t = time.perf_counter()
                meta = build(self.start_build(key)) or {}
                self.finish_build(key, seconds=round(time.perf_counter() - t, 1), **meta)
        return self.path(key)

    def finish_build(self, key: ArtifactKey, **meta) -> None:
        self.write_meta(key, {**meta, "complete": True, "res2net": __version__, "key": key.__dict__})
