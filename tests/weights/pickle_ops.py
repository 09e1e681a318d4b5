"""Hand-assembled pickle opcodes, for hostile inputs that ``pickle.dumps`` would never write."""

from __future__ import annotations

import struct

PROTO2, PROTO4 = b"\x80\x02", b"\x80\x04"
MARK, TUPLE, REDUCE, BUILD, STOP = b"(", b"t", b"R", b"b", b"."
EMPTY_DICT, SETITEMS, NONE, TRUE, FALSE = b"}", b"u", b"N", b"\x88", b"\x89"


def text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def data(raw: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(raw)) + raw


def integer(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


NUMPY_STATE_F4 = tup(integer(3), text("<"), NONE, NONE, NONE, integer(-1), integer(-1), integer(0))


def dtype(code: str = "f4", state: bytes | None = NUMPY_STATE_F4) -> bytes:
    """``numpy.dtype(code, False, True)`` then (unless ``state`` is None) BUILD with ``state``."""
    out = glob("numpy", "dtype") + tup(text(code), FALSE, TRUE) + REDUCE
    return out + (state + BUILD if state is not None else b"")


def ndarray(shape: tuple[int, ...], payload: bytes | None, dt: bytes | None = None) -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')``, then BUILD ``(1, shape, dt, False, payload)`` unless payload is None."""
    out = glob("numpy.core.multiarray", "_reconstruct") + tup(glob("numpy", "ndarray"), tup(integer(0)), data(b"b"))
    out += REDUCE
    if payload is None:
        return out
    return out + tup(integer(1), tup(*map(integer, shape)), dt or dtype(), FALSE, payload) + BUILD


def state_dict(*items: tuple[bytes, bytes], proto: bytes = PROTO2) -> bytes:
    """A pickled dict of (key opcodes, value opcodes) pairs."""
    return proto + EMPTY_DICT + MARK + b"".join(k + v for k, v in items) + SETITEMS + STOP
