"""TorchScript export: frozen trace, batch-agnostic, metadata in an extra file."""

from __future__ import annotations

import torch

from res2net.export import export_torchscript, load_torchscript, verify_export
from tests.export.conftest import real_batch
from tests.utils import assert_logits_close

ATOL = 1e-4


def test_trace_matches_eager_at_odd_size_any_batch(tmp_path, tiny_vd_model):
    path = export_torchscript(tiny_vd_model, tmp_path / "m", input_size=231)
    assert path.name == "m.pt"
    module, meta = load_torchscript(path)
    assert meta["model_name"] == "res2net_tiny" and meta["format"] == "torchscript"
    x = real_batch(231)
    with torch.no_grad():
        ref = tiny_vd_model(x)
        assert_logits_close(module(x), ref, ATOL)
        assert (module(x[:1]) - ref[:1]).abs().max() <= ATOL


def test_softmax_verified(tmp_path, tiny_vd_model):
    path = export_torchscript(tiny_vd_model, tmp_path / "p.pt", softmax=True, freeze=False)
    report = verify_export(path, tiny_vd_model)
    assert report.passed and report.output == "probabilities" and report.max_abs_diff <= 1e-6
