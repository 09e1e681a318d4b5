"""ONNX export vs PyTorch eager on real images (fp32, max abs logit difference <= 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from res2net.export import ExportError, export_onnx
from res2net.export.onnx import read_metadata
from tests.export.conftest import real_batch, tiny_vd
from tests.utils import assert_logits_close, randomize_

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
ATOL = 1e-4


def run_ort(path, x: torch.Tensor) -> tuple[torch.Tensor, ort.InferenceSession]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {"input": x.numpy()})[0]), sess


def eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("size", [224, 231])
def test_tiny_vd_dynamic_batch_at_224_and_odd_size(tmp_path, tiny_vd_model, size):
    path = export_onnx(tiny_vd_model, tmp_path / "m", input_size=size)
    assert path.name == "m.onnx"
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    x = real_batch(size)
    out, sess = run_ort(path, x)
    assert [d for d in sess.get_inputs()[0].shape] == ["batch", 3, size, size]
    assert sess.get_outputs()[0].name == "logits"
    assert_logits_close(out, eager(tiny_vd_model, x), ATOL)
    one, _ = run_ort(path, x[2:3])  # batch 1 through the same file
    assert_logits_close(torch.cat([out[:2], one, out[3:]]), eager(tiny_vd_model, x), ATOL)


def test_softmax_head_metadata_and_static_batch(tmp_path, tiny_vd_model):
    tiny_vd_model.train()
    path = export_onnx(tiny_vd_model, tmp_path / "p.onnx", softmax=True, dynamic_batch=False, batch_size=4, opset=17)
    assert tiny_vd_model.training, "export must restore the model's training flag"
    tiny_vd_model.eval()
    x = real_batch(224)
    probs, sess = run_ort(path, x)
    assert sess.get_outputs()[0].name == "probabilities"
    assert sess.get_inputs()[0].shape == [4, 3, 224, 224]
    torch.testing.assert_close(probs.sum(-1), torch.ones(4), atol=1e-5, rtol=0)
    ref = torch.softmax(eager(tiny_vd_model, x), -1)
    assert (probs - ref).abs().max() <= 1e-6
    assert (probs.argmax(-1) == ref.argmax(-1)).all()
    meta = read_metadata(path)
    assert meta["model_name"] == "res2net_tiny" and meta["softmax"] == "true" and meta["num_classes"] == "1000"
    assert '"resize_short": 256' in meta["preprocess"] and meta["output_name"] == "probabilities"


def test_refuses_old_opset_and_tiny_inputs(tmp_path, tiny_vd_model):
    with pytest.raises(ExportError, match="opset 11"):
        export_onnx(tiny_vd_model, tmp_path / "a.onnx", opset=11)
    with pytest.raises(ExportError, match="too small"):
        export_onnx(tiny_vd_model, tmp_path / "a.onnx", input_size=16)


def test_converter_failure_names_step_and_model_and_restores_mode(tmp_path, tiny_vd_model, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torch.onnx, "export", boom)
    was_training = tiny_vd_model.training
    tiny_vd_model.train()
    try:
        with pytest.raises(ExportError, match=r"^ONNX export of Res2Net failed: boom$") as info:
            export_onnx(tiny_vd_model, tmp_path / "a.onnx")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert tiny_vd_model.training  # eval mode for the export only
    finally:
        tiny_vd_model.train(was_training)


def test_custom_head_size(tmp_path):
    model = tiny_vd(num_classes=10)
    path = export_onnx(model, tmp_path / "ten.onnx")
    x = real_batch(224)
    out, _ = run_ort(path, x)
    assert out.shape == (4, 10)
    assert_logits_close(out, eager(model, x), ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("size", [224, 231])
def test_full_res2net50_vd(tmp_path, size):
    """The real vd-50 graph: 3 ceil-mode avg-down pools; at 231 two of them see odd maps (58 -> 29 -> 15 -> 8)."""
    import res2net

    model = randomize_(res2net.create_model("Res2Net50_vd_26w_4s"))
    path = export_onnx(model, tmp_path / "vd50.onnx", input_size=size)
    x = real_batch(size)
    out, _ = run_ort(path, x)
    assert np.isfinite(out.numpy()).all()
    assert_logits_close(out, eager(model, x), ATOL)
