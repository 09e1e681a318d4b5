"""Downloads against a local HTTP server on 127.0.0.1 serving files the test made."""

import http.server
import threading
from functools import partial

import pytest
import torch

import res2net
from res2net.weights import WeightsError
from res2net.weights.hub import WeightsUnavailableError, download_weights

NAME = "Res2Net50_vd_26w_4s"
FILE = "Res2Net50_vd_26w_4s_pretrained.pdparams"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (for resumed downloads) and a request log."""

    requests: list = []

    def log_message(self, *args):
        pass

    def send_head(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng:
            return super().send_head()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            self.send_error(404)
            return None
        start = int(rng.split("=")[1].split("-")[0])
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        import io

        return io.BytesIO(data[start:])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RES2NET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RES2NET_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def weights_bytes(tmp_path_factory):
    import pickle

    from tests.weights.test_formats import paddle_state

    torch.manual_seed(0)
    model = res2net.create_model(NAME)
    return pickle.dumps(paddle_state(model), protocol=4)


def test_download_verify_cache_and_load(server, home, weights_bytes, monkeypatch):
    root, url = server
    (root / FILE).write_bytes(weights_bytes)
    monkeypatch.setenv("RES2NET_MIRROR", url)
    model = res2net.create_model(NAME, pretrained=True)
    cached = home / "weights" / FILE
    assert cached.read_bytes() == weights_bytes
    assert (home / "weights" / (FILE + ".sha256")).exists()
    assert not list((home / "weights").glob("*.part"))
    assert model.fc.weight.shape == (1000, 2048)
    n = len(_Handler.requests)
    download_weights(NAME)  # cached: no new request
    assert len(_Handler.requests) == n


def test_resume_partial_download(server, home, weights_bytes):
    root, url = server
    (root / FILE).write_bytes(weights_bytes)
    part = home / "weights" / (FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(weights_bytes[:12345])  # what a killed download leaves
    path = download_weights(NAME, mirror=url, progress=False)
    assert path.read_bytes() == weights_bytes
    assert _Handler.requests[-1][1] == "bytes=12345-"


def test_corrupted_cache_is_detected(server, home, weights_bytes):
    root, url = server
    (root / FILE).write_bytes(weights_bytes)
    path = download_weights(NAME, mirror=url, progress=False)
    path.write_bytes(weights_bytes[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match="sha256"):
        download_weights(NAME, mirror=url, progress=False)
    assert download_weights(NAME, mirror=url, progress=False).read_bytes() == weights_bytes


def test_unavailable_names_url_cache_and_alternative(server, home, monkeypatch):
    root, url = server  # the file is not on the server: 404
    with pytest.raises(WeightsUnavailableError) as e:
        download_weights(NAME, mirror=url, progress=False)
    msg = str(e.value)
    assert f"{url}/{FILE}" in msg and str(home / "weights" / FILE) in msg and "--weights PATH" in msg
    monkeypatch.setenv("RES2NET_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="RES2NET_OFFLINE"):
        download_weights(NAME)
    with pytest.raises(WeightsUnavailableError, match="no published weights"):
        download_weights("Res2Net152_vd_26w_4s")
