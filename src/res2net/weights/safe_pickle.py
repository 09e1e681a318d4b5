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
import math
import reprlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Every opcode costs at most one stack/memo reference; this caps a file's work at ~1 s. A
# Res2Net-200 .pdparams uses ~60,000 opcodes.
MAX_OPCODES = 2_000_000
MAX_NDIM = 32
# Plain numeric dtypes (numpy type codes without byte order). Everything else - object, str,
# void/structured, datetime, longdouble, complex - is refused: weights never need it.
NUMERIC_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})

_RECONSTRUCT, _FROMBUFFER, _NDARRAY, _DTYPE, _SCALAR, _ENCODE, _ORDERED_DICT, _BYTES = (
    "numpy ndarray reconstruct",
    "numpy frombuffer",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy scalar",
    "_codecs.encode",
    "collections.OrderedDict",
    "bytes",
)
_ALLOWED: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("_codecs", "encode"): _ENCODE,
    ("collections", "OrderedDict"): _ORDERED_DICT,
    ("__builtin__", "bytes"): _BYTES,  # protocol 2 writes b"" as bytes()
    ("builtins", "bytes"): _BYTES,
}


class MalformedPickleError(ValueError):
    """The bytes are not a well-formed weights pickle (truncated, corrupt or hostile)."""


class UnsafePickleError(MalformedPickleError):
    """The file asked to import or call something a weights file never needs."""


@dataclass(frozen=True)
class _Global:
    """A resolved global: only its name. Calling it is done by this module's REDUCE, never Python."""

    name: str


class _PendingDtype:
    """``numpy.dtype(code, align, copy)`` awaiting its ``BUILD`` (byte order)."""

    __slots__ = ("code", "order")

    def __init__(self, code: str) -> None:
        self.code, self.order = code, "="

    def set_state(self, state: Any) -> None:
        # numpy's state: (version, byteorder, subdescr, names, fields, elsize, alignment, flags[, metadata])
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise MalformedPickleError(f"dtype {self.code!r} has an unexpected state {short_repr(state)}")
        order, subdescr, names, fields = state[1:5]
        if order not in ("<", ">", "|", "=") or (subdescr, names, fields) != (None, None, None):
            raise MalformedPickleError(f"dtype {self.code!r} has an unexpected state {short_repr(state)}")
        self.order = order

    def to_numpy(self) -> np.dtype:
        dt = np.dtype(self.code)  # only codes in NUMERIC_DTYPES reach here
        return dt if self.order in ("|", "=") or dt.itemsize == 1 else dt.newbyteorder(self.order)


class PickledArray:
    """An ndarray described by a pickle: shape, dtype and the file bytes that hold its data.

    ``to_numpy()`` makes the array (a view of the file's bytes when they are writable and aligned,
    one copy otherwise); nothing is allocated before that, so callers can check the shape first.
    """

    __slots__ = ("_data", "_fortran", "dtype", "shape")

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None  # None until BUILD
        self.dtype: np.dtype | None = None
        self._data: memoryview | bytes | None = None
        self._fortran = False

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape or ()) * (self.dtype.itemsize if self.dtype is not None else 0)

    def set_state(self, state: Any, consume: Callable[[Any], None]) -> None:
        if self.shape is not None:
            raise MalformedPickleError("an ndarray was BUILT twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise MalformedPickleError(f"ndarray state is not a 4/5-tuple: {short_repr(state)}")
        if len(state) == 5:
            if state[0] != 1:
                raise MalformedPickleError(f"unsupported ndarray state version {short_repr(state[0])}")
            state = state[1:]
        self.fill(*state, consume)

    def fill(self, shape: Any, dtype: Any, fortran: Any, data: Any, consume: Callable[[Any], None]) -> None:
        """Check and take shape, dtype, order and data (from BUILD, or from numpy's protocol-5 ``_frombuffer``)."""
        if not (isinstance(shape, tuple) and len(shape) <= MAX_NDIM):
            raise MalformedPickleError(f"ndarray shape is not a tuple of at most {MAX_NDIM} sizes: {short_repr(shape)}")
        if not all(type(n) is int and n >= 0 for n in shape):
            raise MalformedPickleError(f"ndarray shape {short_repr(shape)} is not made of non-negative integers")
        if not isinstance(dtype, _PendingDtype):
            raise MalformedPickleError(f"ndarray dtype is a {type(dtype).__name__}, not a numpy dtype")
        if type(fortran) is not bool:
            raise MalformedPickleError("ndarray order flag is not a bool")
        if isinstance(data, str):
            raise MalformedPickleError("ndarray data is text; expected bytes (a Python 2 pickle read as text?)")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            kind = "a list of Python objects (object array)" if isinstance(data, list) else type(data).__name__
            raise MalformedPickleError(f"ndarray data is {kind}; only numeric arrays are allowed")
        consume(data)
        np_dtype = dtype.to_numpy()
        need = math.prod(shape) * np_dtype.itemsize
        if len(data) != need:
            raise MalformedPickleError(
                f"ndarray of shape {shape} and dtype {np_dtype} needs {need} bytes of data, the file gives {len(data)}"
            )
        self.shape, self.dtype, self._data, self._fortran = shape, np_dtype, data, fortran

    def to_numpy(self) -> np.ndarray:
        if self.shape is None:
            raise MalformedPickleError("ndarray was never filled")
        writable = isinstance(self._data, bytearray) or (isinstance(self._data, memoryview) and not self._data.readonly)
        data = self._data if writable else bytearray(self._data)
        arr = np.frombuffer(data, self.dtype).reshape(self.shape, order="F" if self._fortran else "C")
        if not self.dtype.isnative:
            return arr.astype(self.dtype.newbyteorder("="))
        return arr if arr.flags.aligned else arr.copy()  # pickles place data at any byte offset


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 40, 40, 40


def short_repr(value: Any) -> str:
    """A bounded repr for error messages: file values may be nested 100,000 deep or be megabytes long."""
    return _REPR.repr(value)


class _Machine:
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
    def find_global(self, module: str, name: str) -> _Global:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"refused to load — the file references {module}.{name}, which a "
                "weights file never needs. It may be malicious; nothing from it was executed."
            )
        return _Global(target)

    def reduce(self, func: Any, args: Any) -> Any:
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise MalformedPickleError(f"REDUCE on {short_repr(func)} with {type(args).__name__} arguments")
        if func.name == _RECONSTRUCT:
            if len(args) != 3 or args[0] != _Global(_NDARRAY):
                raise UnsafePickleError(f"refused to load — _reconstruct{short_repr(args)} is not a plain ndarray")
            arr = PickledArray()
            self.arrays.append(arr)
            return arr
        if func.name == _FROMBUFFER:
            if len(args) != 4 or args[3] not in ("C", "F"):
                raise MalformedPickleError(f"numpy _frombuffer{short_repr(args)} is not (data, dtype, shape, order)")
            arr = PickledArray()
            arr.fill(args[2], args[1], args[3] == "F", args[0], self.consume)
            self.arrays.append(arr)
            return arr
        if func.name == _BYTES:
            if args:
                raise MalformedPickleError(f"bytes{short_repr(args)}: expected no arguments")
            return b""
        if func.name == _DTYPE:
            if not (1 <= len(args) <= 3 and isinstance(args[0], str)):
                raise MalformedPickleError(f"dtype{short_repr(args)} is not a dtype description")
            if args[0] not in NUMERIC_DTYPES:
                raise MalformedPickleError(
                    f"dtype {short_repr(args[0])} is not a plain numeric type; weights never need it"
                )
            return _PendingDtype(args[0])
        if func.name == _SCALAR:
            if (
                len(args) != 2
                or not isinstance(args[0], _PendingDtype)
                or not isinstance(args[1], (bytes, bytearray, memoryview))
            ):
                raise MalformedPickleError(f"numpy scalar{short_repr(args)} is not (dtype, bytes)")
            dt = args[0].to_numpy()
            if len(args[1]) != dt.itemsize:
                raise MalformedPickleError(f"numpy scalar of {dt} needs {dt.itemsize} bytes, got {len(args[1])}")
            return np.frombuffer(bytes(args[1]), dt)[0]
        if func.name == _ENCODE:
            if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
                raise UnsafePickleError(f"refused to load — _codecs.encode{short_repr(args)} is not latin1 text")
            self.consume(args[0])
            try:
                return bytearray(args[0], "latin1")  # writable: the array can be a view of it, no second copy
            except UnicodeEncodeError:
                raise MalformedPickleError("latin1-encoded array data holds characters above U+00FF") from None
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
        elif isinstance(obj, _PendingDtype):
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


def _push(m: _Machine, value: Any) -> None:
    m.stack.append(value)


def _int_text(text: str, what: str) -> int:
    text = text.rstrip("L")
    if len(text) > 40:
        raise MalformedPickleError(f"{what} {text[:20]}... is too long for a weights file")
    try:
        return int(text)
    except ValueError:
        raise MalformedPickleError(f"{what} {text!r} is not an integer") from None


def _long_bytes(m: _Machine, k: int) -> None:
    if k > 16:
        raise MalformedPickleError(f"a {k}-byte integer at byte {m.pos} is too large for a weights file")
    _push(m, int.from_bytes(m.take(k), "little", signed=True))


def _memo_get(m: _Machine, idx: int) -> None:
    if idx not in m.memo:
        raise MalformedPickleError(f"memo entry {idx} read before it was written")
    _push(m, m.memo[idx])


def _memo_put(m: _Machine, idx: int) -> None:
    if idx < 0:
        raise MalformedPickleError(f"negative memo index {idx}")
    m.memo[idx] = m.top()


def _stop(m: _Machine) -> None:  # handled in run(); present so STOP is a known opcode
    raise AssertionError


def _setitems(m: _Machine, items: list[Any]) -> None:
    target = m.top()
    if isinstance(target, _Opaque):  # a dry run's OrderedDict: only the keys matter
        target = {}
    if not isinstance(target, dict):
        raise MalformedPickleError(f"SETITEM(S) on a {type(target).__name__}")
    if len(items) % 2:
        raise MalformedPickleError("SETITEMS with an odd number of items")
    for k, v in zip(items[::2], items[1::2]):
        m.check_key(k)
        target[k] = v


def _appends(m: _Machine, items: list[Any]) -> None:
    target = m.top()
    if isinstance(target, _Opaque):
        return
    if not isinstance(target, list):
        raise MalformedPickleError(f"APPEND(S) on a {type(target).__name__}")
    target.extend(items)


def _tuple_n(n: int):
    def op(m: _Machine) -> None:
        stack = m.stack
        if len(stack) - (m.marks[-1] if m.marks else 0) < n:
            raise MalformedPickleError(f"stack underflow at byte {m.pos}")
        items = tuple(stack[-n:])
        del stack[-n:]
        stack.append(items)

    return op


def _stack_global(m: _Machine) -> None:
    name, module = m.pop(), m.pop()
    if not (isinstance(module, str) and isinstance(name, str)):
        raise MalformedPickleError("STACK_GLOBAL needs two strings")
    _push(m, m.find_global(module, name))


def _global(m: _Machine) -> None:
    module, name = m.line(), m.line()
    _push(m, m.find_global(module, name))


def _reduce(m: _Machine) -> None:
    args = m.pop()
    func = m.pop()
    _push(m, m.reduce(func, args))


def _build(m: _Machine) -> None:
    state = m.pop()
    m.build(state, m.top())


def _dict(m: _Machine) -> None:
    items = m.pop_mark()
    _push(m, {})
    _setitems(m, items)


def _int_or_bool(text: str) -> int | bool:
    """Protocol 0 ``INT``: ``01``/``00`` are True/False, anything else a decimal."""
    return {"01": True, "00": False}[text] if text in ("01", "00") else _int_text(text, "INT")


def _newobj(m: _Machine) -> None:
    args = m.pop()
    _push(m, m.new_object(m.pop(), args))


def _newobj_ex(m: _Machine) -> None:
    m.pop()  # kwargs
    _newobj(m)


def _refuse_call(name: str):
    def op(m: _Machine) -> None:
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
    return _run(_Machine(read_file_buffer(Path(path)) if data is None else data))


def _run(machine: _Machine) -> Any:
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


class _Opaque:
    """Whatever a PyTorch pickle builds (tensors, storages, dtypes): an inert, hashable token."""

    __slots__ = ()


class _StructureScan(_Machine):
    """A dry run of a PyTorch pickle before ``torch.load`` sees it: same bounds, every object opaque.

    PyTorch's weights-only unpickler allocates only what it reads, but it hashes dict keys as it goes,
    and a ~1 MB pickle of tuples nested a million deep then overflows CPython's C stack (SIGSEGV).
    This scan checks lengths, opcode count and keys (scalars, tokens, or flat tuples of them); what
    may be imported is left to PyTorch.
    """

    def find_global(self, module: str, name: str) -> _Opaque:
        return _Opaque()

    def reduce(self, func: Any, args: Any) -> _Opaque:
        if not isinstance(func, _Opaque) or not isinstance(args, tuple):
            raise MalformedPickleError(f"REDUCE on {short_repr(func)} with {type(args).__name__} arguments")
        return _Opaque()

    def build(self, state: Any, obj: Any) -> None:
        if not isinstance(obj, _Opaque):
            raise MalformedPickleError(f"BUILD on a {type(obj).__name__}")

    def __init__(self, buf: bytearray | memoryview, pos: int, storages: dict[Any, int], budget: int) -> None:
        super().__init__(buf, pos)
        self.storages, self.budget = storages, budget

    def persistent_load(self, pid: Any) -> _Opaque:
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
        return _Opaque()

    def new_object(self, cls: Any, args: Any) -> _Opaque:
        return self.reduce(cls, args)

    def check_key(self, key: Any) -> None:
        flat = key if isinstance(key, tuple) and len(key) <= 16 else (key,)
        if not all(isinstance(k, (str, int, float, type(None), _Opaque)) for k in flat):
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
