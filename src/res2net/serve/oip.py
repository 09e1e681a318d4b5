"""Open Inference Protocol (KServe v2 / Triton) messages, independent of transport.

REST (JSON, plus Triton's *binary tensor data* extension that ``tritonclient.http`` uses by
default) and gRPC (``inference.GRPCInferenceService``) requests are both parsed into
:class:`InferRequest`, answered by the same code, and encoded back from :class:`InferResponse`.
Everything a client sends is validated here with an error that names the tensor and the problem.
"""

from __future__ import annotations

import json
import math
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
# Which InferTensorContents field carries each datatype in gRPC.
GRPC_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
BINARY_HEADER = "Inference-Header-Content-Length"


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


def _element_count(shape: tuple[int, ...], what: str) -> int:
    if any(d < 0 for d in shape):
        raise BadRequest(f"{what}: shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def raw_to_tensor(raw: bytes | memoryview, datatype: str, shape: tuple[int, ...], what: str) -> np.ndarray | list:
    """Raw little-endian bytes of one input -> numpy array of ``shape`` (or list of BYTES elements)."""
    count = _element_count(shape, what)
    if datatype == "BYTES":
        items = decode_bytes_elements(raw, what)
        if len(items) != count:
            raise BadRequest(f"{what}: shape {list(shape)} needs {count} BYTES elements, got {len(items)}")
        return items
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"{what}: unsupported datatype {datatype!r}")
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
    count = _element_count(shape, what)
    flat = _flatten(data)
    if len(flat) != count:
        raise BadRequest(f"{what}: shape {list(shape)} needs {count} elements, 'data' has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise BadRequest(f"{what}: BYTES elements must be JSON strings")
        return flat
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(f"{what}: unsupported datatype {datatype!r}")
    if not all(isinstance(x, (int, float)) for x in flat):  # bool is an int
        raise BadRequest(f"{what}: {datatype} 'data' must hold only numbers")
    try:
        return np.asarray(flat, dtype=dtype).reshape(shape)
    except (ValueError, OverflowError) as e:
        raise BadRequest(f"{what}: cannot read 'data' as {datatype} ({e})") from None


# ---------------------------------------------------------------------------------------------- REST


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise BadRequest(f"{what}: 'shape' must be a list of integers")
    return tuple(value)


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
            raise BadRequest(f"{BINARY_HEADER} must be an integer, got {header_length!r}") from None
        if not 0 <= n <= len(body):
            raise BadRequest(f"{BINARY_HEADER}={n} but the body has {len(body)} bytes")
        header, binary = body[:n], memoryview(body)[n:]
    else:
        header, binary = body, memoryview(b"")
    if not header:
        raise BadRequest("empty request body: expected an inference request JSON object")
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        hint = f" (binary data without the {BINARY_HEADER} header?)" if header_length is None else ""
        raise BadRequest(f"request is not valid JSON{hint}: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest("inference request must be a JSON object")
    req = InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=str(doc.get("id", "")),
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
        what = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise BadRequest(f"{what}: needs string 'name' and 'datatype'")
        shape = _shape(spec.get("shape"), what)
        params = _params(spec.get("parameters"), what)
        if any(k.startswith("shared_memory") for k in params):
            raise BadRequest(f"{what}: shared-memory inputs are not supported by this server")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"{what}: binary_data_size={size!r} exceeds the {len(binary) - offset} bytes left")
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
            params = _params(spec.get("parameters"), f"output {spec['name']!r}")
            if any(k.startswith("shared_memory") for k in params):
                raise BadRequest(f"output {spec['name']!r}: shared-memory outputs are not supported by this server")
            req.outputs.append(RequestedOutput(spec["name"], params))
    return req


def _json_data(t: OutputTensor) -> list:
    if t.datatype == "BYTES":
        return [b.decode("utf-8", "replace") for b in t.data]
    return np.asarray(t.data).reshape(-1).tolist()


def _raw_data(t: OutputTensor) -> bytes:
    if t.datatype == "BYTES":
        return encode_bytes_elements(t.data)
    return np.ascontiguousarray(t.data, dtype=NUMPY_DTYPES[t.datatype]).tobytes()


def encode_rest_response(resp: InferResponse) -> tuple[bytes, dict[str, str]]:
    """:class:`InferResponse` -> REST body and extra headers (binary outputs after the JSON header)."""
    outputs, blobs = [], []
    for t in resp.outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if t.binary:
            blob = _raw_data(t)
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


# ---------------------------------------------------------------------------------------------- gRPC


def grpc_param_value(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _grpc_params(m: Any) -> dict[str, Any]:
    return {k: grpc_param_value(v) for k, v in m.items()}


def parse_grpc_request(msg: Any) -> InferRequest:
    """A ``ModelInferRequest`` protobuf -> :class:`InferRequest`."""
    req = InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        parameters=_grpc_params(msg.parameters),
    )
    if not msg.inputs:
        raise BadRequest("request has no inputs")
    raw = list(msg.raw_input_contents)
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(f"{len(msg.inputs)} inputs but {len(raw)} raw_input_contents entries")
    for i, t in enumerate(msg.inputs):
        what = f"input {t.name!r}"
        shape = tuple(t.shape)
        params = _grpc_params(t.parameters)
        if any(k.startswith("shared_memory") for k in params):
            raise BadRequest(f"{what}: shared-memory inputs are not supported by this server")
        if raw:
            data = raw_to_tensor(raw[i], t.datatype, shape, what)
        else:
            field_name = GRPC_CONTENTS_FIELD.get(t.datatype)
            if field_name is None:
                raise BadRequest(f"{what}: datatype {t.datatype!r} needs raw_input_contents (or is unsupported)")
            values = list(getattr(t.contents, field_name))
            count = _element_count(shape, what)
            if len(values) != count:
                raise BadRequest(f"{what}: shape {list(shape)} needs {count} elements, contents has {len(values)}")
            if t.datatype == "BYTES":
                data = values
            else:
                data = np.asarray(values, dtype=NUMPY_DTYPES[t.datatype]).reshape(shape)
        req.inputs.append(InputTensor(t.name, t.datatype, shape, data, params))
    if msg.outputs:
        req.outputs = [RequestedOutput(o.name, _grpc_params(o.parameters)) for o in msg.outputs]
    return req


def _set_grpc_param(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    else:
        target.string_param = str(value)


def encode_grpc_response(resp: InferResponse, pb: Any) -> Any:
    """:class:`InferResponse` -> ``ModelInferResponse`` with ``raw_output_contents`` (as Triton answers)."""
    msg = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version, id=resp.id)
    for k, v in resp.parameters.items():
        _set_grpc_param(msg.parameters[k], v)
    for t in resp.outputs:
        msg.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        msg.raw_output_contents.append(_raw_data(t))
    return msg
