"""Fixtures for the server tests: real images, tiny seeded weights, a running server, the reference.

Servers run as real subprocesses (``python -m res2net serve``) on free 127.0.0.1 ports, so the tests
exercise what users run: argument parsing, both listeners, the model loading in the background,
signals and exit codes.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MODEL = "res2net_tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    grpc_port: int
    log: Path

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, path: str) -> str:
        return f"http://{self.http}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in httpx.get(self.url("/metrics"), timeout=10).text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, value = line.rsplit(" ", 1)
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total

    def assert_healthy(self) -> None:
        assert self.proc.poll() is None, f"server died:\n{self.output()[-3000:]}"
        assert httpx.get(self.url("/v2/health/ready"), timeout=10).status_code == 200

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"server ignored SIGTERM for {timeout} s:\n{self.output()[-3000:]}")
        return self.proc.returncode


def wait_ready(server: Server, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.output()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url("/v2/health/ready"), timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"server not ready after {timeout} s:\n{server.output()[-3000:]}")


@contextlib.contextmanager
def run_server(log_dir: Path, *args: str, weights: Path | None = None, ready: bool = True):
    """Start ``res2net serve --model res2net_tiny`` with ``args``; stop it (SIGTERM) afterwards."""
    port, grpc_port = free_port(), free_port()
    log = log_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "res2net", "serve", "--model", MODEL, "--engine", "torch"]
    cmd += ["--port", str(port), "--grpc-port", str(grpc_port), "--threads", "2"]
    if weights is not None:
        cmd += ["--weights", str(weights)]
    cmd += list(args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(proc, port, grpc_port, log)
    try:
        if ready:
            wait_ready(server)
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ data
def _encode(array, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    """Real photos from scikit-image, encoded as users send them (JPEG, PNG, grayscale PNG)."""
    from skimage import data

    return {
        "chelsea.jpg": _encode(data.chelsea(), "JPEG", quality=90),
        "astronaut.png": _encode(data.astronaut(), "PNG"),
        "coffee.jpg": _encode(data.coffee(), "JPEG", quality=85),
        "camera.png": _encode(data.camera(), "PNG"),
    }


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Seeded random weights (BN statistics too) whose predictions differ from image to image."""
    import safetensors.torch

    import res2net
    from tests.utils import randomize_

    model = randomize_(res2net.create_model(MODEL), seed=0)
    path = tmp_path_factory.mktemp("weights") / "res2net_tiny.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(path), metadata={"origin": "paddle"})
    return path


@pytest.fixture(scope="session")
def predictor(tiny_weights):
    """The reference the server must agree with."""
    from res2net import Predictor

    return Predictor(MODEL, weights=tiny_weights, engine="torch")


@pytest.fixture(scope="session")
def server(tiny_weights, tmp_path_factory):
    """One shared server: small batches, short body limit (so 413 is cheap to provoke)."""
    log_dir = tmp_path_factory.mktemp("server")
    with run_server(
        log_dir,
        "--max-batch-size",
        "4",
        "--max-delay-ms",
        "20",
        "--max-queue",
        "32",
        "--max-body-mb",
        "8",
        "--timeout",
        "120",
        weights=tiny_weights,
    ) as s:
        yield s
        code = s.stop()
        assert code == 0, f"server exit code {code} after SIGTERM:\n{s.output()[-3000:]}"
