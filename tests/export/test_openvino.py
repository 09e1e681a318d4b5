"""OpenVINO IR export vs PyTorch eager on real images (fp32 compile, max abs logit difference <= 1e-4)."""

from __future__ import annotations

import json

import pytest
import torch

from res2net.export import ExportError, export_openvino
from res2net.export.openvino import read_metadata
from tests.export.conftest import real_batch
from tests.utils import assert_logits_close, randomize_

ov = pytest.importorskip("openvino")
ATOL = 1e-4


def run_ov(path, x: torch.Tensor):
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return torch.from_numpy(compiled(x.numpy())[0].copy()), compiled


def eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("size", [224, 231])
def test_tiny_vd_at_224_and_odd_size(tmp_path, tiny_vd_model, size):
    path = export_openvino(tiny_vd_model, tmp_path / "m", input_size=size)
    assert path.name == "m.xml" and path.with_suffix(".bin").is_file()
    x = real_batch(size)
    out, compiled = run_ov(path, x)
    assert compiled.inputs[0].get_any_name() == "input" and compiled.outputs[0].get_any_name() == "logits"
    assert str(compiled.inputs[0].get_partial_shape()) == f"[?,3,{size},{size}]"
    assert_logits_close(out, eager(tiny_vd_model, x), ATOL)
    one, _ = run_ov(path, x[:1])
    assert (one - out[:1]).abs().max() <= ATOL


def test_softmax_and_metadata(tmp_path, tiny_vd_model):
    path = export_openvino(tiny_vd_model, tmp_path / "p.xml", softmax=True)
    x = real_batch(224)
    probs, compiled = run_ov(path, x)
    assert compiled.outputs[0].get_any_name() == "probabilities"
    ref = torch.softmax(eager(tiny_vd_model, x), -1)
    assert (probs - ref).abs().max() <= 1e-6
    meta = read_metadata(path)
    assert meta["model_name"] == "res2net_tiny" and meta["softmax"] == "true" and meta["format"] == "openvino"


def test_fp32_weights_by_default(tmp_path, tiny_vd_model):
    """OpenVINO's save_model halves weights unless told not to; ours must not (a 2x smaller .bin would show it)."""
    fp32 = export_openvino(tiny_vd_model, tmp_path / "a.xml")
    fp16 = export_openvino(tiny_vd_model, tmp_path / "b.xml", compress_to_fp16=True)
    n_params = sum(t.numel() for t in tiny_vd_model.state_dict().values() if t.is_floating_point())
    assert fp32.with_suffix(".bin").stat().st_size >= 4 * n_params * 0.9
    assert fp16.with_suffix(".bin").stat().st_size <= 0.6 * fp32.with_suffix(".bin").stat().st_size


@pytest.mark.slow
def test_full_res2net50_vd_odd_size(tmp_path):
    import res2net

    model = randomize_(res2net.create_model("Res2Net50_vd_26w_4s"))
    path = export_openvino(model, tmp_path / "vd50.xml", input_size=231)
    x = real_batch(231)
    out, _ = run_ov(path, x)
    assert_logits_close(out, eager(model, x), ATOL)


def test_converter_failure_names_step_and_model(tmp_path, tiny_vd_model, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ov, "convert_model", boom)
    with pytest.raises(ExportError, match=r"^OpenVINO conversion of Res2Net failed: boom$"):
        export_openvino(tiny_vd_model, tmp_path / "m")


def res2net_tiny(**kw):
    import res2net

    return res2net.create_model("res2net_tiny", **kw)


def test_metadata_carries_imagenet_labels_for_1000_classes(tmp_path, tiny_vd_model):
    """What the C++ predictor prints without --labels: the names res2net.Predictor prints."""
    from res2net.data.labels import load_labels

    meta = read_metadata(export_openvino(tiny_vd_model, tmp_path / "m.xml", input_size=64))
    assert json.loads(meta["labels"]) == load_labels() and len(load_labels()) == 1000
    assert json.loads(meta["preprocess"])["resize_short"] == round(256 * 64 / 224)  # scaled with the crop
    small = export_openvino(randomize_(res2net_tiny(num_classes=3)), tmp_path / "s.xml", input_size=64)
    assert "labels" not in read_metadata(small)  # no names to guess: the predictors print ids
    with pytest.raises(ExportError, match="2 label names for a 3-class model"):
        export_openvino(randomize_(res2net_tiny(num_classes=3)), tmp_path / "t.xml", input_size=64, labels=["a", "b"])


def test_export_cli_int8_records_preprocessing_labels_and_precision(tmp_path, capsys):
    """``res2net export --format openvino --quantize int8``: the NNCF int8 IR, verified by top-1 agreement,
    with the given preprocessing and class names in its metadata."""
    from res2net.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i} name {i}\n" for i in range(10)))
    out = tmp_path / "int8.xml"
    rc = main(["export", "--model", "res2net_tiny", "--num-classes", "10", "--format", "openvino",
               "--quantize", "int8", "--input-size", "64", "--resize-short", "80", "--labels", str(labels),
               "--output", str(out)])  # fmt: skip
    assert rc == 0 and out.is_file() and out.with_suffix(".bin").is_file()
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and json.loads(meta["labels"]) == [f"name {i}" for i in range(10)]
    pre = json.loads(meta["preprocess"])
    assert pre["resize_short"] == 80 and pre["crop_size"] == [64, 64]
    model = ov.Core().read_model(str(out))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
