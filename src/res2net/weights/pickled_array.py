"""Inert placeholders for the numpy objects a weights pickle describes, and the checks on them.

Handing numpy the file's own arguments can segfault the process (``numpy.dtype`` BUILD with a
crafted state), so the pickle machine (:mod:`res2net.weights.pickle_machine`) resolves the numpy
globals to *names* and calls :func:`call_numpy`, which builds these placeholders: only plain
numeric dtypes, and array data whose length is exactly shape x itemsize (stride-0 or uninitialised
arrays cannot be expressed). Nothing is allocated until :meth:`PickledArray.to_numpy`.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_NDIM = 32
# Plain numeric dtypes (numpy type codes without byte order). Everything else - object, str,
# void/structured, datetime, longdouble, complex - is refused: weights never need it.
NUMERIC_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})

# What the allowed numpy globals resolve to (see res2net.weights.pickle_machine.ALLOWED_GLOBALS).
RECONSTRUCT, FROMBUFFER, NDARRAY, DTYPE, SCALAR, ENCODE = (
    "numpy ndarray reconstruct",
    "numpy frombuffer",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy scalar",
    "_codecs.encode",
)
NUMPY_CALLS = frozenset({RECONSTRUCT, FROMBUFFER, DTYPE, SCALAR, ENCODE})


class MalformedPickleError(ValueError):
    """The bytes are not a well-formed weights pickle (truncated, corrupt or hostile)."""


class UnsafePickleError(MalformedPickleError):
    """The file asked to import or call something a weights file never needs."""


@dataclass(frozen=True)
class Global:
    """A resolved global: only its name. Calling it is done by the pickle machine's REDUCE, never Python."""

    name: str


class PendingDtype:
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
        if not isinstance(dtype, PendingDtype):
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


def call_numpy(name: str, args: tuple, consume: Callable[[Any], None]) -> Any:
    """What REDUCE of the numpy global ``name`` (one of :data:`NUMPY_CALLS`) on ``args`` builds, checked.

    ``consume`` marks a data buffer as used, so one buffer cannot back two arrays.
    """
    if name == RECONSTRUCT:
        if len(args) != 3 or args[0] != Global(NDARRAY):
            raise UnsafePickleError(f"refused to load — _reconstruct{short_repr(args)} is not a plain ndarray")
        return PickledArray()  # filled by BUILD
    if name == FROMBUFFER:
        if len(args) != 4 or args[3] not in ("C", "F"):
            raise MalformedPickleError(f"numpy _frombuffer{short_repr(args)} is not (data, dtype, shape, order)")
        arr = PickledArray()
        arr.fill(args[2], args[1], args[3] == "F", args[0], consume)
        return arr
    if name == DTYPE:
        if not (1 <= len(args) <= 3 and isinstance(args[0], str)):
            raise MalformedPickleError(f"dtype{short_repr(args)} is not a dtype description")
        if args[0] not in NUMERIC_DTYPES:
            raise MalformedPickleError(
                f"dtype {short_repr(args[0])} is not a plain numeric type; weights never need it"
            )
        return PendingDtype(args[0])
    if name == SCALAR:
        if (
            len(args) != 2
            or not isinstance(args[0], PendingDtype)
            or not isinstance(args[1], (bytes, bytearray, memoryview))
        ):
            raise MalformedPickleError(f"numpy scalar{short_repr(args)} is not (dtype, bytes)")
        dt = args[0].to_numpy()
        if len(args[1]) != dt.itemsize:
            raise MalformedPickleError(f"numpy scalar of {dt} needs {dt.itemsize} bytes, got {len(args[1])}")
        return np.frombuffer(bytes(args[1]), dt)[0]
    if name == ENCODE:
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise UnsafePickleError(f"refused to load — _codecs.encode{short_repr(args)} is not latin1 text")
        consume(args[0])
        try:
            return bytearray(args[0], "latin1")  # writable: the array can be a view of it, no second copy
        except UnicodeEncodeError:
            raise MalformedPickleError("latin1-encoded array data holds characters above U+00FF") from None
    raise UnsafePickleError(f"refused to load — {name} cannot be called")
