"""Exports of a *trained* model (res2net_tiny on digits) on its real validation images.

fp32 formats: max abs logit difference <= 1e-4 and the same predictions as eager. bf16 (AOTInductor
package compiled from the bf16 model): reported relative logit error and top-1 agreement with
stated bounds — reduced precision is judged by what it does to predictions, not by 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from res2net.export import export_onnx, export_openvino, export_pt2, export_torchscript, load_artifact
from res2net.export.verify import compare_outputs

SIZE = 32  # the digits model's eval size


@pytest.fixture(scope="module")
def trained(digits_model):
    model = digits_model.load()
    x, y = digits_model.val_arrays()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    eager_top1 = float((ref.argmax(1) == y).mean())
    assert eager_top1 >= 0.85, "the fixture should be a trained model"
    return model, x, y, ref, eager_top1


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "torchscript"])
def test_fp32_exports_keep_logits_and_accuracy(tmp_path, trained, fmt):
    model, x, y, ref, eager_top1 = trained
    export = {"onnx": export_onnx, "openvino": export_openvino, "torchscript": export_torchscript}[fmt]
    path = export(model, tmp_path / "digits", input_size=SIZE)
    out = load_artifact(path)(x)
    m = compare_outputs(out, ref)
    assert m["max_abs_diff"] <= 1e-4, m
    assert m["top1_agreement"] == 1.0, m
    assert float((out.argmax(1) == y).mean()) == pytest.approx(eager_top1)


def test_bf16_pt2_reports_error_and_agreement(tmp_path, trained):
    from res2net.cpu import has_bf16

    if not has_bf16():
        pytest.skip("this CPU has no native bf16")
    model, x, y, ref, eager_top1 = trained
    import copy

    from res2net.engines.torch_engine import fold_batchnorm

    bf16 = fold_batchnorm(copy.deepcopy(model)).to(torch.bfloat16)
    path = export_pt2(bf16, tmp_path / "digits_bf16.pt2", input_size=SIZE)
    artifact = load_artifact(path)
    assert artifact.metadata["dtype"] == "bfloat16"
    out = artifact(x)  # float32 in: cast to the package's bf16, logits back as float32
    m = compare_outputs(out, ref)
    print(
        f"bf16 pt2, {len(x)} digits: rel. logit error {m['rel_error']:.2%}, top-1 agreement {m['top1_agreement']:.1%}"
    )
    assert m["rel_error"] <= 0.05 and m["top1_agreement"] >= 0.97, m
    assert float((out.argmax(1) == y).mean()) >= eager_top1 - 0.02
