"""int8 that keeps a *trained* model's answers: ExecuTorch (PT2E/XNNPACK), ONNX Runtime (QDQ) and
OpenVINO (NNCF), each calibrated on the digits train split and judged on the held-out val split.

The bar is the issue's: top-1 agreement with fp32 >= 99% and accuracy drop <= 1 point. Random
weights would make this meaningless (flat logits agree by accident), hence the trained
``digits_model`` fixture (tests/conftest.py). The same run checks ``res2net quantize-report``'s
numbers: fp32 rows reproduce eager PyTorch (ExecuTorch fp32 within 1e-4) and the fp32 accuracy
is the one the training run measured.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("executorch", reason="the pte format needs ExecuTorch: pip install 'res2net[edge]'")

INT8_ENGINES = ("onnxruntime", "openvino", "executorch")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def report(digits_model, cache_dir):
    from res2net.benchmark.quantize_report import quantize_report

    rows, data = quantize_report(
        digits_model.model_name,
        digits_model.weights,
        num_classes=digits_model.num_classes,
        transform=digits_model.transform(),
        engines=("torch", *INT8_ENGINES),
        precisions=("fp32", "int8"),
        calibration=digits_model.data_root / "train",
        eval_set=digits_model.val_list,
        batch_sizes=(1, 4),
        warmup=1,
        iters=2,
        threads=2,
        cache_dir=cache_dir,
    )
    return {(r.engine, r.precision): r for r in rows}, data


def test_eval_set_is_the_labelled_val_split(report, digits_model):
    _, data = report
    assert data.labels is not None and len(data.inputs) == len(digits_model.val_samples)
    assert data.inputs.shape[1:] == (3, 32, 32)


def test_fp32_rows_reproduce_eager(report, digits_model):
    rows, _ = report
    ref = rows["torch", "fp32"]
    assert ref.top1_agreement == 1.0 and ref.accuracy_delta == 0.0
    # The report's fp32 accuracy is the one the training run measured on the same split.
    assert abs(ref.accuracy - digits_model.val_top1) <= 0.003, (ref.accuracy, digits_model.val_top1)
    for engine in INT8_ENGINES:
        row = rows[engine, "fp32"]
        assert not row.note, row.note
        assert row.top1_agreement == 1.0, engine
        assert row.max_abs_diff <= 1e-4 * max(1.0, abs(row.max_abs_diff)), (engine, row.max_abs_diff)


@pytest.mark.parametrize("engine", INT8_ENGINES)
def test_int8_keeps_the_trained_models_answers(report, engine):
    rows, data = report
    row, fp32 = rows[engine, "int8"], rows[engine, "fp32"]
    assert not row.note, row.note
    n = len(data.inputs)
    assert row.top1_agreement >= 0.99, f"{engine} int8 agrees with fp32 on {row.top1_agreement:.2%} of {n} images"
    assert row.accuracy_delta >= -0.01, f"{engine} int8 loses {-100 * row.accuracy_delta:.2f} points"
    assert 0 < row.rel_error < 0.2, (engine, row.rel_error)  # quantized: not bit-identical, not broken
    assert row.size_mb < 0.5 * fp32.size_mb, (engine, row.size_mb, fp32.size_mb)
    assert row.latency_ms[1] > 0
    if engine != "executorch":
        assert row.latency_ms[4] > 0
    else:
        assert row.latency_ms[4] is None  # a .pte has a fixed batch of 1 here


def test_quantize_report_cli(digits_model, cache_dir, report, capsys):
    """The command prints the table (artifacts come from the fixture's cache: no rebuild)."""
    from res2net.cli import main

    args = ["quantize-report", digits_model.model_name, "--weights", str(digits_model.weights), "--num-classes", "10",
            "--resize-short", "32", "--crop-size", "32", "--engines", "onnxruntime,executorch", "--precisions",
            "fp32,int8", "--calibration", str(digits_model.data_root / "train"), "--eval", str(digits_model.val_list),
            "--batch-sizes", "1", "--iters", "1", "--warmup", "0", "--cache-dir", str(cache_dir)]  # fmt: skip
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = {(r["engine"], r["precision"]): r for r in out["rows"]}
    assert set(got) == {
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("executorch", "fp32"),
        ("executorch", "int8"),
    }
    rows, _ = report
    for key, r in got.items():
        assert r["top1_agreement"] == pytest.approx(rows[key].top1_agreement)
    assert main([*args, "--markdown"]) == 0
    table = capsys.readouterr().out
    assert "| onnxruntime | int8 |" in table and "Δ acc (pts)" in table
    recipe = got["onnxruntime", "int8"]["recipe"]  # chosen for this CPU kind, and said so
    assert recipe.split()[0] in ("u8s8", "u8s8-reduce-range") and recipe in table and out["cpu"]


def test_quantize_report_rejects_unknown_engine(digits_model):
    from res2net.benchmark.quantize_report import quantize_report
    from res2net.errors import Res2NetError

    with pytest.raises(Res2NetError, match="unknown engine"):
        quantize_report(digits_model.model_name, digits_model.weights, engines=("tensorrt",))
