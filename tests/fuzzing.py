"""Bounded fuzzing for the suite: a hypothesis property, run in a child process under an address-space cap.

A target is ``"module:function"``, a ``@given`` function (not collected by pytest itself). The child
imports it, then caps its own address space (``RLIMIT_AS``) at what the imports took plus
``budget_mb``, and runs it for ``RES2NET_FUZZ_EXAMPLES`` examples (default :data:`DEFAULT_EXAMPLES`,
derandomized: seconds per target, the same examples every CI run). So a memory bomb shows up as a
``MemoryError`` in that child — a failing example — instead of swapping the machine, and a crash
(SIGSEGV) as the child's exit status.

Longer, randomly seeded runs (see CONTRIBUTING.md): ``RES2NET_FUZZ_EXAMPLES=50000 pytest tests -k fuzz``. A failure
prints hypothesis's ``@reproduce_failure`` blob and the falsifying input.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXAMPLES = 200


def fuzz_examples() -> int:
    return int(os.environ.get("RES2NET_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)


def long_run() -> bool:
    """``RES2NET_FUZZ_EXAMPLES`` set: randomly seeded; otherwise derandomized, so CI runs are repeatable."""
    return bool(os.environ.get("RES2NET_FUZZ_EXAMPLES"))


def run_fuzz_target(target: str, budget_mb: int = 512) -> dict:
    """Run ``target`` in a capped child; fail the calling test with the child's report if anything failed."""
    n = fuzz_examples()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "tests.fuzzing", target, str(n), str(budget_mb)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + 0.5 * n, cwd=ROOT, env=env)
    if proc.returncode != 0:
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        pytest.fail(f"fuzz target {target} failed ({how}):\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _child(target: str, examples: int, budget_mb: int) -> None:
    from hypothesis import HealthCheck, settings

    module, name = target.split(":")
    prop = getattr(importlib.import_module(module), name)
    base = _vm_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (base + budget_mb * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not long_run(),
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )(prop)()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"target": target, "examples": examples, "vm_before_mb": base / 2**20, "max_rss_mb": rss_mb}))


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
