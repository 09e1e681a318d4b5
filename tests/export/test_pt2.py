"""torch.export + AOTInductor ``.pt2``: loads in Python (aoti_load_package) and from libtorch C++."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from res2net.export import ExportError, export_pt2, load_pt2, verify_export
from tests.export.conftest import real_batch
from tests.utils import assert_logits_close

ATOL = 1e-4
SIZE = 231  # odd: the ceil-mode avg-down pools see odd maps


@pytest.fixture(scope="module")
def pt2_file(tmp_path_factory, tiny_vd_model) -> Path:
    return export_pt2(tiny_vd_model, tmp_path_factory.mktemp("pt2") / "tiny", input_size=SIZE)


def test_python_load_dynamic_batch_and_metadata(pt2_file, tiny_vd_model):
    assert pt2_file.suffix == ".pt2"
    runner = load_pt2(pt2_file)
    meta = runner.get_metadata()
    assert meta["model_name"] == "res2net_tiny" and meta["output_name"] == "logits"
    assert meta["AOTI_DEVICE_KEY"] == "cpu"
    x = real_batch(SIZE)
    with torch.no_grad():
        ref = tiny_vd_model(x)
        assert_logits_close(runner(x), ref, ATOL)
        assert (runner(x[1:2]) - ref[1:2]).abs().max() <= ATOL  # batch 1 from the same package


def test_verify_report(pt2_file, tiny_vd_model):
    report = verify_export(pt2_file, tiny_vd_model)
    assert report.passed and report.format == "pt2" and report.images >= 4
    assert report.max_abs_diff <= ATOL and report.top1_agreement == 1.0


def test_missing_package_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="no such .pt2"):
        load_pt2(tmp_path / "nope.pt2")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++20 compiler")
def test_cpp_loader_runs_the_package(pt2_file, tiny_vd_model, tmp_path):
    """What deploy/cpp does: torch::inductor::AOTIModelPackageLoader(path).run({x}) — same logits as eager."""
    torch_dir = Path(torch.__file__).parent
    exe = tmp_path / "load_pt2"
    cmd = [
        "g++", "-std=c++20", "-O1", str(Path(__file__).with_name("load_pt2.cpp")), "-o", str(exe),
        f"-I{torch_dir / 'include'}", f"-I{torch_dir / 'include/torch/csrc/api/include'}",
        f"-L{torch_dir / 'lib'}", f"-Wl,-rpath,{torch_dir / 'lib'}", "-ltorch", "-ltorch_cpu", "-lc10",
    ]  # fmt: skip
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    x = real_batch(SIZE)
    x.numpy().tofile(tmp_path / "in.f32")
    run = subprocess.run(
        [str(exe), str(pt2_file), str(tmp_path / "in.f32"), str(len(x)), str(SIZE), str(tmp_path / "out.f32")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "model_name=res2net_tiny" in run.stdout
    out = torch.from_numpy(np.fromfile(tmp_path / "out.f32", dtype=np.float32).reshape(len(x), -1))
    with torch.no_grad():
        assert_logits_close(out, tiny_vd_model(x), ATOL)
