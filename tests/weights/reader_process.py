"""Load weights files in a child process under a memory cap, so a crash or a memory bomb is a test failure.

The child imports torch once, builds ``res2net_tiny``, then caps its address space at
``current + cap_mb`` (``RLIMIT_AS``) and loads every path it is sent with
``load_weights(model, path)`` (read, key mapping, strict checks, model guess on a mismatch).
It answers one JSON line per file: the outcome (``ok``, ``WeightsError`` or the name of any other
exception), the message, the growth of peak RSS and the seconds taken. A segfault or a hang shows
up as ``crash``/``timeout`` with the child's exit status.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, resource, sys, time, traceback, warnings
import torch
torch.set_num_threads(1)
import res2net
from res2net.weights import WeightsError, load_weights

model = res2net.create_model("res2net_tiny")
def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
cap = vm_bytes() + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
print("ready", flush=True)
for line in sys.stdin:
    path = json.loads(line)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_weights(model, path)
        out = {"kind": "ok", "message": ""}
    except WeightsError as e:
        out = {"kind": "WeightsError", "message": str(e)}
    except BaseException as e:
        out = {"kind": type(e).__name__, "message": "".join(traceback.format_exception(e))[-3000:]}
    out["seconds"] = time.perf_counter() - t0
    out["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(out), flush=True)
"""


class ReaderProcess:
    """One long-lived child; restarted after a crash or a timeout."""

    def __init__(self, cap_mb: int = 768, timeout_s: float = 60.0) -> None:
        self.cap_mb, self.timeout_s = cap_mb, timeout_s
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self.cap_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        if self._readline(120.0) != "ready":
            raise RuntimeError(f"reader child did not start (exit status {self.proc.poll()})")

    def _readline(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else None

    def load(self, path: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(str(path)) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(self.timeout_s)
        if line:
            return json.loads(line)
        self.proc.kill()
        status = self.proc.wait()
        self.proc = None
        return {"kind": "timeout" if line is None and status == -9 else "crash", "message": f"exit status {status}"}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.proc = None


def assert_refused_cleanly(result: dict, path: Path, *, match: str = "", max_rss_mb: float = 64.0) -> None:
    """The library's own error, naming the file, with memory and time bounded."""
    assert result["kind"] == "WeightsError", f"{path.name}: {result['kind']}: {result['message']}"
    assert str(path) in result["message"], result["message"]
    assert match.lower() in result["message"].lower(), result["message"]
    assert result["rss_growth_mb"] < max_rss_mb, f"{path.name}: peak RSS grew {result['rss_growth_mb']:.0f} MB"
    assert result["seconds"] < 5, f"{path.name}: took {result['seconds']:.1f} s to refuse"
