"""The Open Inference Protocol's gRPC messages (``inference.GRPCInferenceService``) <-> :mod:`res2net.serve.oip`.

As for REST, whatever the bytes, decoding ends in an :class:`~res2net.serve.oip.InferRequest` or a
:class:`~res2net.serve.errors.BadRequest` — undecodable protobuf included (INVALID_ARGUMENT, where
grpc's own deserialization would answer UNKNOWN).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from res2net.serve.errors import BadRequest
from res2net.serve.oip import (
    InferRequest,
    InferResponse,
    InputTensor,
    RequestedOutput,
    element_count,
    raw_data,
    raw_to_tensor,
    show,
    values_to_array,
)

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


def grpc_param_value(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def _grpc_params(m: Any) -> dict[str, Any]:
    return {k: grpc_param_value(v) for k, v in m.items()}


def decode_grpc_message(data: bytes, message_type: Any) -> Any:
    """Serialized protobuf -> message of ``message_type``; undecodable bytes are the client's :class:`BadRequest`
    (gRPC would otherwise answer UNKNOWN)."""
    try:
        return message_type.FromString(data)
    except (DecodeError, ValueError, RecursionError) as e:
        raise BadRequest(f"request is not a valid {message_type.__name__} protobuf message ({e})") from None


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
        what = f"input {show(t.name)}"
        shape = tuple(t.shape)
        params = _grpc_params(t.parameters)
        if any(k.startswith("shared_memory") for k in params):
            raise BadRequest(f"{what}: shared-memory inputs are not supported by this server")
        if raw:
            data = raw_to_tensor(raw[i], t.datatype, shape, what)
        else:
            field_name = GRPC_CONTENTS_FIELD.get(t.datatype)
            if field_name is None:
                raise BadRequest(f"{what}: datatype {show(t.datatype)} needs raw_input_contents (or is unsupported)")
            values = list(getattr(t.contents, field_name))
            count = element_count(shape, what)
            if len(values) != count:
                raise BadRequest(f"{what}: shape {list(shape)} needs {count} elements, contents has {len(values)}")
            data = values if t.datatype == "BYTES" else values_to_array(values, t.datatype, shape, what)
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
        msg.raw_output_contents.append(raw_data(t))
    return msg
