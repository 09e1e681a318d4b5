"""GPU runners on a trained model (skipped without CUDA; scripts/gpu_checks.sh runs them on a GPU).

fp32 (TF32 off) must match CPU eager within 1e-4; fp16 / bf16 are judged by relative logit error and
top-1 agreement on the digits validation images — what reduced precision does to predictions.
"""

from __future__ import annotations

import pytest
import torch

from res2net.export.verify import compare_outputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def trained(digits_model):
    model = digits_model.load()
    x, y = digits_model.val_arrays()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return model, torch.from_numpy(x), y, ref


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cudagraph_runner_on_trained_model(trained, precision):
    from res2net.benchmark.runners import CudaGraphRunner

    model, x, y, ref = trained
    runner = CudaGraphRunner(model, precision, device="cuda", input_size=x.shape[-1])
    xd = x.to("cuda", runner.dtype).contiguous(memory_format=torch.channels_last)
    out = runner.run(xd).float().cpu().numpy()
    m = compare_outputs(out, ref)
    print(f"cudagraph {precision}: max |diff| {m['max_abs_diff']:.2e}, rel. error {m['rel_error']:.2%}, "
          f"top-1 agreement {m['top1_agreement']:.1%} on {len(x)} digits")  # fmt: skip
    if precision == "fp32":
        assert m["max_abs_diff"] <= 1e-4, m
    else:
        assert m["rel_error"] <= 0.05 and m["top1_agreement"] >= 0.97, m
    assert len(runner.time(len(x), 3)) == 3


def test_pt2_cuda_package_verifies(tmp_path, trained):
    from res2net.export import export_pt2, load_artifact

    model, x, y, ref = trained
    torch.backends.cudnn.allow_tf32 = False
    path = export_pt2(model, tmp_path / "digits_cuda.pt2", input_size=x.shape[-1], device="cuda")
    art = load_artifact(path, device="cuda")
    assert art.metadata.get("model_name") == "res2net_tiny"
    m = compare_outputs(art(x.numpy()), ref)
    assert m["max_abs_diff"] <= 1e-4 and m["top1_agreement"] == 1.0, m
