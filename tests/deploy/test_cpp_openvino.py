"""The C++ predictor on OpenVINO IR (OpenVINO's C++ API from the wheel), checked against the Python predictor.

What is proven here:
- on real photos (PNG and JPEG, grey, 16-bit, RGBA, EXIF-rotated, odd and small sizes) the top-5 of
  ``res2net_predict`` on an fp32 IR equal ``res2net.Predictor(engine="openvino")``'s: the same class ids
  and names, scores within 1e-4 — with the preprocessing and class names read from the IR, no flags;
  a batch split over streams and one multi-threaded pass agree;
- on the *trained* digits model, the int8 IR that ``export_openvino(quantize="int8")`` writes gives the
  same top-1 as the Python int8 engine (same NNCF recipe and calibration) and keeps the accuracy;
- bad images among good ones get one ``error:`` line each and the rest of the batch is still predicted;
  files that are not IRs, a missing ``.bin`` and a wrong crop size are one-line errors.

The fp32 model is conftest's peaked res2net_tiny (random weights, softmax scores 0.2-0.9).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.conftest import predict_json, run

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def ir(model, labels_file, tmp_path_factory) -> Path:
    from res2net.export.openvino import export_openvino

    return export_openvino(model, tmp_path_factory.mktemp("ir") / "tiny.xml", labels=labels_file)


@pytest.fixture(scope="module")
def python_openvino(model, labels_file, tmp_path_factory):
    from res2net.predict import Predictor

    cache = tmp_path_factory.mktemp("ov-cache")
    return Predictor(model, engine="openvino", precision="fp32", check=False, labels=labels_file, cache_dir=cache)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("batch", [1, 3])
def test_topk_matches_python_openvino_predictor(binary, ir, python_openvino, images, batch):
    """Batch 1 runs one multi-threaded pass, batch 3 one share per stream (the last one padded)."""
    results = predict_json(binary, ir, [a for p in images for a in ("--image", p)], "--batch-size", batch)
    paths = [str(p) for p in images]
    expected = python_openvino.predict(paths)
    probs = softmax(np.asarray(python_openvino.forward(python_openvino.preprocess(paths)), np.float64))
    assert [r["image"] for r in results] == [e["filename"] for e in expected] == paths
    for r, e, p in zip(results, expected, probs):
        ids = [t["class_id"] for t in r["topk"]]
        scores = np.array([t["score"] for t in r["topk"]])
        assert np.abs(scores - p[ids]).max() <= 1e-4, (r["image"], scores, p[ids])
        assert np.abs(scores - np.array(e["scores"])).max() <= 1e-4, (r["image"], scores, e["scores"])
        if ids != e["class_ids"]:  # the same classes in the same order, unless two scores tie within 1e-4
            assert np.min(-np.diff(np.sort(p)[::-1][:6])) < 1e-4, (r["image"], ids, e["class_ids"])
        assert [t["label"] for t in r["topk"]] == e["label_names"]  # from the IR's metadata, no --labels
    assert probs.max() > 0.3, "scores are flat: the comparison proves little"


def test_text_output_streams_and_benchmark(binary, ir, images):
    out = run(binary, "--model", ir, "--image", images[0].parent, "--batch-size", 4, "--topk", 1).stdout
    assert "OpenVINO" in out.splitlines()[0] and "fp32" in out.splitlines()[0]
    assert f"{len(images)} image(s), batch 4" in out and out.count("image: ") == len(images)
    assert "  Top1: " in out and ", class " in out  # "Top{i}: class_id, score, label", label from the IR
    assert out.splitlines()[-1].startswith(f"total: {len(images)} image(s) in ")
    one_pass = run(binary, "--model", ir, "--image", images[0].parent, "--batch-size", 4, "--topk", 1,
                   "--streams", "1").stdout  # fmt: skip
    tops = lambda s: [ln.split(", ")[:2] for ln in s.splitlines() if ln.startswith("  Top1")]  # noqa: E731
    assert [c for c, _ in tops(out)] == [c for c, _ in tops(one_pass)]
    assert max(abs(float(a[1]) - float(b[1])) for a, b in zip(tops(out), tops(one_pass))) <= 1e-5

    proc = run(binary, "--model", ir, "--image", images[0], "--benchmark", "--json", "--batch-size", 4,
               "--iters", 3, "--warmup", 1)  # fmt: skip
    bench = json.loads(proc.stdout.splitlines()[0])["benchmark"]
    assert bench["batch"] == 4 and len(bench["samples_ms"]) == 3 and bench["median_ms"] > 0
    assert bench["preprocess_ms_per_image"] > 0


@pytest.mark.parametrize("decode_threads", [0, 3])
def test_bad_images_among_good_ones(binary, ir, images, bad_files, decode_threads):
    """Decoding in turn (0) or on threads ahead of inference (3): the same results, errors, order."""
    bad = ["missing.jpg", "empty.jpg", "text.png", "truncated.jpg", "truncated.png"]
    good = images[:6]
    order = [good[0], bad_files[bad[0]], good[1], bad_files[bad[1]], bad_files[bad[2]], good[2], good[3],
             bad_files[bad[3]], good[4], bad_files[bad[4]], good[5]]  # fmt: skip
    proc = run(binary, "--model", ir, *[a for p in order for a in ("--image", p)], "--batch-size", 4, "--json",
               "--decode-threads", decode_threads, check=False)  # fmt: skip
    assert proc.returncode == 1
    results = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [r["image"] for r in results] == [str(p) for p in good]
    alone = predict_json(binary, ir, [a for p in good for a in ("--image", p)], "--decode-threads", 0)
    for r, ref in zip(results, alone, strict=True):  # batch 4 here, 1 there: scores within float noise
        assert [t["class_id"] for t in r["topk"]] == [t["class_id"] for t in ref["topk"]]
        np.testing.assert_allclose([t["score"] for t in r["topk"]], [t["score"] for t in ref["topk"]], atol=1e-5)
    errors = proc.stderr.splitlines()
    assert len(errors) == len(bad) + 1 and all(ln.startswith("error: ") for ln in errors)
    for name, line in zip(bad, errors):
        assert line.startswith(f"error: {bad_files[name]}: ")
    assert errors[-1] == f"error: {len(bad)} of {len(order)} image(s) could not be read"


def test_bad_packages(binary, ir, images, tmp_path):
    junk_xml = tmp_path / "junk.xml"
    junk_xml.write_text("<?xml version='1.0'?><html>not an IR</html>")
    junk_xml.with_suffix(".bin").write_bytes(b"\0" * 16)
    broken = tmp_path / "broken.xml"
    broken.write_text(ir.read_text()[:2000])  # an IR cut short
    broken.with_suffix(".bin").write_bytes(ir.with_suffix(".bin").read_bytes())
    no_bin = tmp_path / "no_bin.xml"
    no_bin.write_bytes(ir.read_bytes())
    other = tmp_path / "model.onnx"
    other.write_bytes(b"not a model")
    cases = [
        (junk_xml, [], "cannot read as an OpenVINO IR: no <net version=...> element"),
        (broken, [], "cannot read as an OpenVINO IR: "),
        (no_bin, [], "no_bin.bin is missing"),
        (ir.with_suffix(".bin"), [], "pass the OpenVINO IR's .xml"),
        (other, [], "not a package this program runs"),
        (tmp_path / "missing.xml", [], "no such file"),
        (ir, ["--crop-size", "160"], "the package takes 224x224 inputs"),
    ]
    for path, extra, message in cases:
        proc = run(binary, "--model", path, "--image", images[0], *extra, check=False)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], (path, proc.stderr)


def test_int8_agrees_with_python_int8_on_trained_digits(binary, digits_model, tmp_path):
    """The int8 IR `export_openvino(quantize="int8")` writes is the Python int8 engine's model: same
    top-1 on the 359 digits val images, and int8 keeps the trained model's accuracy."""
    from res2net.export.openvino import export_openvino
    from res2net.predict import Predictor
    from res2net.runtime.openvino_engine import OpenVINOEngine

    reason = OpenVINOEngine.unavailable_reason("int8", "cpu")
    if reason:  # OpenVINO lists INT8 on every x86 CPU it supports (AVX2 included); nncf may be missing
        pytest.skip(f"no OpenVINO int8 here: {reason}")
    model, transform = digits_model.load(), digits_model.transform()
    samples = sorted(digits_model.val_samples, key=lambda s: str(s[0]))
    calibration = [str(p) for p, _ in samples[::4]]  # ~90 images, the same for both
    xml = export_openvino(model, tmp_path / "digits_int8.xml", input_size=digits_model.crop_size, transform=transform,
                          labels=digits_model.label_list, quantize="int8", calibration=calibration)  # fmt: skip
    results = predict_json(binary, xml, ["--image", digits_model.val_dir], "--batch-size", 8, "--topk", 1)
    assert [r["image"] for r in results] == [str(p) for p, _ in samples]
    cpp = np.array([r["topk"][0]["class_id"] for r in results])

    pred = Predictor(model, engine="openvino", precision="int8", transform=transform, calibration=calibration,
                     labels=digits_model.label_list, check=False, cache_dir=tmp_path / "cache")  # fmt: skip
    python = pred.predict([str(p) for p, _ in samples], topk=1)
    py = np.array([e["class_ids"][0] for e in python])
    labels = np.array([y for _, y in samples])
    agreement = float((cpp == py).mean())
    print(f"int8 digits: C++ vs Python top-1 agreement {agreement:.2%}, C++ accuracy {(cpp == labels).mean():.2%}, "
          f"fp32 training run {digits_model.val_top1:.2%}")  # fmt: skip
    assert agreement >= 0.99
    assert (cpp == labels).mean() >= digits_model.val_top1 - 0.03
    assert [r["topk"][0]["label"] for r in results] == [e["label_names"][0] for e in python]
