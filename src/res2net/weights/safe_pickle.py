"""A pickle reader that can only build numpy arrays and plain containers, from bytes the file holds.

PaddleClas ``.pdparams`` files are plain pickles. ``pickle.load`` on a file from the internet runs
whatever callable the file names (``os.system`` included), so we never use it. A restricted
``pickle.Unpickler`` is not enough either: handing numpy the file's own arguments can segfault
the process (``numpy.dtype`` BUILD with a crafted state), and the C unpickler allocates whatever a
few bytes declare (a ``LONG_BINPUT 2**25`` resizes the memo to hundreds of MB; a ``BINBYTES8``
length is allocated before it is read).

So this module runs its own small pickle machine over the file's bytes:

* only the opcodes a weights pickle uses exist (protocols 0-5, no persistent ids, extensions or
  out-of-band buffers); the memo is a dict, so indices cost nothing;
* every length is checked against the bytes left before anything is sliced, and the number of
  opcodes is capped, so work and memory are bounded by the file size;
* the numpy globals are *names*, never numpy itself: ``_reconstruct``/``dtype``/``scalar``/
  ``_codecs.encode`` build inert placeholders whose arguments and ``BUILD`` state are checked
  here (plain numeric dtypes only; data length == shape x itemsize, so stride-0 or uninitialised
  arrays cannot be expressed), and an array that never received its ``BUILD`` is refused;
* each data buffer may back one array only, so memo references cannot multiply memory.

Arrays come back as :class:`PickledArray` (shape and dtype known, data not yet copied) so the
caller can check them before materialising anything.
"""

from __future__ import annotations

import gc
import struct
from pathlib import Path
from typing import Any

from res2net.weights.pickle_machine import MAX_OPCODES, Opaque, PickleMachine
from res2net.weights.pickled_array import (
    MAX_NDIM,
    NUMERIC_DTYPES,
    MalformedPickleError,
    PickledArray,
    UnsafePickleError,
    short_repr,
)


def read_file_buffer(path: Path) -> bytearray:
    """The whole file in one writable buffer (arrays become views of it: no second copy)."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        buf = bytearray(size)
        if f.readinto(buf) != size:
            raise MalformedPickleError("the file changed size while it was read")
    return buf


def safe_load_pickle(path: str | Path, data: bytearray | None = None) -> Any:
    """Unpickle ``path`` (or ``data``) allowing only numpy arrays, dtypes, scalars and builtin containers.

    Arrays are returned as :class:`PickledArray`. Raises :class:`MalformedPickleError` (or its
    subclass :class:`UnsafePickleError`) for anything else; ``MemoryError`` cannot come from the
    file because nothing is allocated that its bytes do not hold.
    """
    return _run(PickleMachine(read_file_buffer(Path(path)) if data is None else data))


def _run(machine: PickleMachine) -> Any:
    # The cyclic GC would re-traverse everything built so far every few thousand objects (a
    # million nested tuples: 3.5 s instead of 0.6 s); nothing here needs it until the run ends.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return machine.run()
    except struct.error as e:  # only from unpack on a short slice; take() already checked lengths
        raise MalformedPickleError(f"truncated argument at byte {machine.pos}: {e}") from None
    except UnicodeDecodeError as e:
        raise MalformedPickleError(f"text at byte {machine.pos} is not valid UTF-8: {e.reason}") from None
    finally:
        if gc_was_on:
            gc.enable()


class _StructureScan(PickleMachine):
    """A dry run of a PyTorch pickle before ``torch.load`` sees it: same bounds, every object opaque.

    PyTorch's weights-only unpickler allocates only what it reads, but it hashes dict keys as it goes,
    and a ~1 MB pickle of tuples nested a million deep then overflows CPython's C stack (SIGSEGV).
    This scan checks lengths, opcode count and keys (scalars, tokens, or flat tuples of them); what
    may be imported is left to PyTorch.
    """

    def find_global(self, module: str, name: str) -> Opaque:
        return Opaque()

    def reduce(self, func: Any, args: Any) -> Opaque:
        if not isinstance(func, Opaque) or not isinstance(args, tuple):
            raise MalformedPickleError(f"REDUCE on {short_repr(func)} with {type(args).__name__} arguments")
        return Opaque()

    def build(self, state: Any, obj: Any) -> None:
        if not isinstance(obj, Opaque):
            raise MalformedPickleError(f"BUILD on a {type(obj).__name__}")

    def __init__(self, buf: bytearray | memoryview, pos: int, storages: dict[Any, int], budget: int) -> None:
        super().__init__(buf, pos)
        self.storages, self.budget = storages, budget

    def persistent_load(self, pid: Any) -> Opaque:
        """``('storage', type, key, location, numel, ...)``: PyTorch allocates ``numel`` elements when it meets one."""
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            key, numel = pid[2], pid[4]
            if not isinstance(key, (str, int)) or type(numel) is not int or numel < 0:
                raise MalformedPickleError(f"storage reference {short_repr(pid)} is malformed")
            self.storages[key] = numel
            declared = sum(self.storages.values())
            if declared > self.budget:
                raise MalformedPickleError(
                    f"its storages declare {declared} elements, more than the file's {self.budget} bytes"
                )
        return Opaque()

    def new_object(self, cls: Any, args: Any) -> Opaque:
        return self.reduce(cls, args)

    def check_key(self, key: Any) -> None:
        flat = key if isinstance(key, tuple) and len(key) <= 16 else (key,)
        if not all(isinstance(k, (str, int, float, type(None), Opaque)) for k in flat):
            raise MalformedPickleError(f"dict key {short_repr(key)} is not a string, number or flat tuple")


def scan_torch_pickles(data: bytearray | memoryview, file_size: int, count: int = 1) -> int:
    """Dry-run ``count`` consecutive pickles from the start of ``data``; the offset after the last.

    A zip checkpoint's ``data.pkl`` is one pickle; a legacy (pre-1.6) ``.pth`` starts with five
    (magic number, protocol, system info, the object, storage keys) before the raw storages. The
    storages referenced may not declare more elements than the file has bytes.
    """
    pos, storages = 0, {}
    for _ in range(count):
        machine = _StructureScan(data, pos, storages, file_size)
        _run(machine)
        pos = machine.pos
    return pos


__all__ = [
    "MAX_NDIM",
    "MAX_OPCODES",
    "NUMERIC_DTYPES",
    "MalformedPickleError",
    "PickledArray",
    "UnsafePickleError",
    "read_file_buffer",
    "safe_load_pickle",
    "scan_torch_pickles",
    "short_repr",
]
