"""``res2net.Predictor`` and ``res2net predict``: engines vs PyTorch eager, auto selection, cache, CLI.

Tolerances (issue #4): every fp32 engine within 1e-4 (max |logit difference|) of PyTorch eager on
real photos; bf16/int8 engines report relative logit error and top-1 agreement, measured on the
*trained* digits model (tests/conftest.py) — relative error <= 5%, agreement >= 95%, and accuracy
on the labelled val images within 2 points of fp32.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import res2net
from res2net.data.image import ImageError, escape_name, load_image
from res2net.data.transforms import EvalTransform
from res2net.export.quantize import sample_images
from res2net.models.fuse import fold_batchnorm
from res2net.predict import Predictor, load_labels
from res2net.predict.postprocess import top_k
from res2net.runtime import auto_candidates, engine_class
from tests.utils import assert_logits_close, randomize_

ROOT = Path(__file__).resolve().parents[1]
SMALL = EvalTransform(resize_short=73, crop_size=64)  # keeps the random-weights tests fast


def available(engine: str, precision: str = "fp32") -> bool:
    return engine_class(engine).unavailable_reason(precision, "cpu") is None


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A 1000-class res2net_tiny with random weights and BN statistics (input-dependent logits)."""
    from safetensors.torch import save_file

    model = randomize_(res2net.create_model("res2net_tiny"), seed=3)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={"model": "res2net_tiny", "origin": "paddle"},
    )
    return path


def eager_logits(model, x: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).float()


# ------------------------------------------------------------------------------------ torch engine
def test_fold_batchnorm_matches_eager():
    for name in ("res2net_tiny", "Res2Net50_vd_26w_4s", "res2net50_26w_4s"):
        model = randomize_(res2net.create_model(name), seed=1)
        x = torch.from_numpy(np.stack([SMALL(load_image(f)) for f in sample_images()[:3]]))
        with torch.no_grad():
            ref = model(x)
            folded = fold_batchnorm(__import__("copy").deepcopy(model))
            out = folded(x)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()), name
        assert_logits_close(out, ref, atol=1e-4)


# ------------------------------------------------------------------------------------ fp32 parity
@pytest.mark.parametrize("engine", ["torch", "onnxruntime", "openvino"])
def test_fp32_engines_match_eager_on_real_photos(engine, tiny_weights, cache):
    if not available(engine):
        pytest.skip(f"{engine} not installed")
    p = Predictor("res2net_tiny", tiny_weights, engine=engine, precision="fp32", transform=SMALL, cache_dir=cache)
    assert p.accuracy is not None and p.accuracy.passed, p.accuracy
    batch = p.preprocess(sample_images())
    assert batch.dtype == torch.float32 and batch.shape == (len(sample_images()), 3, 64, 64)
    out = p.forward(batch)
    assert isinstance(out, torch.Tensor)
    assert_logits_close(out, eager_logits(p.torch_model(), batch.numpy()), atol=1e-4)
    assert isinstance(p.forward(batch.numpy()), np.ndarray)  # numpy in, numpy out


# ------------------------------------------------------------------------------------ reduced precision
REDUCED = [("openvino", "int8"), ("onnxruntime", "int8"), ("openvino", "bf16"), ("torch", "bf16")]


@pytest.fixture(scope="module")
def digits(digits_model, tmp_path_factory):
    x, y = digits_model.val_arrays()
    with torch.inference_mode():
        ref = digits_model.load()(torch.from_numpy(x)).numpy()
    # calibration: 120 train images (not the val images the accuracy is measured on)
    lines = (digits_model.data_root / "train_list.txt").read_text().splitlines()[::10]
    calib = tmp_path_factory.mktemp("calib") / "calib_list.txt"
    calib.write_text("\n".join(str(digits_model.data_root / ln.rsplit(" ", 1)[0]) for ln in lines) + "\n")
    return x, y, ref, calib


@pytest.mark.parametrize("engine,precision", REDUCED)
def test_reduced_precision_on_trained_model(engine, precision, digits_model, digits, cache):
    if not available(engine, precision):
        pytest.skip(
            f"{engine} {precision} unavailable here: {engine_class(engine).unavailable_reason(precision, 'cpu')}"
        )
    x, y, ref, calib = digits
    p = Predictor(
        digits_model.model_name,
        digits_model.weights,
        engine=engine,
        precision=precision,
        transform=digits_model.transform(),
        calibration=calib,
        check_images=digits_model.val_dir,
        labels=digits_model.label_list,
        cache_dir=cache,
    )
    assert p.accuracy.passed, p.accuracy.summary()
    out = p.forward(x)
    c = lambda t: t - t.mean(1, keepdims=True)  # noqa: E731
    rel = float((np.linalg.norm(c(out) - c(ref), axis=1) / np.linalg.norm(c(ref), axis=1)).mean())
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    acc, acc32 = float((out.argmax(1) == y).mean()), float((ref.argmax(1) == y).mean())
    print(f"\n{engine} {precision}: rel. logit error {rel:.2%}, top-1 agreement {agree:.1%}, acc {acc:.1%}/{acc32:.1%}")
    assert rel <= 0.05 and agree >= 0.95 and acc >= acc32 - 0.02, (rel, agree, acc, acc32)
    r = p.predict(digits_model.val_samples[0][0])[0]
    assert r["label_names"][0] in {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def test_auto_picks_fastest_checked_engine_and_caches(digits_model, digits, cache, monkeypatch):
    _, _, _, calib = digits
    kw = dict(transform=digits_model.transform(), calibration=calib, check_images=digits_model.val_dir, cache_dir=cache)
    first = auto_candidates("cpu")[0]
    p = Predictor(digits_model.model_name, digits_model.weights, engine="auto", **kw)
    assert (p.engine_name, p.precision) == first and p.accuracy.passed
    # second start: artifact and check result come from the cache; the PyTorch model is never built
    q = Predictor(digits_model.model_name, digits_model.weights, engine="auto", **kw)
    assert (q.engine_name, q.precision) == first and q._module is None
    # a reduced precision that fails its check is skipped, with the reason, for the next candidate
    monkeypatch.setattr("res2net.accuracy.REDUCED_MIN_TOP1", 1.01)
    other = Predictor(digits_model.model_name, digits_model.weights, engine="auto", **kw)
    assert other.precision == "fp32" and other.accuracy.passed  # cached verdicts are re-judged too


def test_auto_without_check_uses_fp32(tiny_weights, cache):
    p = Predictor("res2net_tiny", tiny_weights, engine="auto", check=False, transform=SMALL, cache_dir=cache)
    assert p.precision == "fp32" and p.accuracy is None
    with pytest.raises(res2net.runtime.EngineError, match="only after its accuracy check"):
        Predictor("res2net_tiny", tiny_weights, precision="int8", check=False, transform=SMALL, cache_dir=cache)


# ------------------------------------------------------------------------------------ API behaviour
def test_predict_results(tiny_weights, cache):
    p = Predictor("res2net_tiny", tiny_weights, engine="torch", transform=SMALL, cache_dir=cache, topk=3)
    files = sample_images()
    arr = load_image(files[0])
    res = p.predict([*files, arr])
    assert [r["filename"] for r in res] == [str(f) for f in files] + [None]
    for r in res:
        assert len(r["class_ids"]) == 3 and len(r["label_names"]) == 3
        assert r["scores"] == sorted(r["scores"], reverse=True) and 0 < sum(r["scores"]) <= 1.0 + 1e-4
    assert res[0]["label_names"][0] == load_labels()[res[0]["class_ids"][0]]
    assert res[-1]["class_ids"] == res[0]["class_ids"]  # same pixels, same answer
    # a folder is expanded; predict raises on a bad image, iter_predict reports it and goes on
    assert len(p.predict(files[0].parent)) == len(files)
    with pytest.raises(ImageError, match="missing.jpg"):
        p.predict([files[0], "missing.jpg"])
    out = list(p.iter_predict([files[0], "missing.jpg", files[1]], batch_size=2))
    assert [("error" in r) for r in out] == [False, True, False] and "missing.jpg" in out[1]["error"]


def test_softmax_topk_and_labels(tmp_path):
    idx, probs = top_k(np.array([[1.0, 3.0, 2.0, 1000.0]]), 3)
    assert idx.tolist() == [[3, 1, 2]] and np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1.0)
    labels = load_labels()
    assert len(labels) == 1000 and labels[0] == "tench, Tinca tinca" and labels[285] == "Egyptian cat"
    from torchvision.models import ResNet50_Weights

    tv = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    mismatched = [i for i, (a, b) in enumerate(zip(tv, labels)) if a.lower() != b.split(",")[0].lower()]
    assert mismatched == [134, 639]  # torchvision's de-duplicated "crane bird" and "maillot tank suit"
    (tmp_path / "plain.txt").write_text("cat\ndog\n")
    assert load_labels(tmp_path / "plain.txt") == ["cat", "dog"]
    (tmp_path / "bad.txt").write_text("0 cat\n2 dog\n")
    with pytest.raises(res2net.errors.Res2NetError, match="0..1"):
        load_labels(tmp_path / "bad.txt")


# ------------------------------------------------------------------------------------ CLI
def run_cli(*args, env=None, timeout=600):
    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "res2net", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Good images of every awkward kind, plus every kind of bad file, in one folder."""
    import skimage.data

    d = tmp_path_factory.mktemp("imgs")
    photo = skimage.data.coffee()
    im = Image.fromarray(photo)
    im.save(d / "a_rgb.jpg")
    im.convert("L").save(d / "b_gray.png")
    im.quantize(32).save(d / "c_palette.png")
    rgba = im.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "d_alpha.png")
    im.convert("CMYK").save(d / "e_cmyk.jpg")
    cv2.imwrite(str(d / "f_16bit.png"), (photo[:, :, ::-1].astype(np.uint16) * 257))
    exif = Image.Exif()
    exif[0x0112] = 8
    im.save(d / "g_exif_rotated.jpg", exif=exif.tobytes())
    (d / "h_zero.jpg").write_bytes(b"")
    (d / "i_text.jpg").write_text("not an image at all")
    data = (d / "a_rgb.jpg").read_bytes()
    (d / "j_truncated.jpg").write_bytes(data[: len(data) // 4])
    from tests.data.test_image import _png_header_only

    (d / "k_huge.png").write_bytes(_png_header_only(300_000, 300_000))
    # would resize to 256 x 5.1M: classified from the part that survives the centre crop
    Image.new("RGB", (20_000, 1), (10, 200, 30)).save(d / "m_sliver.png")
    from tests.data.test_image import tiff_rational_strip_offsets

    (d / "n_rational.tif").write_bytes(tiff_rational_strip_offsets())  # Pillow raises TypeError on it
    im.save(d / FORGED)  # a good image whose name would forge a line of text output
    return d


FORGED = "o_forged\nerror: x.png"
GOOD = ["a_rgb.jpg", "b_gray.png", "c_palette.png", "d_alpha.png", "e_cmyk.jpg", "f_16bit.png", "g_exif_rotated.jpg"]
GOOD += ["m_sliver.png", FORGED]
BAD = {
    "h_zero.jpg": "empty",
    "i_text.jpg": "not an image",
    "j_truncated.jpg": "truncated",
    "k_huge.png": "refusing",
    "n_rational.tif": "corrupt image (TypeError in the decoder",
}


def test_cli_bad_inputs_in_one_batch(image_folder, tiny_weights, tmp_path):
    env = {"RES2NET_HOME": str(tmp_path / "home")}
    missing = image_folder / "l_missing.jpg"
    out = run_cli(image_folder, missing, "--weights", tiny_weights, "--engine", "torch", "--batch-size", "4", env=env)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()  # one line per good image: the newline in FORGED is escaped
    assert [Path(ln.split(":\t")[0]).name for ln in lines] == [escape_name(g) for g in GOOD]
    assert all("class id(s): [" in ln and "label_name(s): [" in ln for ln in lines)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == len(BAD) + 1
    for name, why in {**BAD, "l_missing.jpg": "no such file"}.items():
        assert any(name in e and why in e for e in errors), (name, errors)
    # JSON lines: one object per input, in input order, errors included
    out = run_cli(image_folder, missing, "--weights", tiny_weights, "--engine", "torch", "--json", env=env)
    rows = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [Path(r["filename"]).name for r in rows] == sorted([*GOOD, *BAD]) + ["l_missing.jpg"]
    assert all(("error" in r) == (Path(r["filename"]).name not in GOOD) for r in rows)
    # the awkward-but-good images were classified like their plain RGB twin (same photo, same pixels)
    by = {Path(r["filename"]).name: r for r in rows}
    assert by["c_palette.png"]["class_ids"][0] == by["a_rgb.jpg"]["class_ids"][0] == by["f_16bit.png"]["class_ids"][0]
    # only good images: exit code 0
    ok = run_cli(*(image_folder / g for g in GOOD[:2]), "--weights", tiny_weights, "--engine", "torch", env=env)
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 2


def test_cli_defaults_to_sample_photos(tiny_weights, tmp_path):
    out = run_cli("--weights", tiny_weights, "--engine", "torch", "--json", env={"RES2NET_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    rows = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert sorted(Path(r["filename"]).name for r in rows) == sorted(f.name for f in sample_images())
    assert "res2net_tiny" in out.stderr or "torch fp32" in out.stderr  # says what it runs


def test_cli_offline_without_weights_is_a_clear_message(tmp_path):
    out = run_cli(sample_images()[0], env={"RES2NET_HOME": str(tmp_path), "RES2NET_OFFLINE": "1"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    err = out.stderr
    assert "Res2Net50_vd_26w_4s_ssld" in err and "https://" in err and str(tmp_path / "weights") in err
    assert "--weights PATH" in err


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_then_predict_from_local_server(tmp_path):
    """Official-weights path end to end: RES2NET_MIRROR on 127.0.0.1 serves a PaddleClas .pdparams."""
    from tests.weights.test_formats import paddle_state

    name, file = "Res2Net50_vd_26w_4s_ssld", "Res2Net50_vd_26w_4s_ssld_pretrained.pdparams"
    www = tmp_path / "www"
    www.mkdir()
    model = randomize_(res2net.create_model(name), seed=5)
    (www / file).write_bytes(pickle.dumps(paddle_state(model), protocol=4))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = {
            "RES2NET_HOME": str(tmp_path / "home"),
            "RES2NET_MIRROR": f"http://127.0.0.1:{httpd.server_address[1]}",
            "RES2NET_OFFLINE": "0",
        }
        out = run_cli(sample_images()[0], "--engine", "torch", "--json", env=env)
    finally:
        httpd.shutdown()
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "home" / "weights" / file).exists()
    r = json.loads(out.stdout)
    x = torch.from_numpy(EvalTransform()(load_image(sample_images()[0]))[None])
    with torch.no_grad():
        expected = torch.softmax(model(x), -1)[0].topk(5).indices.tolist()
    assert r["class_ids"] == expected


def test_torchrun_shards_and_merges_in_order(image_folder, tiny_weights, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i, f in enumerate(sorted(image_folder.iterdir()) * 2):
        shutil.copy(f, folder / f"{i:02d}_{f.name}")
    args = [folder, "--weights", tiny_weights, "--engine", "torch", "--json", "--batch-size", "3"]
    env = {**os.environ, "RES2NET_HOME": str(tmp_path / "home")}
    single = run_cli(*args, env=env)
    torchrun = Path(sys.executable).with_name("torchrun")
    dist = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "res2net", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert single.returncode == 1 and dist.returncode != 0  # bad files are reported: non-zero in both
    one = [json.loads(ln) for ln in single.stdout.splitlines()]
    two = [json.loads(ln) for ln in dist.stdout.splitlines()]
    assert len(one) == len(list(folder.iterdir())) and [r["filename"] for r in two] == [r["filename"] for r in one]
    for a, b in zip(one, two):
        assert a.get("class_ids") == b.get("class_ids") and ("error" in a) == ("error" in b)
        if "scores" in a:
            np.testing.assert_allclose(a["scores"], b["scores"], atol=2e-5)


def test_bad_arguments_are_one_line(tiny_weights, tmp_path):
    out = run_cli("--weights", tmp_path / "nope.safetensors", "--model", "res2net_tiny")
    assert out.returncode == 1 and "no such weights file" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(res2net.runtime.EngineError, match="int8 is not available"):
        Predictor("res2net_tiny", tiny_weights, engine="torch", precision="int8", cache_dir=tmp_path)
    with pytest.raises(res2net.runtime.EngineError, match="unknown engine"):
        Predictor("res2net_tiny", tiny_weights, engine="tensorrt", cache_dir=tmp_path)


def test_preprocess_accepts_every_source(tiny_weights, cache):
    p = Predictor("res2net_tiny", tiny_weights, engine="torch", transform=SMALL, cache_dir=cache, check=False)
    f = sample_images()[0]
    arr = load_image(f)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    batch = p.preprocess([f, arr, Image.fromarray(arr), buf.getvalue()])
    assert batch.shape == (4, 3, 64, 64)
    for i in (1, 2, 3):
        torch.testing.assert_close(batch[i], batch[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_torch_engine(digits_model, tiny_weights, cache):
    """On a GPU: fp32 (TF32 off) within 1e-4 of CPU eager; bf16 checked on the trained model; auto picks one."""
    p = Predictor("res2net_tiny", tiny_weights, engine="torch", device="cuda", transform=SMALL, cache_dir=cache)
    batch = p.preprocess(sample_images())
    assert_logits_close(p.forward(batch), eager_logits(p.torch_model().cpu(), batch.numpy()), atol=1e-4)
    kw = dict(transform=digits_model.transform(), check_images=digits_model.val_dir, cache_dir=cache)
    bf16 = Predictor(
        digits_model.model_name, digits_model.weights, engine="torch", precision="bf16", device="cuda", **kw
    )
    assert bf16.accuracy.passed, bf16.accuracy.summary()
    auto = Predictor(digits_model.model_name, digits_model.weights, engine="auto", device="cuda", **kw)
    assert (auto.engine_name, auto.precision) == ("torch", "bf16") and auto.accuracy.passed


def test_module_input_and_cache_keyed_by_weights(tiny_weights, cache):
    """An nn.Module works too; changing its weights changes every artifact key (they hold its hash)."""
    model = res2net.create_model("res2net_tiny", pretrained=tiny_weights).eval()
    x = np.stack([SMALL(load_image(f)) for f in sample_images()])
    a = Predictor(model, engine="torch", transform=SMALL, cache_dir=cache)
    assert_logits_close(torch.from_numpy(a.forward(x)), eager_logits(model, x), atol=1e-4)
    with torch.no_grad():
        model.fc.bias.add_(1.0 + torch.arange(1000.0) / 100)
    b = Predictor(model, engine="torch", transform=SMALL, cache_dir=cache)
    assert b.engine.key != a.engine.key and b.weights_sha256 != a.weights_sha256
    assert_logits_close(torch.from_numpy(b.forward(x)), eager_logits(model, x), atol=1e-4)
    same = Predictor("res2net_tiny", tiny_weights, engine="torch", transform=SMALL, cache_dir=cache)
    assert same.model_id == a.model_id  # same graph; weights are keyed by the file's sha256 there


def test_int8_artifact_key_follows_the_preprocessing(tiny_weights, cache):
    """Calibration images go through the transform: other preprocessing, other int8 model (not the cached one)."""
    other = dataclasses.replace(SMALL, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    kw = dict(engine="onnxruntime", precision="int8", check=True, cache_dir=cache)
    a = Predictor("res2net_tiny", tiny_weights, transform=SMALL, **kw)
    b = Predictor("res2net_tiny", tiny_weights, transform=other, **kw)
    assert a.engine.key != b.engine.key
    assert a.engine.key == Predictor("res2net_tiny", tiny_weights, transform=SMALL, **kw).engine.key  # stable


def test_weights_file_is_read_once(tiny_weights, cache, monkeypatch):
    """Predictor(weights=FILE) reads the file once: the classifier size, the cache key's sha256 and the
    model all come from that one read (before: a hashing pass, then a read per use)."""
    import hashlib

    import res2net.predict.predictor as predictor_module
    import res2net.weights.formats as formats

    reads = []
    real = formats._read_by_format
    monkeypatch.setattr(formats, "_read_by_format", lambda *a: reads.append(a) or real(*a))
    monkeypatch.setattr(predictor_module, "sha256_file", lambda p: pytest.fail(f"{p} hashed in a second pass"))
    p = Predictor("res2net_tiny", weights=tiny_weights, engine="torch", cache_dir=cache, transform=SMALL)
    p.torch_model()
    assert len(reads) == 1
    assert p.weights_sha256 == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
