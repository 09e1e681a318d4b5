"""The restricted pickle virtual machine behind :mod:`res2net.weights.safe_pickle`.

Only the opcodes a weights pickle uses exist (protocols 0-5, no persistent ids, extensions or
out-of-band buffers); the memo is a dict, so indices cost nothing; every length is checked against
the bytes left before anything is sliced, and the number of opcodes is capped, so work and memory
are bounded by the file size. Globals resolve to names (:data:`ALLOWED_GLOBALS`); what the numpy
ones build is checked in :mod:`res2net.weights.pickled_array`.
"""

from __future__ import annotations

import struct
from typing import Any

from res2net.weights.pickled_array import (
    DTYPE,
    ENCODE,
    FROMBUFFER,
    NDARRAY,
    NUMPY_CALLS,
    RECONSTRUCT,
    SCALAR,
    Global,
    MalformedPickleError,
    PendingDtype,
    PickledArray,
    UnsafePickleError,
    call_numpy,
    short_repr,
)

# Every opcode costs at most one stack/memo reference; this caps a file's work at ~1 s. A
# Res2Net-200 .pdparams uses ~60,000 opcodes.
MAX_OPCODES = 2_000_000

_ORDERED_DICT, _BYTES = "collections.OrderedDict", "bytes"
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): SCALAR,
    ("numpy._core.multiarray", "scalar"): SCALAR,
    ("numpy.core.numeric", "_frombuffer"): FROMBUFFER,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): FROMBUFFER,
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): DTYPE,
    ("_codecs", "encode"): ENCODE,
    ("collections", "OrderedDict"): _ORDERED_DICT,
    ("__builtin__", "bytes"): _BYTES,  # protocol 2 writes b"" as bytes()
    ("builtins", "bytes"): _BYTES,
}


class Opaque:
    """Whatever a PyTorch pickle builds (tensors, storages, dtypes): an inert, hashable token."""

    __slots__ = ()


class PickleMachine:
    """The pickle virtual machine, restricted. ``buf`` is writable so arrays can view it."""

    def __init__(self, buf: bytearray | memoryview, pos: int = 0) -> None:
        self.view = memoryview(buf)
        self.n = len(buf)
        self.pos = pos
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.arrays: list[PickledArray] = []
        self.consumed: dict[int, Any] = {}  # id -> object (kept alive so ids stay unique)

    # ---------------------------------------------------------------- reading
    def take(self, k: int) -> memoryview:
        if k < 0 or k > self.n - self.pos:
            raise MalformedPickleError(
                f"a length of {k} bytes at byte {self.pos} runs past the end of the file ({self.n - self.pos} left)"
            )
        out = self.view[self.pos : self.pos + k]
        self.pos += k
        return out

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def line(self) -> str:
        end = bytes(self.view[self.pos : self.pos + 256]).find(b"\n")
        if end < 0:
            raise MalformedPickleError(f"text argument at byte {self.pos} has no end of line within 256 bytes")
        out = bytes(self.take(end + 1)[:-1])
        return out.decode("latin1")

    def text(self, k: int) -> str:
        return str(self.take(k), "utf-8", "surrogatepass")

    # ---------------------------------------------------------------- stack
    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) == self.marks[-1]):
            raise MalformedPickleError(f"stack underflow at byte {self.pos}")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise MalformedPickleError(f"no MARK for the opcode at byte {self.pos}")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) == self.marks[-1]):
            raise MalformedPickleError(f"stack underflow at byte {self.pos}")
        return self.stack[-1]

    def consume(self, obj: Any) -> None:
        """Let ``obj`` (a data buffer) back one result only: memo references must not multiply memory."""
        if id(obj) in self.consumed:
            raise MalformedPickleError("one data buffer is used for two arrays (a memo reference)")
        self.consumed[id(obj)] = obj

    # ---------------------------------------------------------------- calls
    def find_global(self, module: str, name: str) -> Global:
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"refused to load — the file references {module}.{name}, which a "
                "weights file never needs. It may be malicious; nothing from it was executed."
            )
        return Global(target)

    def reduce(self, func: Any, args: Any) -> Any:
        if not isinstance(func, Global) or not isinstance(args, tuple):
            raise MalformedPickleError(f"REDUCE on {short_repr(func)} with {type(args).__name__} arguments")
        if func.name in NUMPY_CALLS:
            out = call_numpy(func.name, args, self.consume)
            if isinstance(out, PickledArray):
                self.arrays.append(out)
            return out
        if func.name == _BYTES:
            if args:
                raise MalformedPickleError(f"bytes{short_repr(args)}: expected no arguments")
            return b""
        if func.name == _ORDERED_DICT:
            if args:
                raise MalformedPickleError(f"OrderedDict{short_repr(args)}: expected no arguments")
            return {}
        raise UnsafePickleError(f"refused to load — {func.name} cannot be called")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused to load — persistent references are not allowed")

    def new_object(self, cls: Any, args: Any) -> Any:
        raise UnsafePickleError("refused to load — the NEWOBJ opcode is not allowed in a weights file")

    def check_key(self, key: Any) -> None:
        """Only keys whose hash is trivial: hashing a tuple nested 10**6 deep crashes CPython."""
        if not isinstance(key, (str, int, float, type(None))):
            raise MalformedPickleError(f"dict key of type {type(key).__name__}")

    def build(self, state: Any, obj: Any) -> None:
        if isinstance(obj, PickledArray):
            obj.set_state(state, self.consume)
        elif isinstance(obj, PendingDtype):
            obj.set_state(state)
        else:
            raise MalformedPickleError(f"BUILD on a {type(obj).__name__}; only ndarrays and dtypes take state")

    # ---------------------------------------------------------------- run
    def run(self) -> Any:
        ops = _OPS
        for _ in range(MAX_OPCODES):
            if self.pos >= self.n:
                raise MalformedPickleError("the file ends before the pickle's STOP (truncated?)")
            code = self.view[self.pos]
            self.pos += 1
            op = ops.get(code)
            if op is None:
                raise MalformedPickleError(
                    f"opcode {bytes([code])!r} at byte {self.pos - 1} is not one a weights pickle uses"
                )
            if op is _stop:
                result = self.pop()
                unfilled = sum(a.shape is None for a in self.arrays)
                if unfilled:
                    raise MalformedPickleError(
                        f"{unfilled} ndarray(s) were created without their data (REDUCE without BUILD); "
                        "they would hold uninitialised memory"
                    )
                return result
            op(self)
        raise MalformedPickleError(f"more than {MAX_OPCODES} opcodes; not a weights file")


def _push(m: PickleMachine, value: Any) -> None:
    m.stack.append(value)


def _int_text(text: str, what: str) -> int:
    text = text.rstrip("L")
    if len(text) > 40:
        raise MalformedPickleError(f"{what} {text[:20]}... is too long for a weights file")
    try:
        return int(text)
    except ValueError:
        raise MalformedPickleError(f"{what} {text!r} is not an integer") from None


def _long_bytes(m: PickleMachine, k: int) -> None:
    if k > 16:
        raise MalformedPickleError(f"a {k}-byte integer at byte {m.pos} is too large for a weights file")
    _push(m, int.from_bytes(m.take(k), "little", signed=True))


def _memo_get(m: PickleMachine, idx: int) -> None:
    if idx not in m.memo:
        raise MalformedPickleError(f"memo entry {idx} read before it was written")
    _push(m, m.memo[idx])


def _memo_put(m: PickleMachine, idx: int) -> None:
    if idx < 0:
        raise MalformedPickleError(f"negative memo index {idx}")
    m.memo[idx] = m.top()


def _stop(m: PickleMachine) -> None:  # handled in run(); present so STOP is a known opcode
    raise AssertionError


def _setitems(m: PickleMachine, items: list[Any]) -> None:
    target = m.top()
    if isinstance(target, Opaque):  # a dry run's OrderedDict: only the keys matter
        target = {}
    if not isinstance(target, dict):
        raise MalformedPickleError(f"SETITEM(S) on a {type(target).__name__}")
    if len(items) % 2:
        raise MalformedPickleError("SETITEMS with an odd number of items")
    for k, v in zip(items[::2], items[1::2]):
        m.check_key(k)
        target[k] = v


def _appends(m: PickleMachine, items: list[Any]) -> None:
    target = m.top()
    if isinstance(target, Opaque):
        return
    if not isinstance(target, list):
        raise MalformedPickleError(f"APPEND(S) on a {type(target).__name__}")
    target.extend(items)


def _tuple_n(n: int):
    def op(m: PickleMachine) -> None:
        stack = m.stack
        if len(stack) - (m.marks[-1] if m.marks else 0) < n:
            raise MalformedPickleError(f"stack underflow at byte {m.pos}")
        items = tuple(stack[-n:])
        del stack[-n:]
        stack.append(items)

    return op


def _stack_global(m: PickleMachine) -> None:
    name, module = m.pop(), m.pop()
    if not (isinstance(module, str) and isinstance(name, str)):
        raise MalformedPickleError("STACK_GLOBAL needs two strings")
    _push(m, m.find_global(module, name))


def _global(m: PickleMachine) -> None:
    module, name = m.line(), m.line()
    _push(m, m.find_global(module, name))


def _reduce(m: PickleMachine) -> None:
    args = m.pop()
    func = m.pop()
    _push(m, m.reduce(func, args))


def _build(m: PickleMachine) -> None:
    state = m.pop()
    m.build(state, m.top())


def _dict(m: PickleMachine) -> None:
    items = m.pop_mark()
    _push(m, {})
    _setitems(m, items)


def _int_or_bool(text: str) -> int | bool:
    """Protocol 0 ``INT``: ``01``/``00`` are True/False, anything else a decimal."""
    return {"01": True, "00": False}[text] if text in ("01", "00") else _int_text(text, "INT")


def _newobj(m: PickleMachine) -> None:
    args = m.pop()
    _push(m, m.new_object(m.pop(), args))


def _newobj_ex(m: PickleMachine) -> None:
    m.pop()  # kwargs
    _newobj(m)


def _refuse_call(name: str):
    def op(m: PickleMachine) -> None:
        raise UnsafePickleError(f"refused to load — the {name} opcode is not allowed in a weights file")

    return op


_OPS: dict[int, Any] = {
    ord(k): v
    for k, v in {
        b"\x80": lambda m: m.take(1),  # PROTO
        b"\x95": lambda m: m.take(8),  # FRAME (frames are only a read-ahead hint)
        b".": _stop,
        b"(": lambda m: m.marks.append(len(m.stack)),
        b"0": lambda m: m.pop(),
        b"1": lambda m: m.pop_mark(),
        b"2": lambda m: _push(m, m.top()),
        b"N": lambda m: _push(m, None),
        b"\x88": lambda m: _push(m, True),
        b"\x89": lambda m: _push(m, False),
        b"I": lambda m: _push(m, _int_or_bool(m.line())),
        b"J": lambda m: _push(m, m.unpack("<i")),
        b"K": lambda m: _push(m, m.unpack("<B")),
        b"M": lambda m: _push(m, m.unpack("<H")),
        b"L": lambda m: _push(m, _int_text(m.line(), "LONG")),
        b"\x8a": lambda m: _long_bytes(m, m.unpack("<B")),
        b"\x8b": lambda m: _long_bytes(m, m.unpack("<i")),
        b"F": lambda m: _push(m, float(_float_text(m.line()))),
        b"G": lambda m: _push(m, m.unpack(">d")),
        b"T": lambda m: _push(m, bytes(m.take(m.unpack("<i"))).decode("latin1")),  # BINSTRING (py2 str)
        b"U": lambda m: _push(m, bytes(m.take(m.unpack("<B"))).decode("latin1")),  # SHORT_BINSTRING
        b"V": lambda m: _push(m, m.line().encode("latin1").decode("raw-unicode-escape")),  # UNICODE
        b"X": lambda m: _push(m, m.text(m.unpack("<I"))),
        b"\x8c": lambda m: _push(m, m.text(m.unpack("<B"))),
        b"\x8d": lambda m: _push(m, m.text(m.unpack("<Q"))),
        b"B": lambda m: _push(m, m.take(m.unpack("<I"))),
        b"C": lambda m: _push(m, m.take(m.unpack("<B"))),
        b"\x8e": lambda m: _push(m, m.take(m.unpack("<Q"))),
        b"\x96": lambda m: _push(m, m.take(m.unpack("<Q"))),  # BYTEARRAY8
        b"]": lambda m: _push(m, []),
        b"a": lambda m: _appends(m, [m.pop()]),
        b"e": lambda m: _appends(m, m.pop_mark()),
        b"l": lambda m: _push(m, m.pop_mark()),
        b")": lambda m: _push(m, ()),
        b"t": lambda m: _push(m, tuple(m.pop_mark())),
        b"\x85": _tuple_n(1),
        b"\x86": _tuple_n(2),
        b"\x87": _tuple_n(3),
        b"}": lambda m: _push(m, {}),
        b"d": _dict,
        b"s": lambda m: _setitems(m, [*reversed([m.pop(), m.pop()])]),
        b"u": lambda m: _setitems(m, m.pop_mark()),
        b"c": _global,
        b"\x93": _stack_global,
        b"R": _reduce,
        b"b": _build,
        b"p": lambda m: _memo_put(m, _int_text(m.line(), "PUT")),
        b"q": lambda m: _memo_put(m, m.unpack("<B")),
        b"r": lambda m: _memo_put(m, m.unpack("<I")),
        b"\x94": lambda m: _memo_put(m, len(m.memo)),
        b"g": lambda m: _memo_get(m, _int_text(m.line(), "GET")),
        b"h": lambda m: _memo_get(m, m.unpack("<B")),
        b"j": lambda m: _memo_get(m, m.unpack("<I")),
        b"P": lambda m: _push(m, m.persistent_load(m.line())),
        b"Q": lambda m: _push(m, m.persistent_load(m.pop())),
        b"i": _refuse_call("INST"),
        b"o": _refuse_call("OBJ"),
        b"\x81": _newobj,
        b"\x92": _newobj_ex,
        b"\x82": _refuse_call("EXT1"),
        b"\x83": _refuse_call("EXT2"),
        b"\x84": _refuse_call("EXT4"),
        b"\x97": _refuse_call("NEXT_BUFFER"),
        b"\x98": _refuse_call("READONLY_BUFFER"),
    }.items()
}


def _float_text(text: str) -> str:
    if len(text) > 40:
        raise MalformedPickleError("FLOAT argument too long")
    try:
        float(text)
    except ValueError:
        raise MalformedPickleError(f"FLOAT argument {text!r} is not a number") from None
    return text
