"""Run code on an emulated AVX2-only CPU (AMD Zen 3), from a test on any x86-64 machine.

ONNX Runtime picks its int8 kernels from CPUID and has no switch to cap them, so the only way to see
what an AVX2 machine computes, on an AVX-512/VNNI one, is to run the process under an emulated CPU:
``qemu-x86_64 -cpu EPYC-Milan`` (Debian's ``qemu-user``, installed by scripts/setup.sh) reports Zen 3's
CPUID — AVX2 + FMA, no AVX-512, no VNNI — and emulates those instructions, so the libraries pick their
AVX2 kernels exactly as on that machine. Emulation is slow (the fp32 kernels ~100x), so only the int8
inference runs there, on a few images; models and reference logits are made natively.

``/proc/cpuinfo`` is not emulated (it shows the host's flags), which is why res2net's own choices are
steered with ``RES2NET_CPU_ISA`` in these tests (see :mod:`res2net.cpu`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EMULATED_CPU = "EPYC-Milan"  # AMD Zen 3: AVX2 + FMA, no AVX-512, no VNNI, no bf16

_RUNNER = r"""
import json, sys
import numpy as np
kind, model, x_path, out_path = sys.argv[1:5]
x = np.load(x_path)
if kind == "onnxruntime":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.log_severity_level = 3
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    y, kernels = s.run(None, {s.get_inputs()[0].name: x})[0], []
else:
    import openvino as ov
    c = ov.Core()
    m = c.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    y = m(x)[0]
    info = [op.get_rt_info() for op in m.get_runtime_model().get_ops()]
    kernels = sorted({i["primitiveType"].astype(str) for i in info if "primitiveType" in i})
np.save(out_path, y)
print(json.dumps(kernels))
"""


def qemu() -> str:
    """The ``qemu-x86_64`` binary, or skip (fail under CI, which must have it: scripts/setup.sh installs it)."""
    path = shutil.which("qemu-x86_64")
    if path is None:
        reason = "qemu-x86_64 not installed (Debian package qemu-user; scripts/setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must emulate the AVX2 CPU: {reason}")
        pytest.skip(reason)
    return path


def run_emulated(
    kind: str, model: str | Path, x: np.ndarray, tmp_path: Path, emulate: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Logits of ``model`` (``kind``: ``"onnxruntime"`` ONNX file or ``"openvino"`` IR) on ``x``, run on the
    emulated Zen 3 (``emulate=False``: the same script on this CPU), and the kernel names OpenVINO chose
    (empty for ONNX Runtime, which does not say)."""
    import json

    script, x_path, out = tmp_path / "run_emulated.py", tmp_path / "x.npy", tmp_path / "y.npy"
    script.write_text(_RUNNER)
    np.save(x_path, np.ascontiguousarray(x, np.float32))
    cmd = [sys.executable, str(script), kind, str(model), str(x_path), str(out)]
    if emulate:
        cmd = [qemu(), "-cpu", EMULATED_CPU, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"emulated {kind} run failed:\n{proc.stderr[-3000:]}"
    return np.load(out), json.loads(proc.stdout.strip().splitlines()[-1])
