"""Fuzzing the request codecs — OIP REST (JSON + binary tensors), OIP gRPC (protobuf), PaddleServing — and
the parameter checks: any bytes -> a request or the server's own ``BadRequest``; no other exception, no
crash, memory bounded (tests/fuzzing.py runs each target under an address-space cap)."""

from __future__ import annotations

import contextlib
import json
import math

from hypothesis import given
from hypothesis import strategies as st

from res2net.serve.errors import BadRequest
from res2net.serve.oip import NUMPY_DTYPES, parse_rest_request, parse_timeout_s, parse_top_k, wants_binary
from res2net.serve.oip_grpc import decode_grpc_message, parse_grpc_request
from res2net.serve.paddle import parse_paddle_request
from res2net.serve.proto import grpc_predict_v2_pb2 as pb
from res2net.serve.service import ALL_OUTPUTS
from tests.fuzzing import run_fuzz_target

TRICKY = ["²", "١٢", " 7 ", "-1", "1e400", "9" * 30, "", "image", "input", "BYTES", "FP32"]
HUGE_DIMS = [0, 2**31, 2**62, 2**63 - 1, 2**70]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities included
    st.text(max_size=12),
    st.sampled_from(TRICKY),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
datatypes = st.sampled_from([*NUMPY_DTYPES, "BYTES", "FP8", ""]) | json_values
shapes = st.lists(st.integers(-2, 6) | st.sampled_from(HUGE_DIMS), max_size=5) | json_values
numbers = st.lists(st.integers(-(2**65), 2**65) | st.floats(), max_size=24)


def _maybe(strategy):
    return strategy | json_values


inputs = st.fixed_dictionaries(
    {},
    optional={
        "name": _maybe(st.sampled_from(["image", "input"])),
        "datatype": datatypes,
        "shape": shapes,
        "data": _maybe(numbers | st.lists(st.sampled_from(["AAAA", "@@", "iVBORw0KGgo="]), max_size=3)),
        "parameters": _maybe(
            st.fixed_dictionaries(
                {}, optional={"binary_data_size": _maybe(st.integers(-4, 64)), "shared_memory_region": json_values}
            )
        ),
    },
)
outputs = st.fixed_dictionaries(
    {},
    optional={
        "name": _maybe(st.sampled_from(ALL_OUTPUTS)),
        "parameters": _maybe(
            st.fixed_dictionaries({}, optional={"classification": json_values, "binary_data": json_values})
        ),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "inputs": _maybe(st.lists(inputs, max_size=3)),
        "outputs": _maybe(st.lists(outputs, max_size=3)),
        "parameters": _maybe(
            st.fixed_dictionaries(
                {}, optional={"top_k": json_values, "timeout": json_values, "binary_data_output": json_values}
            )
        ),
    },
)


@st.composite
def near_valid_inputs(draw) -> tuple[dict, int]:
    """An input a real client could send, but for one edge: zero or huge dimensions, out-of-range numbers,
    and data or binary sizes that (usually) fit the shape. Returns the spec and its binary byte count."""
    shape = draw(st.lists(st.sampled_from([0, 1, 2, 3, *HUGE_DIMS]), max_size=4))
    datatype = draw(st.sampled_from([*NUMPY_DTYPES, "BYTES"]))
    count = math.prod(shape)
    n = count if count <= 12 else draw(st.integers(0, 12))
    spec = {"name": draw(st.sampled_from(["input", "image"])), "datatype": datatype, "shape": shape}
    if draw(st.booleans()):
        element = st.sampled_from(["AAAA", "²"]) if datatype == "BYTES" else st.integers(-300, 300) | st.floats()
        element = element | st.sampled_from([2**64, -(2**63) - 1, 1e39])
        spec["data"] = draw(st.lists(element, min_size=n, max_size=n))
        return spec, 0
    itemsize = 4 + 2 if datatype == "BYTES" else NUMPY_DTYPES[datatype].itemsize
    size = n * itemsize if draw(st.booleans()) else draw(st.integers(0, 64))
    spec["parameters"] = {"binary_data_size": size}
    return spec, size


@st.composite
def rest_bodies(draw) -> tuple[bytes, str | None]:
    kind = draw(st.sampled_from(["deep", "bytes", "random_doc", "near_valid", "near_valid"]))
    if kind == "deep":  # nesting past the interpreter's recursion limit, cheaply
        depth = draw(st.sampled_from([900, 5000, 100_000]))
        return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}", None
    if kind == "bytes":
        return draw(st.binary(max_size=200)), draw(st.none() | st.sampled_from(TRICKY))
    if kind == "random_doc":
        header = json.dumps(draw(documents)).encode()
        binary = draw(st.binary(max_size=64))
    else:
        specs = draw(st.lists(near_valid_inputs(), min_size=1, max_size=2))
        doc = {
            "inputs": [spec for spec, _ in specs],
            **draw(
                st.fixed_dictionaries(
                    {}, optional={"parameters": json_values, "outputs": st.lists(outputs, max_size=2)}
                )
            ),
        }
        header = json.dumps(doc).encode()
        binary = bytes(draw(st.binary(min_size=sum(n for _, n in specs), max_size=sum(n for _, n in specs))))
        if not binary:
            return header, None
    length = draw(st.sampled_from(["exact", "exact", "random"]))
    value = str(len(header)) if length == "exact" else draw(st.sampled_from(TRICKY) | st.integers().map(str))
    return header + binary, value


def _check_parameters(req) -> None:
    """What the service validates from a parsed request before any model work."""
    with contextlib.suppress(BadRequest):
        parse_top_k(req.parameters.get("top_k"), 1000)
    with contextlib.suppress(BadRequest):
        parse_timeout_s(req.parameters.get("timeout"))
    for o in req.outputs or []:
        with contextlib.suppress(BadRequest):
            parse_top_k(o.parameters.get("classification"), 1000, "classification")
        wants_binary(o.parameters, req)


@given(rest_bodies())
def fuzz_rest(case: tuple[bytes, str | None]) -> None:
    body, header_length = case
    try:
        req = parse_rest_request(body, header_length, "res2net_tiny", "")
    except BadRequest as e:
        assert e.status == 400
        return
    _check_parameters(req)


@st.composite
def grpc_requests(draw) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=200))
    msg = pb.ModelInferRequest(model_name="res2net_tiny", id=draw(st.text(max_size=8)))
    for _ in range(draw(st.integers(0, 2))):
        t = msg.inputs.add(
            name=draw(st.sampled_from(["image", "input", "x"])),
            datatype=draw(st.sampled_from([*NUMPY_DTYPES, "BYTES", "?"])),
        )
        t.shape.extend(draw(st.lists(st.integers(-2, 6) | st.sampled_from([2**31, 2**62, 2**63 - 1]), max_size=5)))
        field = draw(
            st.sampled_from(
                ["fp32_contents", "int_contents", "uint_contents", "int64_contents", "bytes_contents", "raw"]
            )
        )
        if field == "raw":
            msg.raw_input_contents.append(draw(st.binary(max_size=64)))
        elif field == "bytes_contents":
            t.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
        elif field == "fp32_contents":
            t.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
        elif field == "int64_contents":
            t.contents.int64_contents.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8)))
        else:
            getattr(t.contents, field).extend(draw(st.lists(st.integers(0, 2**31 - 1), max_size=8)))
    for key in draw(st.lists(st.sampled_from(["top_k", "timeout", "binary_data_output"]), max_size=3)):
        p = msg.parameters[key]
        kind = draw(st.sampled_from(["string_param", "int64_param", "bool_param"]))
        value = {
            "string_param": st.sampled_from(TRICKY),
            "int64_param": st.integers(-(2**63), 2**63 - 1),
            "bool_param": st.booleans(),
        }
        setattr(p, kind, draw(value[kind]))
    data = bytearray(msg.SerializeToString())
    for _ in range(draw(st.integers(0, 3))):  # then a few byte flips
        if data:
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@given(grpc_requests())
def fuzz_grpc(data: bytes) -> None:
    try:
        req = parse_grpc_request(decode_grpc_message(data, pb.ModelInferRequest))
    except BadRequest as e:
        assert e.status == 400
        return
    _check_parameters(req)


@given(
    st.one_of(
        documents.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=100),
        json_values.map(lambda v: json.dumps({"key": v, "value": v}).encode()),
    )
)
def fuzz_paddle(body: bytes) -> None:
    try:
        keys, images = parse_paddle_request(body)
    except BadRequest:
        return
    assert len(keys) == len(images) and all(isinstance(b, bytes) for b in images)


def test_fuzz_oip_rest_codec():
    run_fuzz_target("tests.serve.test_oip_fuzz:fuzz_rest")


def test_fuzz_oip_grpc_codec():
    run_fuzz_target("tests.serve.test_oip_fuzz:fuzz_grpc")


def test_fuzz_paddle_codec():
    run_fuzz_target("tests.serve.test_oip_fuzz:fuzz_paddle")
