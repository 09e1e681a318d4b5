"""Hostile ``.pdparams`` pickles (issue 11, items 1-4): each is refused with a WeightsError, in bounded memory.

Every input is assembled here by hand (tests/weights/pickle_ops.py) or written by numpy itself, and
is loaded in a child process under an address-space cap (tests/weights/reader_process.py), so a
segfault or a memory bomb fails the test instead of killing the run.
"""

import pickle
import struct

import numpy as np
import pytest

from res2net.weights import WeightsError, read_weights
from res2net.weights.safe_pickle import MAX_OPCODES, PickledArray, safe_load_pickle
from tests.weights import pickle_ops as op
from tests.weights.reader_process import assert_refused_cleanly

OUT_W = op.text("out.weight")


def _refused(reader, tmp_path, name: str, payload: bytes, match: str, max_rss_mb: float = 64.0) -> None:
    path = tmp_path / f"{name}.pdparams"
    path.write_bytes(payload)
    assert_refused_cleanly(reader.load(path), path, match=match, max_rss_mb=max_rss_mb)


# --------------------------------------------------------------------------- item 1: numpy never sees file state
@pytest.mark.parametrize(
    "name, state",
    [
        # the 69-byte crash: numpy.dtype('f4', False, True) BUILT with (3, '<', None, -1, -1, 0) segfaults numpy
        ("segv_state", op.tup(op.integer(3), op.text("<"), op.NONE, op.integer(-1), op.integer(-1), op.integer(0))),
        (
            "fields_state",
            op.tup(
                op.integer(3),
                op.text("|"),
                op.NONE,
                op.tup(op.text("a")),
                op.EMPTY_DICT,
                op.integer(4),
                op.integer(1),
                op.integer(16),
            ),
        ),  # fmt: skip
        (
            "bad_byte_order",
            op.tup(*[op.integer(3), op.text("?")] + [op.NONE] * 3 + [op.integer(-1)] * 2 + [op.integer(0)]),
        ),
        ("not_a_tuple", op.integer(7)),
    ],
)
def test_dtype_build_state_never_reaches_numpy(reader, tmp_path, name, state):
    payload = op.state_dict((OUT_W, op.dtype("f4", state)))
    _refused(reader, tmp_path, name, payload, match="dtype 'f4' has an unexpected state")


# --------------------------------------------------------------------------- item 2: memory bombs from tiny files
def test_stride0_array_needs_its_bytes(reader, tmp_path):
    # numpy would broadcast 4 bytes into a 1 GiB "array"; here the data must be shape x itemsize.
    _refused(reader, tmp_path, "stride0", op.state_dict((OUT_W, op.ndarray((2**28,), op.data(b"\0" * 4)))), "needs")
    two_d = op.state_dict((OUT_W, op.ndarray((1000, 2048), op.data(b""))))
    _refused(reader, tmp_path, "stride0_2d", two_d, match="needs 8192000 bytes of data, the file gives 0")


def test_huge_memo_index_costs_nothing(reader, tmp_path):
    payload = op.PROTO2 + op.EMPTY_DICT + op.put(2**25) + op.STOP  # 9 bytes; CPython's memo grows to 2**25 slots
    assert len(payload) == 9
    _refused(reader, tmp_path, "long_binput", payload, match="are not PaddleClas Res2Net names", max_rss_mb=16)


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d", b"\x96"])  # BINBYTES8, BINUNICODE8, BYTEARRAY8
def test_declared_lengths_are_checked_before_allocation(reader, tmp_path, opcode):
    payload = op.PROTO4 + opcode + struct.pack("<Q", 2**62) + b"\0" * 16
    _refused(reader, tmp_path, f"len_{opcode.hex()}", payload, match="runs past the end", max_rss_mb=16)


def test_memo_shared_big_param_slices_are_refused(reader, tmp_path):
    a = np.zeros(2**18, np.float32)  # 1 MiB, referenced 64 times through the memo
    names = [f"out.weight@@.{i}" for i in range(64)]
    state = {n: a for n in names}
    state["UnpackBigParamInfor@@"] = {"out.weight": {"OriginShape": [64, 2**18], "slices": names}}
    payload = pickle.dumps(state, protocol=4)
    assert len(payload) < 2**21
    _refused(reader, tmp_path, "shared_slices", payload, match="same array")


def test_memo_shared_data_buffers_are_refused(reader, tmp_path):
    first = op.ndarray((4,), op.data(b"\0" * 16) + op.put(900))
    second = op.ndarray((4,), op.get(900))  # same bytes object, second array
    payload = op.state_dict((op.text("a"), first), (op.text("b"), second))
    _refused(reader, tmp_path, "shared_data", payload, match="one data buffer is used for two arrays")
    # protocol 2 spells data as _codecs.encode(str, 'latin1'): the same str twice would be two copies
    encode = op.glob("_codecs", "encode")
    p2_first = op.ndarray((4,), encode + op.tup(op.text("\0" * 16) + op.put(901), op.text("latin1")) + op.REDUCE)
    p2_second = op.ndarray((4,), encode + op.tup(op.get(901), op.text("latin1")) + op.REDUCE)
    payload = op.state_dict((op.text("a"), p2_first), (op.text("b"), p2_second))
    _refused(reader, tmp_path, "shared_encode", payload, match="one data buffer is used for two arrays")


def test_opcode_count_is_capped(reader, tmp_path):
    payload = op.PROTO2 + b"N0" * (MAX_OPCODES // 2 + 1) + op.EMPTY_DICT + op.STOP
    _refused(reader, tmp_path, "many_ops", payload, match=f"more than {MAX_OPCODES} opcodes")


# --------------------------------------------------------------------------- item 3: one WeightsError for all of it
@pytest.mark.parametrize(
    "name, key",
    [
        ("int", op.integer(1)),
        ("none", op.NONE),
        ("bytes", op.data(b"k")),
        ("tuple", op.tup(op.text("a"))),
        ("nested_tuple", op.integer(1) + b"\x85" * 1_000_000),  # hashing it overflows CPython's C stack
    ],
)
def test_non_string_keys(reader, tmp_path, name, key):
    payload = op.state_dict((key, op.ndarray((1,), op.data(b"\0" * 4))))
    match = {"bytes": "dict key of type memoryview", "tuple": "dict key of type tuple"}.get(
        name, "dict key of type tuple" if name == "nested_tuple" else "weights are named by strings"
    )
    _refused(reader, tmp_path, f"key_{name}", payload, match=match)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.array([1, None], dtype=object), "dtype 'O8' is not a plain numeric type"),
        (np.array(["ab", "c"]), "dtype 'U2' is not a plain numeric type"),
        (np.zeros(2, "V4"), "dtype 'V4' is not a plain numeric type"),
        (np.zeros(2, np.longdouble), "is not a plain numeric type"),
        (np.zeros(2, np.complex64), "dtype 'c8' is not a plain numeric type"),
        (np.zeros(2, [("a", "f4")]), "dtype 'V4' is not a plain numeric type"),
        (np.zeros(2, "M8[s]"), "dtype 'M8' is not a plain numeric type"),
    ],
    ids=["object", "str", "void", "longdouble", "complex", "structured", "datetime"],
)
def test_non_numeric_arrays_written_by_numpy(reader, tmp_path, array, match):
    for protocol in (2, 4):
        payload = pickle.dumps({"out.weight": array}, protocol=protocol)
        _refused(reader, tmp_path, f"{array.dtype.kind}{protocol}", payload, match=match)


@pytest.mark.parametrize(
    "info, match",
    [
        ([1, 2], "UnpackBigParamInfor@@ is a list, not a dict"),
        ({"out.weight": "x"}, "is not a name -> {OriginShape, slices} entry"),
        ({"out.weight": {"OriginShape": "ab", "slices": ["s0"]}}, "OriginShape'] is not a list"),
        ({"out.weight": {"OriginShape": [-1], "slices": ["s0"]}}, "is not made of non-negative integers"),
        ({"out.weight": {"OriginShape": [4], "slices": "s0"}}, "is not a non-empty list of entry names"),
        ({"out.weight": {"OriginShape": [4], "slices": [3]}}, "is not a non-empty list of entry names"),
        ({"out.weight": {"OriginShape": [4], "slices": ["nope"]}}, "which is missing (or listed twice)"),
        ({"out.weight": {"OriginShape": [4], "slices": ["s0", "s0"]}}, "which is missing (or listed twice)"),
        ({"out.weight": {"OriginShape": [2**40, 2**40], "slices": ["s0"]}}, "hold 4 values"),
        ({"out.weight": {"slices": ["s0"]}}, "OriginShape'] is not a list"),
    ],
)
def test_malformed_big_param_info(reader, tmp_path, info, match):
    payload = pickle.dumps({"s0": np.zeros(4, np.float32), "UnpackBigParamInfor@@": info}, protocol=4)
    _refused(reader, tmp_path, "big_info", payload, match=match)


@pytest.mark.parametrize(
    "name, payload, match",
    [
        ("nested_lists", op.PROTO2 + b"(" * 50_000 + b"l" * 50_000 + op.STOP, "expected a dict of arrays, found list"),
        ("nested_value", op.state_dict((OUT_W, b"(" * 50_000 + b"l" * 50_000)), "entry 'out.weight' is a list"),
        ("truncated", op.state_dict((OUT_W, op.ndarray((4,), op.data(b"\0" * 16))))[:-20], "truncated"),
        ("stack_underflow", op.PROTO2 + b"R.", "stack underflow"),
        ("setitems_on_int", op.PROTO2 + op.integer(3) + op.MARK + op.SETITEMS + op.STOP, "SETITEM(S) on a int"),
        ("get_unset", op.PROTO2 + op.get(5) + op.STOP, "memo entry 5 read before it was written"),
        ("huge_long", op.PROTO2 + b"\x8b" + struct.pack("<i", 2**30) + op.STOP, "too large"),
        ("long_text", op.PROTO2 + b"L" + b"9" * 5000 + b"L\n.", "no end of line within 256 bytes"),
        ("bad_utf8", op.PROTO2 + b"X\x02\0\0\0\xff\xfe.", "not valid UTF-8"),
        ("build_on_dict", op.PROTO2 + op.EMPTY_DICT + op.EMPTY_DICT + op.BUILD + op.STOP, "BUILD on a dict"),
        ("reduce_on_str", op.PROTO2 + op.text("x") + b")" + op.REDUCE + op.STOP, "REDUCE on 'x'"),
        ("newobj", op.PROTO2 + op.glob("collections", "OrderedDict") + b")\x81.", "NEWOBJ opcode is not allowed"),
        ("persistent", op.PROTO2 + b"Pabc\n.", "persistent references are not allowed"),
        ("ext", op.PROTO2 + b"\x82\x01.", "EXT1 opcode is not allowed"),
        (
            "codec",
            op.state_dict((OUT_W, op.glob("_codecs", "encode") + op.tup(op.text("x"), op.text("zlib")) + op.REDUCE)),
            "is not latin1 text",
        ),  # fmt: skip
        (
            "reconstruct_subclass",
            op.PROTO2
            + op.glob("numpy.core.multiarray", "_reconstruct")
            + op.tup(op.glob("numpy", "dtype"), op.tup(op.integer(0)), op.data(b"b"))
            + op.REDUCE
            + op.STOP,
            "is not a plain ndarray",
        ),  # fmt: skip
        ("unknown_opcode", op.PROTO2 + b"\xff.", "is not one a weights pickle uses"),
        ("no_stop", op.PROTO2 + op.EMPTY_DICT, "ends before the pickle's STOP"),
        (
            "double_build",
            op.state_dict(
                (
                    OUT_W,
                    op.ndarray((1,), op.data(b"\0" * 4))
                    + op.tup(op.integer(1), op.tup(op.integer(1)), op.dtype(), op.FALSE, op.data(b"\0" * 4))
                    + op.BUILD,
                )
            ),
            "BUILT twice",
        ),  # fmt: skip
        ("text_data", op.state_dict((OUT_W, op.ndarray((1,), op.text("abcd")))), "ndarray data is text"),
        ("list_data", op.state_dict((OUT_W, op.ndarray((1,), b"]"))), "(object array)"),
        ("bad_shape", op.state_dict((OUT_W, op.ndarray((-1,), op.data(b"")))), " non-negative integers"),
    ],
)
def test_malformed_pickles(reader, tmp_path, name, payload, match):
    _refused(reader, tmp_path, name, payload, match=match)


# --------------------------------------------------------------------------- item 4: no uninitialised memory
def test_reduce_without_build_is_refused(reader, tmp_path):
    payload = op.state_dict((OUT_W, op.ndarray((0,), None)))  # numpy would hand back np.empty((0,)) ... or more
    _refused(reader, tmp_path, "no_build", payload, match="REDUCE without BUILD")


# --------------------------------------------------------------------------- the reader still reads what numpy writes
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_of_every_numeric_dtype_roundtrip(tmp_path, protocol):
    arrays = {
        f"a{i}": np.arange(6).astype(dt).reshape(2, 3)
        for i, dt in enumerate(["f4", ">f4", "f8", "f2", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "?"])
    }
    arrays["fortran"] = np.asfortranarray(np.arange(6, dtype="f4").reshape(2, 3))
    arrays["empty"] = np.zeros((0, 3), "f4")
    arrays["scalar"] = np.float32(2.5)  # a numpy scalar: read, then refused as "not an array" by the loader
    path = tmp_path / "w.pdparams"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    obj = safe_load_pickle(path)
    assert obj.pop("scalar") == np.float32(2.5)
    for k, a in arrays.items():
        if k != "scalar":
            assert isinstance(obj[k], PickledArray) and np.array_equal(obj[k].to_numpy(), a), k
    with pytest.raises(WeightsError, match="entry 'scalar' is a float32, not an array"):
        read_weights(path)
