"""Triton model repository: config.pbtxt is a valid ModelConfig with dynamic batching; the ONNX inside agrees."""

from __future__ import annotations

import pytest

import res2net
from res2net.export import ExportError, export_triton, verify_export
from res2net.export.triton import triton_config
from tests.export.conftest import tiny_vd


def parse_config(text: str):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return text_format.Parse(text, model_config_pb2.ModelConfig())  # raises on unknown fields / bad syntax


def test_repository_layout_config_and_parity(tmp_path, tiny_vd_model):
    (tmp_path / "other_model").mkdir()  # an existing repository with other models is kept
    model_dir = export_triton(tiny_vd_model, tmp_path, name="tiny", instance_kind="KIND_CPU")
    assert model_dir == tmp_path / "tiny"
    assert (model_dir / "1" / "model.onnx").is_file() and (tmp_path / "other_model").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other_model", "tiny"]  # no staging left behind
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    assert cfg.name == "tiny" and cfg.backend == "onnxruntime" and cfg.max_batch_size == 64
    assert cfg.HasField("dynamic_batching") and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.input[0].name == "input" and list(cfg.input[0].dims) == [3, 224, 224]
    assert cfg.output[0].name == "logits" and list(cfg.output[0].dims) == [1000]
    assert cfg.output[0].label_filename == "labels.txt"
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[281] == "tabby"
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU
    report = verify_export(model_dir, tiny_vd_model)
    assert report.format == "triton" and report.passed


def test_softmax_custom_labels_and_defaults(tmp_path):
    model = tiny_vd(num_classes=3)
    (tmp_path / "l.txt").write_text("cat\ndog\nbird\n")
    model_dir = export_triton(model, tmp_path / "repo", softmax=True, labels=tmp_path / "l.txt", max_batch_size=4)
    assert model_dir.name == "res2net_tiny"
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    assert cfg.output[0].name == "probabilities" and list(cfg.output[0].dims) == [3]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4] and len(cfg.instance_group) == 0
    with pytest.raises(ExportError, match="2 labels for a model with 3 classes"):
        export_triton(model, tmp_path / "repo2", labels=["a", "b"])


def test_config_text_validates_for_real_models():
    card = res2net.get_card("Res2Net50_vd_26w_4s")
    text = triton_config(card.name, input_hw=(231, 231), num_classes=1000, output="logits", max_batch_size=128,
                         preferred_batch_sizes=(1, 4, 8, 256), instance_kind="KIND_GPU", instance_count=2)  # fmt: skip
    cfg = parse_config(text)
    assert list(cfg.input[0].dims) == [3, 231, 231] and list(cfg.dynamic_batching.preferred_batch_size) == [1, 4, 8]
    assert cfg.instance_group[0].count == 2


def test_bad_names(tmp_path, tiny_vd_model):
    with pytest.raises(ExportError, match="Triton model name"):
        export_triton(tiny_vd_model, tmp_path, name="bad/name")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_triton(tiny_vd_model, tmp_path / "file")
