"""verify_export must catch a wrong export, and the `res2net export` command must fail loudly with it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import res2net
from res2net.export import ExportError, export_onnx, load_artifact, verify_export
from res2net.export.verify import compare_outputs, detect_format, tolerance
from tests.export.conftest import tiny_vd
from tests.utils import randomize_


@pytest.fixture(scope="module")
def static_onnx(tmp_path_factory, tiny_vd_model):
    return export_onnx(tiny_vd_model, tmp_path_factory.mktemp("v") / "s.onnx", dynamic_batch=False, batch_size=2)


def test_static_batch_export_is_run_in_padded_chunks(static_onnx, tiny_vd_model):
    art = load_artifact(static_onnx)
    assert art.fixed_batch == 2
    report = verify_export(static_onnx, tiny_vd_model)  # 5 packaged photos: chunks of 2, 2, 1 (padded)
    assert report.images == 5 and report.passed and report.topk_agreement == 1.0


def test_wrong_weights_fail_loudly(static_onnx):
    other = tiny_vd(seed=1)
    with pytest.raises(ExportError, match="FAILED"):
        verify_export(static_onnx, other)
    report = verify_export(static_onnx, other, raise_on_fail=False)
    assert not report.passed and report.max_abs_diff > 1e-2


def test_compare_outputs_metrics():
    ref = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    m = compare_outputs(ref + 1e-5, ref, k=2)
    assert m["max_abs_diff"] == pytest.approx(1e-5) and m["top1_agreement"] == 1.0 and m["topk_agreement"] == 1.0
    swapped = ref.copy()
    swapped[0, [1, 2]] = swapped[0, [2, 1]]  # same top-1, different top-2 order in image 0
    m = compare_outputs(swapped, ref, k=2)
    assert m["top1_agreement"] == 1.0 and m["topk_agreement"] == 0.5
    bad = ref.copy()
    bad[1, 0] = np.nan
    assert compare_outputs(bad, ref)["max_abs_diff"] == float("inf")


def test_tolerance_is_absolute_up_to_10_then_relative():
    assert tolerance(1e-4, 0.5) == 1e-4 and tolerance(1e-4, 10.0) == 1e-4
    assert tolerance(1e-4, 30.0) == pytest.approx(3e-4)


def test_detect_format(tmp_path):
    assert detect_format("a.onnx") == "onnx" and detect_format("a.xml") == "openvino"
    assert detect_format("a.pt2") == "pt2" and detect_format("a.pt") == "torchscript"
    with pytest.raises(ExportError, match="cannot tell"):
        detect_format("a.bin")
    with pytest.raises(ExportError, match="without config.pbtxt"):
        detect_format(tmp_path)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "res2net", *args], capture_output=True, text=True, timeout=600)


def test_cli_export_with_weights_and_verify(tmp_path):
    from safetensors.torch import save_file

    model = tiny_vd(num_classes=10)
    weights = tmp_path / "tiny10.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = run_cli(
        "export", "--model", "res2net_tiny", "--weights", str(weights), "--num-classes", "10",
        "--format", "onnx", "--output", str(tmp_path / "t.onnx"), "--verify", "--json",
    )  # fmt: skip
    # weights were made for a vd stem: the plain res2net_tiny graph must refuse them, naming the keys
    assert out.returncode == 1 and "Traceback" not in out.stderr and "conv1" in out.stderr, out.stderr
    model = randomize_(res2net.create_model("res2net_tiny", num_classes=10))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = run_cli(
        "export", "--model", "res2net_tiny", "--weights", str(weights), "--num-classes", "10",
        "--format", "onnx", "--output", str(tmp_path / "t.onnx"), "--verify", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "verify onnx" in out.stdout and "-> OK" in out.stdout
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["verify"]["passed"] and summary["verify"]["max_abs_diff"] <= 1e-4
    assert summary["verify"]["images"] == 5


def test_cli_errors_are_one_line():
    out = run_cli("export", "--model", "res2net_tiny", "--format", "onnx", "--opset", "11", "--output", "x.onnx")
    assert out.returncode == 1 and "opset 11 is too old" in out.stderr and "Traceback" not in out.stderr
    assert "RANDOM weights" in out.stderr
