"""Hugging Face Hub layout and downloads: a local directory, and a Hub endpoint on 127.0.0.1.

The endpoint answers what ``huggingface_hub.hf_hub_download`` asks (huggingface_hub 2.x):
``HEAD``/``GET {HF_ENDPOINT}/{repo}/resolve/{revision}/{file}``, reading ``X-Repo-Commit``,
``ETag`` and ``Content-Length``. ``HF_ENDPOINT``/``HF_HUB_OFFLINE`` are read when huggingface_hub
is imported, so the loads run in child processes with those variables set, as a user's would.
"""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import res2net
from res2net.weights.hf import HubError, parse_hf_hub, save_pretrained
from tests.utils import randomize_

pytest.importorskip("huggingface_hub")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "someone/res2net-tiny"


@pytest.fixture(scope="module")
def tiny():
    return randomize_(res2net.create_model("res2net_tiny", num_classes=7))


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory, tiny):
    return save_pretrained(tiny, tmp_path_factory.mktemp("hf") / "repo", metrics={"top1 (digits val)": 0.97})


def test_layout_is_timm_compatible(repo_dir):
    assert sorted(p.name for p in repo_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((repo_dir / "config.json").read_text())
    assert config["architecture"] == "Res2Net_tiny" and config["num_classes"] == 7
    assert config["pretrained_cfg"]["crop_pct"] == 224 / 256 and config["pretrained_cfg"]["first_conv"] == "conv1"
    readme = (repo_dir / "README.md").read_text()
    for needle in ("library_name: timm", "## Preprocessing", "## Licence", "## Provenance", "top1 (digits val) | 0.97"):
        assert needle in readme


def test_local_directory_round_trip(repo_dir, tiny):
    x = torch.randn(2, 3, 64, 64)
    loaded = res2net.create_model("res2net_tiny", pretrained=repo_dir, num_classes=7).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), tiny(x))
    timm = pytest.importorskip("timm")
    via_timm = timm.create_model(f"local-dir:{repo_dir}", pretrained=True).eval()  # timm reads config.json
    with torch.no_grad():
        assert torch.equal(via_timm(x), tiny(x))


def test_bad_hub_ids():
    assert parse_hf_hub("hf-hub:org/repo@v1") == ("org/repo", "v1")
    for bad in ("hf-hub:repo", "hf-hub:a/b/c", "hf-hub:/x"):
        with pytest.raises(HubError, match="ORG/REPO"):
            parse_hf_hub(bad)


class _Hub(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # "/org/repo/resolve/main/file" -> bytes
    seen: list = []
    auth: list = []

    def log_message(self, *args):
        pass

    def _answer(self, body: bool):
        type(self).seen.append((self.command, self.path))
        type(self).auth.append(self.headers.get("Authorization"))
        path = self.path.split("?")[0].replace(f"/resolve/{COMMIT}/", "/resolve/main/")
        data = self.files.get(path)
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)


@pytest.fixture
def hub(repo_dir):
    _Hub.files = {f"/{REPO}/resolve/main/{p.name}": p.read_bytes() for p in repo_dir.iterdir()}
    _Hub.seen = []
    _Hub.auth = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()


_LOAD = """
import sys, torch, res2net
model = res2net.create_model(sys.argv[1], pretrained=sys.argv[2] if sys.argv[2] != "True" else True, num_classes=7)
torch.save(model.state_dict(), sys.argv[3])
"""


def _load(tmp_path, env, name, pretrained, out):
    base = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env = {**base, **env, "PYTHONPATH": str(Path(res2net.__file__).parents[1]), "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-c", _LOAD, name, pretrained, str(tmp_path / out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


def test_hf_endpoint_cache_and_offline(tmp_path, hub, tiny):
    url, httpd = hub
    run = _load(tmp_path, {"HF_ENDPOINT": url, "HF_TOKEN": "hf_test_token"}, "res2net_tiny", f"hf-hub:{REPO}", "a.pt")
    assert run.returncode == 0, run.stderr
    assert "Bearer hf_test_token" in _Hub.auth  # the user's token goes to the Hub, as huggingface_hub sends it
    assert any(
        m == "GET" and p.startswith(f"/{REPO}/resolve/") and p.endswith("/model.safetensors") for m, p in _Hub.seen
    )
    blobs = list((tmp_path / "hf").rglob("model.safetensors"))
    assert blobs, "not stored in the Hugging Face cache"
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in tiny.state_dict().items())
    # the architecture from config.json, as timm's hf-hub: does
    run = _load(tmp_path, {"HF_ENDPOINT": url}, f"hf-hub:{REPO}", "True", "b.pt")
    assert run.returncode == 0, run.stderr
    httpd.shutdown()  # from now on the Hub is gone
    run = _load(tmp_path, {"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "1"}, "res2net_tiny", f"hf-hub:{REPO}", "c.pt")
    assert run.returncode == 0, run.stderr
    missing = _load(tmp_path, {"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "1"}, "res2net_tiny", "hf-hub:other/x", "d.pt")
    assert missing.returncode != 0 and "HF_HUB_OFFLINE" in missing.stderr


def test_timm_cards_download_through_hf_hub(tmp_path, hub):
    """pretrained=True for a timm card goes to timm/<name>.in1k on HF_ENDPOINT, into the HF cache."""
    url, _ = hub
    model = res2net.create_model("res2net50d")
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    _Hub.files["/timm/res2net50d.in1k/resolve/main/model.safetensors"] = weights.read_bytes()
    code = (
        "import res2net; from res2net.weights.hub import download_weights; p = download_weights('res2net50d');"
        "print(p); res2net.create_model('res2net50d', pretrained=True)"
    )
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")}
    env["PYTHONPATH"] = str(Path(res2net.__file__).parents[1])
    env.pop("RES2NET_MIRROR", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr
    assert str(tmp_path / "hf") in run.stdout and "models--timm--res2net50d.in1k" in run.stdout


def test_export_format_hf_cli(tmp_path):
    weights = tmp_path / "tiny.safetensors"
    from res2net.weights.convert import convert_to_safetensors

    torch.save(randomize_(res2net.create_model("res2net_tiny")).state_dict(), tmp_path / "tiny.pth")
    convert_to_safetensors(tmp_path / "tiny.pth", weights, model_name="res2net_tiny")
    from res2net.cli import main

    out = tmp_path / "hf-out"
    rc = main(["export", "--model", "res2net_tiny", "--weights", str(weights), "--format", "hf", "--output", str(out),
               "--verify"])  # fmt: skip
    assert rc == 0 and (out / "model.safetensors").exists() and (out / "config.json").exists()
    from res2net.weights.formats import read_weights

    assert read_weights(out / "model.safetensors").metadata["origin"] == "paddle"
