"""Hostile requests (issue 11, items 9, 12, 14): each gets its 4xx naming the problem — never a 500 or
gRPC INTERNAL/UNKNOWN — and a client hanging up mid-body is one log line, counted apart in /metrics.

Each payload is the minimal one that made the server answer 500 (or UNKNOWN) before the fix.
"""

from __future__ import annotations

import json
import socket
import time

import grpc
import httpx
import pytest

from tests.serve.conftest import MODEL

INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(autouse=True)
def still_healthy(server):
    start = len(server.output())
    yield
    server.assert_healthy()
    assert "Traceback" not in server.output()[start:]


def _tensor_request(**parameters) -> dict:
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [0.0] * 150528}]}
    return {**doc, "parameters": parameters} if parameters else doc


def _post(server, path: str, body: bytes, **headers) -> httpx.Response:
    return httpx.post(server.url(path), content=body, headers=headers, timeout=60)


DEEP = 100_000  # RecursionError inside json.loads


@pytest.mark.parametrize(
    "path, body, message",
    [
        (INFER, b'{"inputs": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested too deeply"),
        ("/imagenet/prediction", b'{"key": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested too deeply"),
        # an integer literal over Python's 4300-digit str->int limit: ValueError inside json.loads
        (
            INFER,
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": [' + b"9" * 5000 + b"]}]}",
            "Exceeds the limit",
        ),
        (INFER, b'{"id": ' + b"[" * 900 + b"]" * 900 + b', "inputs": []}', "'id' must be a string"),
    ],
    ids=["oip_deep_nesting", "paddle_deep_nesting", "int_over_4300_digits", "nested_id"],
)
def test_pathological_json_is_400(server, path, body, message):
    r = _post(server, path, body)
    assert r.status_code == 400, r.text
    assert message in (r.json().get("error") or r.json().get("err_msg")), r.text


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"top_k": "²"}, "top_k must be an integer"),  # "²".isdigit() is True, int("²") raises
        ({"top_k": "9" * 5000}, "top_k must be an integer"),
        ({"timeout": 1e400}, "'timeout' must be microseconds"),  # JSON 1e400 is float('inf')
        ({"timeout": 10**400}, "'timeout' must be microseconds"),  # int too large to divide as a float
        ({"timeout": "soon"}, "'timeout' must be microseconds"),
    ],
    ids=["top_k_superscript", "top_k_5000_digits", "timeout_1e400", "timeout_10e400_int", "timeout_text"],
)
def test_bad_parameters_are_400(server, parameters, message):
    body = json.dumps(_tensor_request(**parameters)).replace("Infinity", "1e400").encode()
    r = _post(server, INFER, body)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_bad_classification_and_query_top_k_are_400(server):
    doc = {**_tensor_request(), "outputs": [{"name": "probabilities", "parameters": {"classification": "²"}}]}
    r = _post(server, INFER, json.dumps(doc).encode())
    assert r.status_code == 400 and "'classification' must be an integer" in r.json()["error"], r.text
    r = httpx.post(server.url("/v1/classify"), params={"top_k": "²"}, content=b"x", timeout=30)
    assert r.status_code == 400 and "top_k must be an integer" in r.json()["error"], r.text


@pytest.mark.parametrize("shape", [[0, 2**70], [0, 2**62, 2**62], [0] * 70], ids=["2e70", "2e62_squared", "70_dims"])
def test_absurd_binary_tensor_shapes_are_400(server, shape):
    header = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": 0}}]}
    ).encode()
    r = _post(server, INFER, header, **{"inference-header-content-length": str(len(header))})
    assert r.status_code == 400 and "shape" in r.json()["error"], r.text


# ---------------------------------------------------------------------------------------------- gRPC
def _grpc_call(server, method: str, payload: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(server.grpc) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")  # no serializers: raw bytes
        with pytest.raises(grpc.RpcError) as e:
            call(payload, timeout=30)
    return e.value


@pytest.mark.parametrize("method", ["ModelInfer", "ServerLive", "ModelMetadata"])
def test_grpc_undecodable_protobuf_is_invalid_argument(server, method):
    err = _grpc_call(server, method, b"\xff\xff\xff\xff")  # field 31, wire type 7: no such wire type
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "not a valid" in err.details() and "protobuf" in err.details()


def test_grpc_hostile_parameters_and_shapes_are_invalid_argument(server):
    from res2net.serve.proto import grpc_predict_v2_pb2 as pb

    def infer(build) -> grpc.RpcError:
        msg = pb.ModelInferRequest(model_name=MODEL)
        t = msg.inputs.add(name="input", datatype="FP32", shape=[1, 3, 224, 224])
        msg.raw_input_contents.append(b"\0" * (4 * 150528))
        build(msg, t)
        return _grpc_call(server, "ModelInfer", msg.SerializeToString())

    cases = {
        "top_k": (lambda m, t: m.parameters["top_k"].__setattr__("string_param", "²"), "top_k must be an integer"),
        "shape": (lambda m, t: (t.ClearField("shape"), t.shape.extend([0, 2**62, 2**62])), "absurdly large"),
        "uint8": (lambda m, t: (m.ClearField("raw_input_contents"), _uint8_contents(t)), "cannot read the values"),
    }
    for name, (build, message) in cases.items():
        err = infer(build)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details(), (name, err)


def _uint8_contents(t) -> None:
    t.datatype = "UINT8"
    t.ClearField("shape")
    t.shape.append(1)
    t.contents.uint_contents.append(300)  # does not fit a uint8: OverflowError in numpy


# ---------------------------------------------------------------------------------------------- disconnects
def test_client_disconnect_mid_body_is_one_line_and_counted_apart(server):
    before_500 = server.metric("res2net_requests_total", status="500")
    before = server.metric("res2net_client_disconnects_total", route="/v2/models/{name}/infer")
    log_before = server.output()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
            + b'{"inputs": ['
            + b"0," * 500
        )
        time.sleep(0.3)  # the server is reading the body
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.metric("res2net_client_disconnects_total") <= before:
        time.sleep(0.1)
    assert server.metric("res2net_client_disconnects_total", route="/v2/models/{name}/infer") == before + 1
    assert server.metric("res2net_requests_total", status="500") == before_500
    assert server.metric("res2net_requests_total", route="/v2/models/{name}/infer", status="499") >= 1
    new_log = server.output()[len(log_before) :]
    lines = [ln for ln in new_log.splitlines() if "client disconnected" in ln]
    assert len(lines) == 1 and "Traceback" not in new_log, new_log[-3000:]
