"""Eval preprocessing vs PaddleClas's own ops (``paddleclas.deploy.python.preprocess``) on real photos.

The oracle runs in ``.venv-paddle``: PaddleClas's ``ResizeImage(resize_short=256)``,
``CropImage(224)``, ``NormalizeImage`` (its inference yaml: scale 0.00392157, ImageNet mean/std)
and ``ToCHWImage``, applied exactly as ``predict_cls.py`` does (``cv2.imread`` then BGR -> RGB).

Tolerances: from the *same decoded pixels*, resize+crop must be identical and the normalised
tensors equal within 1e-5 (PaddleClas scales by 0.00392157, we by 1/255). From the *files*, where
PaddleClas decodes with OpenCV and we with Pillow, the issue's bound: max |diff| <= 2/255 per pixel
before normalisation and mean <= 0.25/255.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from res2net.data.image import load_image
from res2net.data.transforms import INTERPOLATION, EvalTransform, center_crop, resize_center_crop, resize_short

ROOT = Path(__file__).resolve().parents[2]

ORACLE = r"""
import json, sys
import numpy as np, cv2
from paddleclas.deploy.python.preprocess import CropImage, NormalizeImage, ResizeImage, ToCHWImage

files, arrays_npz, out = sys.argv[1], sys.argv[2], sys.argv[3]
resize, crop = ResizeImage(resize_short=256), CropImage(size=224)
norm = NormalizeImage(scale=0.00392157, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], order="")
chw = ToCHWImage()
res = {}
for i, path in enumerate(json.load(open(files))):
    img = cv2.imread(path)[:, :, ::-1]  # predict_cls.py
    c = crop(resize(img))
    res[f"file_crop_{i}"] = c
    res[f"file_norm_{i}"] = chw(norm(c))
arrays = np.load(arrays_npz)
for k in arrays.files:
    c = crop(resize(arrays[k]))
    res[f"arr_crop_{k}"] = c
    res[f"arr_norm_{k}"] = chw(norm(c))
np.savez(out, **res)
"""


def paddle_python() -> Path | None:
    exe = Path(os.environ.get("RES2NET_PADDLE_PYTHON", ROOT / ".venv-paddle" / "bin" / "python"))
    return exe if exe.exists() else None


def run_oracle(tmp_path: Path, files: list[Path], arrays: dict[str, np.ndarray]):
    """PaddleClas's ops (:data:`ORACLE`) on ``files`` and ``arrays`` in ``.venv-paddle``; skips without it."""
    exe = paddle_python()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("the Paddle oracle environment is missing in CI: scripts/setup.sh must create .venv-paddle")
        pytest.skip("no .venv-paddle (run scripts/setup.sh)")
    (tmp_path / "files.json").write_text(json.dumps([str(f) for f in files]))
    np.savez(tmp_path / "arrays.npz", **arrays)
    script = tmp_path / "oracle.py"
    script.write_text(ORACLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [str(exe), str(script), str(tmp_path / "files.json"), str(tmp_path / "arrays.npz"), str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        pytest.fail(f"PaddleClas oracle failed ({proc.returncode})")
    return np.load(tmp_path / "out.npz")


def photo_files() -> list[Path]:
    """Real JPEG and PNG photos shipped by scikit-image, scikit-learn and res2net itself."""
    import skimage.data
    import sklearn.datasets

    sk = Path(skimage.data.__file__).parent
    sl = Path(sklearn.datasets.__file__).parent / "images"
    ours = ROOT / "src" / "res2net" / "assets" / "images"
    files = [sk / n for n in ("chelsea.png", "coffee.png", "astronaut.png", "camera.png", "rocket.jpg", "retina.jpg")]
    files += [sl / "china.jpg", sl / "flower.jpg", *sorted(ours.glob("*.jpg"))]
    return [f for f in files if f.exists()]


def test_resize_short_rounding_and_crop_offsets():
    img = np.arange(375 * 500 * 3, dtype=np.uint32).reshape(375, 500, 3).astype(np.uint8)
    out = resize_short(img, 256)
    assert out.shape == (256, int(round(500 * 256 / 375)), 3)  # 341.33 -> 341
    np.testing.assert_array_equal(out, cv2.resize(img, (341, 256), interpolation=cv2.INTER_LINEAR))
    odd = np.arange(257 * 261, dtype=np.int64).reshape(257, 261) % 251
    c = center_crop(odd, 224)
    np.testing.assert_array_equal(c, odd[16:240, 18:242])  # floor((257-224)/2)=16, floor((261-224)/2)=18
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(odd[:100], 224)
    with pytest.raises(ValueError, match="aspect ratio too extreme"):  # refused before allocating 1.3 Gpx
        resize_short(np.zeros((1, 20_000, 3), np.uint8), 256)


def plain_resize_crop(img, size=256, crop=224, interpolation="bilinear"):
    """PaddleClas's ``ResizeImage`` then ``CropImage``: the whole image resized, then cropped."""
    h, w = img.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(
        img, (int(round(w * scale)), int(round(h * scale))), interpolation=INTERPOLATION[interpolation]
    )
    return center_crop(resized, crop)


def awkward_images() -> dict[str, np.ndarray]:
    import skimage.data

    rng = np.random.default_rng(0)
    noise = lambda *shape: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731 - worst case: no smooth areas
    return {
        "chelsea": skimage.data.chelsea(),
        "camera_gray_2d": skimage.data.camera(),
        "noise": noise(37, 411, 3),
        "upscaled": noise(20, 30, 3),
        "wide_sliver": noise(3, 4000, 3),
        "tall_sliver": noise(4000, 3, 3),
        "one_row": noise(1, 700, 3),
    }


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_cropped_window_resize_equals_resize_then_crop(interpolation):
    """The bounded-memory path (forced here with ``max_resized_pixels=0``) against the plain one."""
    for name, img in awkward_images().items():
        ours = resize_center_crop(img, 256, 224, interpolation, max_resized_pixels=0)
        ref = plain_resize_crop(img, 256, 224, interpolation)
        assert ours.shape == ref.shape and ours.dtype == np.uint8, name
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.max() <= 1, f"{name} {interpolation}: max |diff| {diff.max()}/255"
        if interpolation != "bicubic":  # bilinear/nearest reproduce cv2's own arithmetic
            assert diff.mean() <= 0.01, f"{name} {interpolation}: mean |diff| {diff.mean():.4f}/255"
    with pytest.raises(ValueError, match="cannot crop 224x224"):
        resize_center_crop(awkward_images()["noise"], 200, 224)


def test_4000x3_image_is_classified_in_bounded_memory(monkeypatch):
    """Resizing all of a 4000x3 image to short side 256 is 341333x256 pixels (262 MB); the window is 224x224."""
    import tracemalloc

    img = awkward_images()["wide_sliver"]
    ref = plain_resize_crop(img)  # before the spy: the reference does allocate the whole resized image
    sizes = []
    real_resize = cv2.resize
    monkeypatch.setattr(
        cv2, "resize", lambda src, dsize, *a, **k: sizes.append(dsize) or real_resize(src, dsize, *a, **k)
    )
    tracemalloc.start()
    try:
        x = EvalTransform()(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (3, 224, 224) and np.isfinite(x).all()
    assert sizes == [] and peak < 16 * 2**20, (sizes, peak)  # no full-size resize; numpy peak under 16 MB
    np.testing.assert_allclose(x, EvalTransform().normalize(ref), atol=1.01 / 255 / min(EvalTransform().std))


def test_normalize_formula():
    t = EvalTransform()
    img = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = t.normalize(img)
    ref = (img.astype(np.float64) / 255.0 - np.array(t.mean)) / np.array(t.std)
    assert out.dtype == np.float32 and out.shape == (3, 224, 224)
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), atol=1e-5)


@pytest.mark.paddle
def test_preprocessing_matches_paddleclas_ops(tmp_path):
    files = photo_files()
    assert len(files) >= 8
    ours_decoded = {str(i): load_image(f) for i, f in enumerate(files)}
    ref = run_oracle(tmp_path, files, ours_decoded)
    t = EvalTransform()
    for i, f in enumerate(files):
        # 1. same decoded pixels: resize + crop identical, normalisation within float rounding
        crop = t.crop(ours_decoded[str(i)])
        np.testing.assert_array_equal(crop, ref[f"arr_crop_{i}"], err_msg=f.name)
        np.testing.assert_allclose(t.normalize(crop), ref[f"arr_norm_{i}"], atol=1e-5, err_msg=f.name)
        # 2. from the file: Pillow vs OpenCV decoding, the pixel bounds
        diff = np.abs(crop.astype(np.int16) - ref[f"file_crop_{i}"].astype(np.int16))
        assert diff.max() <= 2 and diff.mean() <= 0.25, f"{f.name}: max {diff.max()}, mean {diff.mean():.3f} (/255)"
        assert ref[f"file_crop_{i}"].shape == (224, 224, 3)


@pytest.mark.paddle
def test_extreme_aspect_ratios_match_paddleclas_ops(tmp_path):
    """PaddleClas resizes a 4000x3 image whole (341333x256) before cropping; we resize only the window."""
    arrays = {k: v for k, v in awkward_images().items() if v.ndim == 3}
    ref = run_oracle(tmp_path, [], arrays)
    t = EvalTransform()
    for name, img in arrays.items():
        for limit in (0, None):  # the window path forced, and the default choice
            crop = resize_center_crop(img, 256, 224, max_resized_pixels=limit) if limit == 0 else t.crop(img)
            diff = np.abs(crop.astype(int) - ref[f"arr_crop_{name}"].astype(int))
            assert diff.max() <= 1, f"{name} (limit {limit}): max |diff| {diff.max()}/255 from PaddleClas"
