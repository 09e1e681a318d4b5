"""Checkpoints that never lose work.

``last.pt`` holds everything a run needs to continue exactly where it stopped (model, optimizer,
scheduler, GradScaler, EMA, RNG states, epoch and position in the epoch). It is written atomically:
serialised to a temporary file in the same folder, flushed and ``fsync``-ed, then ``os.replace``-d over
the previous one and the folder entry ``fsync``-ed. A process killed at any instant — even half-way
through writing — therefore leaves either the previous complete checkpoint or the new complete one,
never a torn file. Stale temporary files of killed writers are removed on the next start.

Checkpoints are read back with ``torch.load(weights_only=True)``: they hold only tensors and plain
containers, so nothing in them can execute code. Model weights for users (``best.safetensors``,
``last.safetensors``) are plain safetensors files that ``res2net.create_model(pretrained=...)`` loads.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from res2net.errors import Res2NetError

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"
_TMP_MARK = ".tmp-"


class CheckpointError(Res2NetError, RuntimeError):
    """A checkpoint cannot be read or does not fit the current run."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform / file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers (and crash survivors) see all of it or none of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Model weights as ``.safetensors`` (contiguous CPU copies), atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in metadata.items()}))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete half-written temporaries left by a killed writer."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f".*{_TMP_MARK}*"):
            p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint safely; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load (needs more than tensors to unpickle): {e}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "next_epoch" not in ckpt:
        raise CheckpointError(f"{path}: not a res2net training checkpoint (use it as Arch.pretrained instead?)")
    return ckpt


def find_resume_checkpoint(output_dir: str | Path, resume: str | None) -> Path | None:
    """``Global.resume``: ``auto`` -> ``output_dir/last.pt`` if present; ``never``/null -> none; else a path."""
    if resume in (None, False, "never", "none", ""):
        return None
    if resume in ("auto", True):
        p = Path(output_dir) / LAST
        return p if p.is_file() else None
    p = Path(resume)
    if p.is_dir():
        p = p / LAST
    if not p.is_file():
        raise CheckpointError(f"{resume}: no checkpoint to resume from")
    return p


# ---------------------------------------------------------------------------------------------- metrics log
def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one record as a line of JSON, on disk (``fsync``) before training goes on.

    One ``write`` of the whole line, then ``fsync``: a crash can tear at most this last line, which
    :func:`read_jsonl` recognises and drops.
    """
    with open(path, "ab") as f:
        f.write((json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> tuple[list[dict], bool]:
    """The records of a JSON-lines log, and whether the file must be rewritten before appending to it.

    A process killed mid-write (power loss, a full disk, SIGKILL) leaves the last line incomplete:
    that record was never committed, so it is dropped with a warning. A complete last record
    without its newline is kept (the rewrite adds the newline). A bad line anywhere else is not a
    crash's doing and raises :class:`CheckpointError` naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return [], False
    *lines, tail = path.read_bytes().split(b"\n")
    rows = [_json_record(line, path, i) for i, line in enumerate(lines, 1) if line.strip()]
    if not tail.strip():
        return rows, bool(tail)
    try:
        rows.append(_json_record(tail, path, len(lines) + 1))
    except CheckpointError:
        log.warning("%s: dropping its torn last line (a write interrupted by a crash): %r", path, tail[:80])
    return rows, True


def _json_record(line: bytes, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}:{number}: not a line of JSON ({e}); repair or delete that line") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
    return record


# ---------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    """Every global RNG a training step may touch, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuplify(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x
