"""``res2net serve`` fails fast and clearly on mistakes a user can make."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.serve.conftest import free_port


def serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "res2net", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_help_lists_the_options():
    out = serve("--help")
    assert out.returncode == 0
    for option in ("--max-batch-size", "--max-delay-ms", "--max-queue", "--grpc-port", "--workers", "--engine"):
        assert option in out.stdout


def test_unknown_model_is_one_line_error():
    out = serve("--model", "resnet50")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error:") and "resnet50" in out.stderr and "Traceback" not in out.stderr


def test_missing_weights_file():
    out = serve("--model", "res2net_tiny", "--weights", "/nonexistent/w.safetensors")
    assert out.returncode == 1 and "no such weights file" in out.stderr


def test_port_in_use_fails_before_loading_the_model():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = serve("--model", "res2net_tiny", "--port", str(port), "--grpc-port", str(free_port()))
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr


def test_invalid_settings():
    out = serve("--model", "res2net_tiny", "--max-batch-size", "0")
    assert out.returncode == 1 and "max_batch_size=0" in out.stderr
