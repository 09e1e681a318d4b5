"""The PaddleClas oracle: real PaddleClas models run in the separate ``.venv-paddle``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / "tests" / "oracle" / "paddle_reference.py"


def paddle_python() -> Path | None:
    exe = Path(os.environ.get("RES2NET_PADDLE_PYTHON", ROOT / ".venv-paddle" / "bin" / "python"))
    return exe if exe.exists() else None


@pytest.fixture(scope="session")
def paddle_oracle(tmp_path_factory) -> Path:
    """Run the oracle once per session; its files (pdparams, inputs, logits) land in a temp dir."""
    exe = paddle_python()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("the Paddle oracle environment is missing in CI: scripts/setup.sh must create .venv-paddle")
        pytest.skip("no .venv-paddle (run scripts/setup.sh) — PaddleClas parity not checked")
    out = tmp_path_factory.mktemp("paddle_oracle")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(exe), str(ORACLE), str(out)], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        pytest.fail(f"Paddle oracle failed with exit code {proc.returncode}")
    return out


@pytest.fixture(scope="session")
def reader():
    """A child process that loads weights under an address-space cap (tests/weights/reader_process.py)."""
    from tests.weights.reader_process import ReaderProcess

    proc = ReaderProcess()
    yield proc
    proc.close()
