"""CPU-kind dependent choices (res2net.cpu): what ``auto`` tries on each ISA, and PyTorch / OpenVINO with
their kernels capped at AVX2 (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``) on whatever CPU runs this.

ONNX Runtime cannot be capped; its AVX2 kernels are tested on an emulated CPU in
tests/export/test_quantize_isa.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import res2net
from res2net.cpu import ISA_LEVELS, cpu_flags, has_bf16
from res2net.engines import auto_candidates


@pytest.mark.parametrize("cap", list(ISA_LEVELS))
def test_auto_order_per_isa(cap, monkeypatch):
    """The order documented in docs/predict.md ("What auto picks on each CPU kind")."""
    monkeypatch.setenv("RES2NET_CPU_ISA", cap)
    order = auto_candidates("cpu")
    precisions = [p for _, p in order]
    if "bf16" in precisions:  # native bf16 only: emulated bf16 is slower than fp32
        assert has_bf16() and cap in ("avx512_bf16", "amx")
    if cap in ("avx2", "avx512"):  # no VNNI: int8 still beats fp32, no bf16
        assert "bf16" not in precisions
    if cap in ("avx512_vnni", "avx512_bf16", "amx") and "avx512_vnni" in cpu_flags():
        assert precisions[0] == "int8"
    assert precisions.index("fp32") > max((i for i, p in enumerate(precisions) if p != "fp32"), default=-1)
    assert order[-1] == ("torch", "fp32")


_CAPPED = r"""
import json, sys
import numpy as np, torch
import res2net
from res2net.engines import auto_candidates
torch.manual_seed(0)
model = res2net.create_model("res2net_tiny").eval()
x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    np.save(sys.argv[1], model(x).numpy())
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "auto": auto_candidates("cpu")}))
"""


def test_pytorch_capped_at_avx2_matches_native(tmp_path):
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "RES2NET_CPU_ISA": "avx2"}
    out = []
    for name, e in (("native", os.environ), ("avx2", env)):
        proc = subprocess.run(
            [sys.executable, "-c", _CAPPED, str(tmp_path / f"{name}.npy")], env=e, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert out[1]["capability"] == "AVX2", out[1]  # PyTorch's own kernels really ran their AVX2 builds
    assert all(p != "bf16" for _, p in out[1]["auto"])
    native, capped = np.load(tmp_path / "native.npy"), np.load(tmp_path / "avx2.npy")
    assert np.abs(native).max() > 0.1
    np.testing.assert_allclose(capped, native, atol=1e-4, rtol=0)  # same fp32 answers from AVX2 kernels


def test_openvino_capped_at_avx2_runs_avx2_kernels(tmp_path):
    pytest.importorskip("openvino")
    from res2net.export import export_openvino

    model = res2net.create_model("res2net_tiny").eval()
    xml = export_openvino(model, tmp_path / "m.xml", input_size=64)
    script = (
        "import json, sys, numpy as np, openvino as ov\n"
        "m = ov.Core().compile_model(sys.argv[1], 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
        "np.save(sys.argv[2], m(np.load(sys.argv[3]))[0])\n"
        "ops = [op.get_rt_info() for op in m.get_runtime_model().get_ops()]\n"
        "print(json.dumps(sorted({i['primitiveType'].astype(str) for i in ops if 'primitiveType' in i})))\n"
    )
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    args = [sys.executable, "-c", script, str(xml), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kernels = json.loads(proc.stdout.strip().splitlines()[-1])
    conv = [k for k in kernels if "conv" in k or k.startswith("jit_")]
    assert any("avx2" in k for k in conv), kernels
    assert not any("avx512" in k and "conv" in k for k in kernels), kernels  # convolutions capped at AVX2
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, atol=1e-4, rtol=0)
