"""Open Inference Protocol (KServe v2 / Triton) messages, independent of transport.

REST (JSON, plus Triton's *binary tensor data* extension that ``tritonclient.http`` uses by
default) and gRPC (``inference.GRPCInferenceService``) requests are both parsed into
:class:`InferRequest`, answered by the same code, and encoded back from :class:`InferResponse`.
Everything a client sends is validated here with an error that names the tensor and the problem:
whatever the bytes, parsing ends in an :class:`InferRequest` or a :class:`BadRequest` — never another
exception (hostile JSON nesting, 5000-digit integers, ``"²"`` as a number, ``1e400``, shapes such as
``[0, 2**70]`` included; ``tests/serve/test_fuzz_codecs.py`` fuzzes it). The gRPC codec is in
:mod:`res2net.serve.oip_grpc`.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from res2net.serve.errors import BadRequest

# OIP datatype -> numpy dtype (little-endian, as the protocol's raw encoding is).
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BINARY_HEADER = "Inference-Header-Content-Length"
MAX_DIMS = 32  # numpy's own limit is 64
MAX_ELEMENTS = 2**32  # product of a shape's non-zero dimensions: far above any real tensor, far below overflow
MAX_TIMEOUT_US = 2**63 - 1  # the protocol's int64 microseconds
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is True but int("²") fails
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
show = _short.repr  # a client's value in a message: bounded length and depth, whatever it is


@dataclass
class InputTensor:
    """One request input. ``data``: a numpy array of ``shape``, or for BYTES a flat list of elements
    (``bytes`` from binary encodings, ``str`` from JSON)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes | str]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[RequestedOutput] | None = None  # None: the model's default outputs


@dataclass
class OutputTensor:
    """One response output: ``data`` is a numpy array, or for BYTES a flat list of ``bytes``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]
    binary: bool = False  # REST only: send in the binary section (binary tensor data extension)


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]
    parameters: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- BYTES


def encode_bytes_elements(items: list[bytes]) -> bytes:
    """The protocol's raw BYTES encoding: each element as a 4-byte little-endian length + its bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def decode_bytes_elements(buf: bytes | memoryview, what: str) -> list[bytes]:
    """Inverse of :func:`encode_bytes_elements`, refusing truncated or overrunning lengths."""
    view = memoryview(buf)
    out, pos = [], 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise BadRequest(f"{what}: BYTES data truncated inside an element length at byte {pos}")
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise BadRequest(f"{what}: BYTES element {len(out)} claims {n} bytes, only {len(view) - pos} remain")
        out.append(bytes(view[pos : pos + n]))
        pos += n
    return out


def element_count(shape: tuple[int, ...], what: str) -> int:
    """Elements of a client's ``shape``, refusing shapes numpy could not even describe."""
    if len(shape) > MAX_DIMS:
        raise BadRequest(f"{what}: shape has {len(shape)} dimensions, at most {MAX_DIMS} are supported")
    if any(d < 0 for d in shape):
        raise BadRequest(f"{what}: shape {show(list(shape))} has a negative dimension")
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:  # even with a 0 in it, numpy cannot make that shape
        raise BadRequest(f"{what}: shape {show(list(shape))} is absurdly large (over {MAX_ELEMENTS} elements)")
    return math.prod(shape)


def values_to_array(values: list, datatype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Numbers from JSON or protobuf contents -> array; out-of-range values are the client's error."""
    try:
        with np.errstate(over="raise", invalid="raise"):
            return np.asarray(values, dtype=NUMPY_DTYPES[datatype]).reshape(shape)
    except (ValueError, OverflowError, TypeError, FloatingPointError) as e:
        raise BadRequest(f"{what}: cannot read the values as {datatype} ({e})") from None


def raw_to_tensor(raw: bytes | memoryview, datatype: str, shape: tuple[int, ...], what: str) -> np.ndarray | list:
    """Raw little-endian bytes of one input -> numpy array of ``shape`` (or list of BYTES elements)."""
    count = element_count(shape, what)
    if datatype == "BYTES":
        items = decode_bytes_elements(raw, what)
        if len(items) != count:
            raise BadRequest(f"{what}: shape {list(shape)} needs {count} BYTES elements, got {len(items)}")
        return items
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"{what}: unsupported datatype {show(datatype)}")
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(f"{what}: {datatype} shape {list(shape)} needs {count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def json_to_tensor(data: Any, datatype: str, shape: tuple[int, ...], what: str) -> np.ndarray | list:
    """JSON ``data`` (flat or nested, row-major) -> numpy array of ``shape`` (or list of BYTES strings)."""
    count = element_count(shape, what)
    flat = _flatten(data)
    if len(flat) != count:
        raise BadRequest(f"{what}: shape {list(shape)} needs {count} elements, 'data' has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise BadRequest(f"{what}: BYTES elements must be JSON strings")
        return flat
    if datatype not in NUMPY_DTYPES:
        raise BadRequest(f"{what}: unsupported datatype {show(datatype)}")
    if not all(isinstance(x, (int, float)) for x in flat):  # bool is an int
        raise BadRequest(f"{what}: {datatype} 'data' must hold only numbers")
    return values_to_array(flat, datatype, shape, what)


# ---------------------------------------------------------------------------------------------- REST


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise BadRequest(f"{what}: 'shape' must be a list of integers")
    return tuple(value)


def parse_json(data: bytes, what: str) -> Any:
    """``json.loads`` whose every failure is the client's :class:`BadRequest`: bad syntax or encoding,
    nesting deeper than the interpreter recurses (``RecursionError``), an integer literal over
    Python's 4300-digit conversion limit (``ValueError``)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the int-digits limit
        raise BadRequest(f"{what} is not valid JSON: {e}") from None


def _request_id(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # lenient: some clients send numbers
        return str(value)
    raise BadRequest(f"request 'id' must be a string, got {show(value)}")


def _params(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what}: 'parameters' must be an object")
    return value


def parse_rest_request(body: bytes, header_length: str | None, model_name: str, model_version: str) -> InferRequest:
    """A REST ``/infer`` body (JSON, or JSON header + binary tensors) -> :class:`InferRequest`."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"{BINARY_HEADER} must be an integer, got {show(header_length)}") from None
        if not 0 <= n <= len(body):
            raise BadRequest(f"{BINARY_HEADER}={n} but the body has {len(body)} bytes")
        header, binary = body[:n], memoryview(body)[n:]
    else:
        header, binary = body, memoryview(b"")
    if not header:
        raise BadRequest("empty request body: expected an inference request JSON object")
    hint = f" (binary data without the {BINARY_HEADER} header?)" if header_length is None else ""
    doc = parse_json(header, f"request{hint}")
    if not isinstance(doc, dict):
        raise BadRequest("inference request must be a JSON object")
    req = InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=_request_id(doc.get("id", "")),
        parameters=_params(doc.get("parameters"), "request"),
    )
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("request needs a non-empty 'inputs' list")
    offset = 0
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise BadRequest(f"inputs[{i}] must be an object")
        name, datatype = spec.get("name"), spec.get("datatype")
        what = f"input {show(name)}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise BadRequest(f"{what}: needs string 'name' and 'datatype'")
        shape = _shape(spec.get("shape"), what)
        params = _params(spec.get("parameters"), what)
        if any(k.startswith("shared_memory") for k in params):
            raise BadRequest(f"{what}: shared-memory inputs are not supported by this server")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"{what}: binary_data_size={show(size)} exceeds the {len(binary) - offset} bytes left")
            data = raw_to_tensor(binary[offset : offset + size], datatype, shape, what)
            offset += size
        elif "data" in spec:
            data = json_to_tensor(spec["data"], datatype, shape, what)
        else:
            raise BadRequest(f"{what}: has neither 'data' nor a binary_data_size parameter")
        req.inputs.append(InputTensor(name, datatype, shape, data, params))
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise BadRequest("'outputs' must be a list")
        req.outputs = []
        for i, spec in enumerate(outputs):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise BadRequest(f"outputs[{i}] must be an object with a string 'name'")
            what = f"output {show(spec['name'])}"
            params = _params(spec.get("parameters"), what)
            if any(k.startswith("shared_memory") for k in params):
                raise BadRequest(f"{what}: shared-memory outputs are not supported by this server")
            req.outputs.append(RequestedOutput(spec["name"], params))
    return req


def _json_data(t: OutputTensor) -> list:
    if t.datatype == "BYTES":
        return [b.decode("utf-8", "replace") for b in t.data]
    return np.asarray(t.data).reshape(-1).tolist()


def raw_data(t: OutputTensor) -> bytes:
    """An output's raw little-endian bytes (the binary encodings of REST and gRPC)."""
    if t.datatype == "BYTES":
        return encode_bytes_elements(t.data)
    return np.ascontiguousarray(t.data, dtype=NUMPY_DTYPES[t.datatype]).tobytes()


def encode_rest_response(resp: InferResponse) -> tuple[bytes, dict[str, str]]:
    """:class:`InferResponse` -> REST body and extra headers (binary outputs after the JSON header)."""
    outputs, blobs = [], []
    for t in resp.outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if t.binary:
            blob = raw_data(t)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(t)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version, "outputs": outputs}
    if resp.id:
        doc["id"] = resp.id
    if resp.parameters:
        doc["parameters"] = resp.parameters
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {
        "content-type": "application/octet-stream",
        BINARY_HEADER.lower(): str(len(header)),
    }


def wants_binary(output_parameters: dict[str, Any], request: InferRequest) -> bool:
    """Per-output ``binary_data`` wins over the request-wide ``binary_data_output`` (Triton's rule)."""
    if "binary_data" in output_parameters:
        return bool(output_parameters["binary_data"])
    return bool(request.parameters.get("binary_data_output", False))


# ------------------------------------------------------------------------------------------ parameters


def parse_top_k(value: Any, num_classes: int, what: str = "top_k") -> int | None:
    """A request's ``top_k`` (or ``classification``) parameter: an integer in ``[1, num_classes]``, or
    a string of ASCII digits saying one (query strings, gRPC ``string_param``); ``None`` if absent."""
    if value is None:
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= num_classes:
        raise BadRequest(f"{what} must be an integer in [1, {num_classes}], got {show(value)}")
    return value


def parse_timeout_s(value: Any) -> float | None:
    """The ``timeout`` parameter (microseconds, as Triton's) in seconds; ``None`` if absent or 0."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    # compared as given: math.isfinite(10**400) would itself raise OverflowError
    if not number or not 0 <= value <= MAX_TIMEOUT_US:
        raise BadRequest(f"parameter 'timeout' must be microseconds in [0, {MAX_TIMEOUT_US}], got {show(value)}")
    return value / 1e6 if value else None
