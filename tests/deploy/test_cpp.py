"""The C++ predictor on ``.pt2`` packages (libtorch), checked against the Python predictor.

What is proven here:
- ``deploy/cpp/build.sh`` builds ``res2net_predict`` in a fresh build directory (conftest.py);
- on real photos (PNG and JPEG, grey, 16-bit, RGBA, EXIF-rotated, odd and small sizes) its preprocessed input equals
  ``EvalTransform``'s (measured: bit-identical with Debian's OpenCV 4.6 vs opencv-python 5.0; the test
  allows one grey level on at most 0.1% of values, for other OpenCV / libjpeg builds);
- its top-5 class ids, scores and labels equal ``res2net.Predictor``'s (scores within 1e-4);
- bad inputs (missing, empty, corrupt, truncated images; files that are not AOTInductor packages)
  end in one ``error:`` line and a non-zero exit, never a crash.

The model is res2net_tiny with seeded random weights and a classifier scaled so the softmax is
peaked (scores 0.2-0.9 rather than 1/classes), which makes a 1e-4 score tolerance meaningful.
Compiling the package (~30 s) happens once per session. The OpenVINO runtime: test_cpp_openvino.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import res2net
from res2net.data.image import load_image
from res2net.data.transforms import EvalTransform
from tests.deploy.conftest import predict_json, run
from tests.utils import randomize_


@pytest.fixture(scope="session")
def package(model, tmp_path_factory) -> Path:
    from res2net.export.pt2 import export_pt2

    # A fixed batch of 2: the binary must pad the last batch (odd image counts) and ignore --batch-size.
    # The dynamic-batch path (batches of 3 and 1) is exercised by the Res2Net50 test.
    return export_pt2(model, tmp_path_factory.mktemp("pt2") / "tiny.pt2", dynamic_batch=False, batch_size=2)


def test_preprocessing_matches_eval_transform(binary, package, images, tmp_path):
    dump = tmp_path / "input.bin"
    results = predict_json(binary, package, ["--image", images[0].parent], "--dump-input", dump, "--batch-size", 4)
    assert [r["image"] for r in results] == [str(p) for p in images]
    ours = np.fromfile(dump, np.float32).reshape(len(images), 3, 224, 224)
    t = EvalTransform()
    std = np.asarray(t.std, np.float32)[:, None, None] * 255
    for i, path in enumerate(images):
        ref = t(load_image(path))
        diff = np.abs(ours[i] - ref) * std  # in grey levels
        assert diff.max() <= 1.0 + 1e-3, f"{path.name}: pixels differ by up to {diff.max():.2f} levels"
        assert (diff > 1e-3).mean() <= 1e-3, f"{path.name}: {(diff > 1e-3).mean():.2%} of values differ"


@pytest.mark.parametrize("shape", [(3, 4000), (4000, 3), (1, 100_000)])
def test_slivers_are_resized_in_the_crop_window_only(binary, package, shape, tmp_path):
    """A 1x100000 PNG resized whole to short side 256 would be 25.6M x 256 pixels (19.6 GB); the binary
    interpolates only the 224x224 window (window_resize.hpp), with cv::resize's positions and fixed-point
    arithmetic: the same pixels as Python's resize_center_crop, which equals resize-then-crop. Run
    under a 6 GB address-space limit, which the whole-image resize of the last shape cannot fit."""
    import resource

    from PIL import Image

    h, w = shape
    path = tmp_path / f"sliver_{h}x{w}.png"
    Image.fromarray(np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    dump = tmp_path / "input.bin"
    limit = 6 << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([str(binary), "--model", str(package), "--image", str(path), "--json", "--dump-input",
                           str(dump)], capture_output=True, text=True, timeout=120, preexec_fn=cap)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = np.fromfile(dump, np.float32).reshape(3, 224, 224)
    t = EvalTransform()
    std = np.asarray(t.std, np.float32)[:, None, None] * 255
    diff = np.abs(ours - t(load_image(path))) * std  # in grey levels
    assert diff.max() <= 1e-3, f"{path.name}: pixels differ by up to {diff.max():.2f} levels"


def test_topk_matches_python_predictor(binary, package, model, images, labels_file):
    from res2net.predict import Predictor

    results = predict_json(
        binary, package, [a for p in images for a in ("--image", p)], "--labels", labels_file, "--batch-size", 3
    )
    pred = Predictor(model, engine="torch", precision="fp32", check=False, labels=labels_file, topk=5)
    expected = pred.predict([str(p) for p in images])
    probs = torch.softmax(pred.forward(pred.preprocess([str(p) for p in images])), 1)
    assert len(results) == len(expected) == len(images)
    spread = 0.0
    for r, e, p in zip(results, expected, probs):
        assert r["image"] == e["filename"]
        ids = [t["class_id"] for t in r["topk"]]
        scores = np.array([t["score"] for t in r["topk"]])
        exact = p[ids].numpy()
        assert np.abs(scores - exact).max() <= 1e-4, (r["image"], scores, exact)
        assert np.abs(scores - np.array(e["scores"])).max() <= 1e-4, (r["image"], scores, e["scores"])
        if ids != e["class_ids"]:  # the same classes in the same order, unless two scores tie within 1e-4
            top = np.sort(p.numpy())[::-1][:6]
            assert np.min(-np.diff(top)) < 1e-4, (r["image"], ids, e["class_ids"])
        assert [t["label"] for t in r["topk"]] == e["label_names"]
        spread = max(spread, scores[0])
    assert spread > 0.3, "scores are flat: the comparison proves little"


def test_text_output_and_batches_agree(binary, package, images, labels_file):
    one = run(binary, "--model", package, "--image", images[0].parent, "--labels", labels_file, "--topk", 3).stdout
    four = run(binary, "--model", package, "--image", images[0].parent, "--labels", labels_file, "--topk", 3,
               "--batch-size", 4).stdout  # fmt: skip

    def parse(out: str) -> list[tuple[str, float, str]]:
        rows = [ln.split(": ", 1)[1].split(", ", 2) for ln in out.splitlines() if ln.startswith("  Top")]
        return [(cid, float(score), label) for cid, score, label in rows]

    a, b = parse(one), parse(four)
    assert len(a) == len(b) == 3 * len(images)
    assert [(c, lab) for c, _, lab in a] == [(c, lab) for c, _, lab in b]
    assert max(abs(x[1] - y[1]) for x, y in zip(a, b)) <= 1e-5  # kernels block batches differently
    assert "  Top1: " in one and ", class " in one  # PaddleClas's "Top{i}: class_id, score, label"
    assert one.count("image: ") == len(images) and " ms" in one
    assert f"{len(images)} image(s), batch 2" in one  # the package's fixed batch wins over --batch-size


def test_benchmark_mode(binary, package, images):
    out = run(binary, "--model", package, "--image", images[0], "--benchmark", "--batch-size", 2, "--iters", 2,
              "--warmup", 1).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if ln.startswith("benchmark:"))
    assert "batch 2" in line and "images/s" in line


@pytest.mark.parametrize(
    "image, message",
    [
        ("missing.jpg", "no such file"),
        ("empty.jpg", "empty"),
        ("text.png", "not an image"),
        ("truncated.jpg", "truncated"),
        ("truncated.png", "corrupt"),
    ],
)
def test_bad_image(binary, package, bad_files, image, message):
    proc = run(binary, "--model", package, "--image", bad_files[image], check=False)
    assert 0 < proc.returncode < 128, f"rc {proc.returncode}: {proc.stderr[-500:]}"
    assert f"error: {bad_files[image]}: " in proc.stderr and message in proc.stderr


def test_bad_image_among_good_ones(binary, package, bad_files, images):
    proc = run(binary, "--model", package, "--image", images[0], "--image", bad_files["text.png"], "--image",
               images[1], "--json", check=False)  # fmt: skip
    assert proc.returncode == 1
    assert [json.loads(line)["image"] for line in proc.stdout.splitlines()] == [str(images[0]), str(images[1])]
    assert "1 of 3 image(s) could not be read" in proc.stderr


@pytest.mark.parametrize(
    "model_file, message",
    [
        ("missing.pt2", "no such file"),
        ("junk.pt2", "not a .pt2 package"),
        ("zip.pt2", "cannot load as an AOTInductor package"),
        ("exported.pt2", "cannot load as an AOTInductor package"),
    ],
)
def test_bad_package(binary, bad_files, images, model_file, message):
    path = bad_files.get(model_file, bad_files["missing.jpg"].with_name(model_file))
    proc = run(binary, "--model", path, "--image", images[0], check=False)
    assert 0 < proc.returncode < 128, f"rc {proc.returncode}: {proc.stderr[-500:]}"
    assert "error: --model" in proc.stderr and message in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--topk", "x"], "--topk: expected an integer"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1"),
        (["--crop-size", "160"], "the package takes 224x224 inputs"),
        (["--frobnicate"], "unknown argument"),
    ],
)
def test_bad_arguments(binary, package, images, args, message):
    proc = run(binary, "--model", package, "--image", images[0], *args, check=False)
    assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr[-500:]


@pytest.mark.slow
def test_res2net50_matches_python_predictor(binary, images, tmp_path):
    """A full Res2Net50_vd_26w_4s (random weights, ~90 s to compile on 2 cores) through the C++ binary."""
    from res2net.export.pt2 import export_pt2
    from res2net.predict import Predictor

    model = randomize_(res2net.create_model("Res2Net50_vd_26w_4s"))
    with torch.no_grad():
        model.fc.weight.mul_(8.0)  # a peaked softmax: 1000 near-equal scores would make 1e-4 meaningless
    package = export_pt2(model, tmp_path / "r50.pt2")
    photos = [p for p in images if p.suffix == ".png"][:4]
    results = predict_json(  # batches of 3 and 1: a dynamic batch below torch.export's lower bound of 2
        binary, package, [a for p in photos for a in ("--image", p)], "--batch-size", 3
    )
    assert len(results) == len(photos)
    pred = Predictor(model, engine="torch", precision="fp32", check=False, topk=5)
    probs = torch.softmax(pred.forward(pred.preprocess([str(p) for p in photos])), 1)
    expected = pred.predict([str(p) for p in photos])
    assert probs.max() > 0.3, "scores are flat: the comparison proves little"
    for r, e, p in zip(results, expected, probs):
        ids = [t["class_id"] for t in r["topk"]]
        scores = np.array([t["score"] for t in r["topk"]])
        assert np.abs(scores - p[ids].numpy()).max() <= 1e-4
        assert ids == e["class_ids"] or np.min(-np.diff(np.sort(p.numpy())[::-1][:6])) < 1e-4
        # ImageNet names without --labels: the export records them for 1000 classes (as from a .pdparams)
        assert [t["label"] for t in r["topk"]] == e["label_names"]


# ------------------------------------------------------------------ res2net_pte_predict (ExecuTorch app)
@pytest.fixture(scope="session")
def pte_binary(binary) -> Path:
    exe = binary.with_name("res2net_pte_predict")
    if not exe.is_file():
        try:
            import executorch  # noqa: F401
        except ImportError:
            pytest.skip("ExecuTorch is not installed (pip install 'res2net[edge]'): res2net_pte_predict not built")
        pytest.fail("ExecuTorch is installed but build.sh did not build res2net_pte_predict")
    return exe


@pytest.fixture(scope="session")
def pte_program(model, tmp_path_factory) -> Path:
    from res2net.export.executorch import export_pte

    return export_pte(model, tmp_path_factory.mktemp("pte") / "tiny.pte", batch_size=2, verify=False)


def test_pte_app_matches_python_predictor(pte_binary, pte_program, model, images, labels_file):
    """An app linking ExecuTorch's C++ runtime (from the wheel) gives the Python predictor's top-5."""
    from res2net.predict import Predictor

    proc = run(pte_binary, "--model", pte_program, "--image", images[0].parent, "--labels", labels_file, "--json")
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    pred = Predictor(model, engine="torch", precision="fp32", check=False, labels=labels_file, topk=5)
    expected = pred.predict([str(p) for p in images])
    probs = torch.softmax(pred.forward(pred.preprocess([str(p) for p in images])), 1)
    assert [r["image"] for r in results] == [str(p) for p in images]  # 15 images, batch 2: last one padded
    for r, e, p in zip(results, expected, probs):
        ids = [t["class_id"] for t in r["topk"]]
        assert np.abs(np.array([t["score"] for t in r["topk"]]) - p[ids].numpy()).max() <= 1e-4
        assert ids == e["class_ids"] or np.min(-np.diff(np.sort(p.numpy())[::-1][:6])) < 1e-4
        assert [t["label"] for t in r["topk"]] == e["label_names"]


def test_pte_app_bad_inputs(pte_binary, pte_program, bad_files, images, tmp_path):
    junk = tmp_path / "junk.pte"
    junk.write_bytes(bad_files["junk.pt2"].read_bytes())
    proc = run(pte_binary, "--model", junk, "--image", images[0], check=False)
    assert proc.returncode == 1 and "not a loadable ExecuTorch program" in proc.stderr
    proc = run(pte_binary, "--model", bad_files["junk.pt2"], "--image", images[0], check=False)
    assert proc.returncode == 1 and "runs ExecuTorch .pte programs only" in proc.stderr
    proc = run(pte_binary, "--model", pte_program, "--image", bad_files["text.png"], check=False)
    assert proc.returncode == 1 and "not an image" in proc.stderr
    proc = run(pte_binary, "--model", pte_program, "--image", images[0], "--crop-size", "160", check=False)
    assert proc.returncode == 1 and "the package takes 224x224 inputs" in proc.stderr
