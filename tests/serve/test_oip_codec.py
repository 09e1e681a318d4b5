"""Open Inference Protocol encoding: BYTES elements, binary tensor data, JSON data, gRPC messages."""

import json
import struct

import numpy as np
import pytest

from res2net.serve.errors import BadRequest
from res2net.serve.oip import (
    InferResponse,
    OutputTensor,
    decode_bytes_elements,
    encode_bytes_elements,
    encode_rest_response,
    parse_rest_request,
)
from res2net.serve.oip_grpc import encode_grpc_response, parse_grpc_request
from res2net.serve.proto import grpc_predict_v2_pb2 as pb


def test_bytes_elements_round_trip_and_reject_truncation():
    items = [b"", b"a", b"\x00\xff" * 1000]
    buf = encode_bytes_elements(items)
    assert decode_bytes_elements(buf, "x") == items
    with pytest.raises(BadRequest, match="claims 2000 bytes"):
        decode_bytes_elements(buf[:-1], "x")
    with pytest.raises(BadRequest, match="truncated inside an element length"):
        decode_bytes_elements(buf + b"\x01\x00", "x")


def binary_request(inputs: list[tuple[dict, bytes]], **doc) -> tuple[bytes, str]:
    header = {"inputs": [spec for spec, _ in inputs], **doc}
    for spec, blob in inputs:
        spec.setdefault("parameters", {})["binary_data_size"] = len(blob)
    head = json.dumps(header).encode()
    return head + b"".join(blob for _, blob in inputs), str(len(head))


def test_rest_binary_bytes_and_fp32():
    images = [b"\xff\xd8jpeg", b"\x89PNG..."]
    x = np.arange(2 * 3, dtype=np.float32).reshape(2, 3)
    body, n = binary_request(
        [
            ({"name": "image", "datatype": "BYTES", "shape": [2]}, encode_bytes_elements(images)),
            ({"name": "input", "datatype": "FP32", "shape": [2, 3]}, x.tobytes()),
        ],
        id="r1",
        parameters={"top_k": 3},
        outputs=[{"name": "scores", "parameters": {"binary_data": True}}],
    )
    req = parse_rest_request(body, n, "m", "")
    assert req.id == "r1" and req.parameters == {"top_k": 3}
    assert req.inputs[0].data == images
    np.testing.assert_array_equal(req.inputs[1].data, x)
    assert req.outputs[0].name == "scores" and req.outputs[0].parameters["binary_data"] is True


def test_rest_json_data_nested_or_flat():
    for data in ([[1, 2, 3], [4, 5, 6]], [1, 2, 3, 4, 5, 6]):
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3], "data": data}]})
        req = parse_rest_request(body.encode(), None, "m", "")
        np.testing.assert_array_equal(req.inputs[0].data, np.arange(1, 7, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize(
    "body, header, message",
    [
        (b"", None, "empty request body"),
        (b"{not json", None, "not valid JSON"),
        (b"\xff\xd8\xff binary", None, "binary data without the Inference-Header-Content-Length"),
        (b"[]", None, "must be a JSON object"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2], "data": [1]}]}', None, "needs 2 elements"),
        (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None, "only numbers"),
        (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": "2", "data": [1]}]}', None, "list of integers"),
        (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1], "data": []}]}', None, "negative"),
        (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1]}]}', None, "neither 'data'"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', "999", "but the body has"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', "abc", "must be an integer"),
        (
            b'{"inputs": [{"name": "x", "datatype": "COMPLEX", "shape": [1], "data": [1]}]}',
            None,
            "unsupported datatype",
        ),
    ],
)
def test_rest_request_errors_name_the_problem(body, header, message):
    with pytest.raises(BadRequest, match=message):
        parse_rest_request(body, header, "m", "")


def test_rest_binary_size_mismatch_and_unclaimed_bytes():
    body, n = binary_request([({"name": "input", "datatype": "FP32", "shape": [2]}, b"\x00" * 4)])
    with pytest.raises(BadRequest, match="needs 8 bytes, got 4"):
        parse_rest_request(body, n, "m", "")
    body, n = binary_request([({"name": "input", "datatype": "FP32", "shape": [1]}, b"\x00" * 4)])
    with pytest.raises(BadRequest, match="not claimed"):
        parse_rest_request(body + b"junk", n, "m", "")


def test_rest_response_json_and_binary():
    probs = np.array([[0.5, 0.25]], np.float32)
    labels = [b"tabby, tabby cat", b"tiger cat"]
    resp = InferResponse(
        "m",
        "1",
        "id7",
        [OutputTensor("scores", "FP32", (1, 2), probs), OutputTensor("label_names", "BYTES", (1, 2), labels)],
    )
    body, headers = encode_rest_response(resp)
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["id"] == "id7" and doc["outputs"][0]["data"] == [0.5, 0.25]
    assert doc["outputs"][1]["data"] == ["tabby, tabby cat", "tiger cat"]

    resp.outputs[0].binary = resp.outputs[1].binary = True
    body, headers = encode_rest_response(resp)
    n = int(headers["inference-header-content-length"])
    doc, rest = json.loads(body[:n]), body[n:]
    sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
    assert np.frombuffer(rest[: sizes[0]], np.float32).tolist() == [0.5, 0.25]
    assert decode_bytes_elements(rest[sizes[0] :], "x") == labels


def test_grpc_raw_and_typed_contents():
    msg = pb.ModelInferRequest(model_name="m", id="g1")
    msg.parameters["top_k"].int64_param = 2
    msg.inputs.add(name="image", datatype="BYTES", shape=[2])
    msg.raw_input_contents.append(encode_bytes_elements([b"a", b"bc"]))
    req = parse_grpc_request(msg)
    assert req.parameters == {"top_k": 2} and req.inputs[0].data == [b"a", b"bc"]

    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    t.contents.fp32_contents.extend([1.5, 2.5])
    np.testing.assert_array_equal(parse_grpc_request(msg).inputs[0].data, [[1.5, 2.5]])

    t.contents.fp32_contents.append(3.5)
    with pytest.raises(BadRequest, match="needs 2 elements"):
        parse_grpc_request(msg)


def test_grpc_response_raw_contents():
    ids = np.array([[3, 1]], np.int64)
    resp = InferResponse("m", "1", "x", [OutputTensor("class_ids", "INT64", (1, 2), ids)], {"note": "ok"})
    msg = encode_grpc_response(resp, pb)
    assert msg.outputs[0].shape == [1, 2] and msg.parameters["note"].string_param == "ok"
    assert np.frombuffer(msg.raw_output_contents[0], "<i8").tolist() == [3, 1]
    assert struct.calcsize("<I") == 4
