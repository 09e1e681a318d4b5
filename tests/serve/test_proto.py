"""The committed gRPC stubs match the committed .proto, and coexist with tritonclient's."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from res2net.serve.proto import generate
from res2net.serve.proto import grpc_predict_v2_pb2 as pb

PROTO_DIR = Path(generate.__file__).parent


def test_stubs_are_up_to_date(tmp_path):
    """Recompile the .proto; the descriptor must equal the committed one (regenerate with
    ``python -m res2net.serve.proto.generate`` when this fails). With the same grpcio-tools
    version as the committed files, the generated text must match byte for byte."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to regenerate the stubs")
    written = generate.generate(tmp_path)
    assert {p.name for p in written} == set(generate.OUTPUTS)
    fresh = {}
    exec(compile((tmp_path / "grpc_predict_v2_pb2.py").read_text(), "fresh_pb2", "exec"), fresh)
    assert fresh["DESCRIPTOR"].serialized_pb == pb.DESCRIPTOR.serialized_pb, (
        "grpc_predict_v2.proto changed but the stubs were not regenerated: run python -m res2net.serve.proto.generate"
    )
    committed_grpc = (PROTO_DIR / "grpc_predict_v2_pb2_grpc.py").read_text()
    fresh_grpc = (tmp_path / "grpc_predict_v2_pb2_grpc.py").read_text()
    version = re.compile(r"GRPC_GENERATED_VERSION = '([^']+)'")
    if version.search(committed_grpc).group(1) == version.search(fresh_grpc).group(1):
        for name in generate.OUTPUTS:
            assert (tmp_path / name).read_text() == (PROTO_DIR / name).read_text(), f"{name} differs"


def test_service_is_the_standard_one():
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {m.name for m in service.methods} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }


def test_wire_compatible_with_tritonclient_in_one_process():
    """Both stub sets import together (private descriptor pool) and parse each other's bytes."""
    code = """
import tritonclient.grpc.service_pb2 as triton
from res2net.serve.proto import grpc_predict_v2_pb2 as ours
req = triton.ModelInferRequest(model_name="m", id="1")
req.parameters["top_k"].int64_param = 3
t = req.inputs.add(name="image", datatype="BYTES", shape=[1])
req.raw_input_contents.append(b"\\x03\\x00\\x00\\x00abc")
back = ours.ModelInferRequest.FromString(req.SerializeToString())
assert back.parameters["top_k"].int64_param == 3 and back.inputs[0].shape == [1]
resp = ours.ModelInferResponse(model_name="m")
resp.outputs.add(name="scores", datatype="FP32", shape=[1, 1])
assert triton.ModelInferResponse.FromString(resp.SerializeToString()).outputs[0].name == "scores"
print("ok")
"""
    pytest.importorskip("tritonclient.grpc")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
