"""ExecuTorch ``.pte`` (XNNPACK) programs, run with ExecuTorch's own runtime and compared with eager.

fp32: max abs logit difference <= 1e-4 on real photos (a vd tiny model with random weights and BN
statistics, so logits depend on the input). int8 is judged where agreement means something — on
the trained digits model's held-out set — in tests/export/test_quantize_report.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from res2net.export import ExportError
from tests.export.conftest import real_batch
from tests.utils import assert_logits_close

pytest.importorskip("executorch", reason="the pte format needs ExecuTorch: pip install 'res2net[edge]'")


@pytest.fixture(scope="module")
def fp32_pte(tiny_vd_model, tmp_path_factory):
    from res2net.export.executorch import export_pte

    return export_pte(tiny_vd_model, tmp_path_factory.mktemp("pte") / "tiny_vd", batch_size=2, verify=False)


def test_fp32_pte_matches_eager(fp32_pte, tiny_vd_model):
    from res2net.export.executorch import PteModel

    assert fp32_pte.suffix == ".pte" and fp32_pte.stat().st_size > 0
    program = PteModel(fp32_pte)
    assert program.input_shape == (2, 3, 224, 224)
    x = real_batch(224, n=3)  # an odd count: the last chunk is padded to the program's batch of 2
    with torch.no_grad():
        ref = tiny_vd_model(x)
    assert_logits_close(program(x), ref, atol=1e-4)


def test_pte_metadata_and_verify(fp32_pte, tiny_vd_model):
    from res2net.export.executorch import read_metadata, verify_pte

    meta = read_metadata(fp32_pte)
    assert meta["format"] == "pte" and meta["precision"] == "fp32" and meta["backend"] == "xnnpack"
    assert json.loads(meta["input_shape"]) == [2, 3, 224, 224]
    assert json.loads(meta["preprocess"])["resize_short"] == 256
    report = verify_pte(tiny_vd_model, fp32_pte)
    assert report.passed and report.max_abs_diff <= 1e-4 and report.images >= 4


def test_verify_catches_a_different_model(fp32_pte):
    """verify must fail when the file is not the model it is compared with."""
    from res2net.export.executorch import verify_pte
    from tests.export.conftest import tiny_vd

    with pytest.raises(ExportError, match="diff"):
        verify_pte(tiny_vd(seed=1), fp32_pte)


def test_pte_program_and_input_errors(fp32_pte, tmp_path):
    from res2net.export.executorch import PteModel

    bogus = tmp_path / "bogus.pte"
    bogus.write_bytes(b"not a flatbuffer program" * 10)
    with pytest.raises(ExportError, match="not a loadable ExecuTorch program"):
        PteModel(bogus)
    with pytest.raises(ExportError, match="no such"):
        PteModel(tmp_path / "missing.pte")
    with pytest.raises(ExportError, match="takes \\[N, 3, 224, 224\\]"):
        PteModel(fp32_pte)(np.zeros((1, 3, 64, 64), np.float32))


def test_lowering_failure_names_step_and_model(tmp_path, tiny_vd_model, monkeypatch):
    import executorch.exir

    from res2net.export.executorch import export_pte

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(executorch.exir, "to_edge_transform_and_lower", boom)
    with pytest.raises(ExportError, match=r"^ExecuTorch lowering of res2net_tiny failed: boom$"):
        export_pte(tiny_vd_model, tmp_path / "m.pte", verify=False)
    assert not (tmp_path / "m.pte").exists()


def test_export_cli_pte(tmp_path, capsys):
    """``res2net export --format pte`` end to end (a 64 px input keeps it quick), verified with ExecuTorch."""
    from res2net.cli import main

    out = tmp_path / "tiny.pte"
    rc = main(["export", "--model", "res2net_tiny", "--format", "pte", "--output", str(out), "--input-size", "64",
               "--verify", "--json"])  # fmt: skip
    assert rc == 0 and out.is_file() and (tmp_path / "tiny.pte.json").is_file()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["format"] == "pte" and summary["verify"]["passed"]
    assert summary["verify"]["max_abs_diff"] <= 1e-4


def test_quantize_flag_only_for_pte_and_openvino(tmp_path, capsys):
    from res2net.cli import main

    rc = main(["export", "--model", "res2net_tiny", "--format", "onnx", "--output", str(tmp_path / "m.onnx"),
               "--quantize", "int8"])  # fmt: skip
    assert rc == 1 and "--quantize is for --format openvino or pte" in capsys.readouterr().err


def test_int8_calibration_leaves_out_outlier_images(digits_model):
    """Calibration images with extreme activations (here: images x 25) must not set the observers' ranges.

    The PT2E recipe drops the images with the most extreme fp32 logits before calibrating, as the ONNX
    Runtime / OpenVINO recipes do; without that, two such images out of 98 wreck the int8 model.
    """
    from res2net.export.executorch import quantize_pt2e
    from res2net.runtime import compare_logits

    model = digits_model.load()
    x, y = digits_model.val_arrays()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    calib = np.concatenate([x[::3][:96], 25.0 * x[:2]])
    s = digits_model.crop_size
    errors = {}
    for fraction in (None, 0.0):  # None: the default trim
        program = quantize_pt2e(model, s, s, calib, batch_size=len(x), outlier_fraction=fraction)
        with torch.no_grad():
            out = program.module()(torch.from_numpy(x)).numpy()
        report = compare_logits(out, ref, "executorch", "int8")
        errors[fraction] = report.rel_error
        print(f"pte int8, outlier_fraction={fraction}: {report.summary()}")
        if fraction is None:
            assert report.rel_error <= 0.05 and report.top1_agreement >= 0.95, report.summary()
    assert errors[0.0] > 3 * errors[None]  # the outliers do hurt when kept: the test can fail
