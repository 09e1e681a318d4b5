"""Fixtures of the C++ predictor tests: the binaries built from deploy/cpp, real photos, bad files.

Building (~1 min on 2 cores) happens once per session. ``CI`` set: a missing toolchain or runtime
fails instead of skipping — CI must build and test both runtimes of ``res2net_predict``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import res2net
from tests.utils import randomize_

ROOT = Path(__file__).resolve().parents[2]
CPP = ROOT / "deploy" / "cpp"
NUM_CLASSES = 10


def _toolchain_missing() -> str | None:
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not any(Path(p).is_dir() for p in ("/usr/include/opencv4", "/usr/local/include/opencv4")):
        return "OpenCV headers not found (apt-get install -y libopencv-dev)"
    return None


@pytest.fixture(scope="session")
def binary(tmp_path_factory) -> Path:
    reason = _toolchain_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build deploy/cpp: {reason}")
        pytest.skip(reason)
    build = tmp_path_factory.mktemp("cpp-build")
    env = {**os.environ, "BUILD_DIR": str(build), "PYTHON": sys.executable}
    if os.environ.get("CI"):
        env["REQUIRE"] = "openvino pt2"  # build.sh fails if either runtime is missing
    proc = subprocess.run(["bash", str(CPP / "build.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    exe = build / "res2net_predict"
    assert exe.is_file()
    return exe


def peaked_tiny(seed: int = 0) -> torch.nn.Module:
    model = randomize_(res2net.create_model("res2net_tiny", num_classes=NUM_CLASSES), seed)
    with torch.no_grad():
        model.fc.weight.mul_(8.0)  # random logits are nearly flat; a peaked softmax makes scores informative
    return model


@pytest.fixture(scope="session")
def model() -> torch.nn.Module:
    return peaked_tiny()


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    """Real photos as PNG and JPEG, plus grey, 16-bit grey, RGBA, EXIF-rotated, odd-sized and upscaled
    (< 256 px) variants."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        im = Image.fromarray(getattr(skdata, name)())
        im.save(d / f"{name}.png")
        im.save(d / f"{name}.jpg", quality=90)
    Image.fromarray(skdata.camera()).save(d / "camera_grey.png")
    a = skdata.astronaut()
    Image.fromarray(np.dstack([a, np.full(a.shape[:2], 200, np.uint8)])[:333, :257]).save(d / "rgba_odd.png")
    Image.fromarray(skdata.coffee()).resize((301, 203)).save(d / "coffee_small.jpg", quality=85)
    Image.fromarray(skdata.chelsea()).resize((1001, 667)).save(d / "chelsea_big.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation "rotate 90 CW": both sides must apply it
    Image.fromarray(skdata.chelsea()).save(d / "chelsea_exif_rotated.jpg", exif=exif.tobytes(), quality=92)
    Image.fromarray(skdata.camera().astype(np.uint16) * 257).save(d / "camera_16bit.png")
    return sorted(d.iterdir())


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("labels") / "labels.txt"
    f.write_text("".join(f"{i} class {i}, number {i}\n" for i in range(NUM_CLASSES)))
    return f


def run(exe: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def predict_json(exe, package, image_args, *extra) -> list[dict]:
    proc = run(exe, "--model", package, *image_args, "--json", *extra)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, images) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    jpg = next(p for p in images if p.suffix == ".jpg").read_bytes()
    png = next(p for p in images if p.suffix == ".png").read_bytes()
    files = {
        "truncated.jpg": jpg[: len(jpg) // 3],
        "truncated.png": png[: len(png) // 3],
        "text.png": b"this is not an image\n",
        "empty.jpg": b"",
        "junk.pt2": b"not a zip file at all",
    }
    out = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    with zipfile.ZipFile(d / "zip.pt2", "w") as z:
        z.writestr("archive/data.txt", "a zip, but no compiled model")
    out["zip.pt2"] = d / "zip.pt2"

    class AddOne(torch.nn.Module):
        def forward(self, x):
            return x + 1

    torch.export.save(torch.export.export(AddOne(), (torch.randn(2, 3),)), d / "exported.pt2")
    out["exported.pt2"] = d / "exported.pt2"
    out["missing.jpg"] = d / "missing.jpg"
    return out
