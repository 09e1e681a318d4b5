"""The package a user installs: built with ``python -m build``, installed into a fresh venv, run from there.

No network: ``--no-isolation`` builds with this environment's setuptools, the wheel is installed
with ``--no-deps``, and the fresh venv reaches the already installed torch & co through a ``.pth``
line (a path entry only: its own ``.pth`` files, such as this checkout's editable install, are not
processed there, so the code that runs is the wheel's).
"""

import os
import site
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("build")


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    assert files.returncode == 0, files.stderr
    for name in files.stdout.split("\n"):
        if name and (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO / name).read_bytes())
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return next(out.glob("*.whl")), next(out.glob("*.tar.gz"))


def test_wheel_and_sdist_contents(dists):
    wheel, sdist = dists
    names = zipfile.ZipFile(wheel).namelist()
    assert "res2net/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "res2net/configs/Res2Net50_vd_26w_4s.yaml" in names
    assert "res2net/assets/imagenet1k_label_list.txt" in names and any(
        n.startswith("res2net/assets/images/") for n in names
    )
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata and "Provides-Extra: hf" in metadata
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    for needle in ("LICENSE", "src/res2net/py.typed", "src/res2net/configs/Res2Net50_vd_26w_4s.yaml"):
        assert any(m.endswith(needle) for m in members), needle
    assert any("src/res2net/assets/images/" in m for m in members)


def test_installed_wheel_runs(dists, tmp_path):
    wheel, _ = dists
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, env=env).stdout.strip()  # fmt: skip
    Path(purelib, "_host_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    exe = env_dir / "bin" / "res2net"
    where = subprocess.run(
        [py, "-c", "import res2net; print(res2net.__file__)"], capture_output=True, text=True, env=env
    )
    assert where.stdout.startswith(purelib), where.stdout + where.stderr  # the wheel's code, not this checkout's

    t = time.perf_counter()
    help_run = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - t
    assert help_run.returncode == 0 and "predict" in help_run.stdout
    assert elapsed < 3.0, f"res2net --help took {elapsed:.1f} s"  # ~0.1 s alone; the no-torch check is below
    no_torch = subprocess.run(
        [py, "-c", "import sys, res2net.cli as c; c.build_parser(); assert 'torch' not in sys.modules"],
        env=env,
        timeout=60,
    )
    assert no_torch.returncode == 0

    weights = tmp_path / "tiny.safetensors"
    save = "import res2net, sys; res2net.save_pretrained(res2net.create_model('res2net_tiny'), sys.argv[1])"
    assert subprocess.run([py, "-c", save, str(tmp_path / "d")], env=env, timeout=120).returncode == 0
    (tmp_path / "d" / "model.safetensors").rename(weights)
    predict = subprocess.run(
        [exe, "predict", "--model", "res2net_tiny", "--weights", str(weights), "--engine", "torch", "--json",
         "--no-progress", "--topk", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert predict.stdout.count('"class_ids"') >= 1
