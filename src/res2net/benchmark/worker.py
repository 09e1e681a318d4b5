"""One benchmark runner in its own process, driven over JSON lines on stdin/stdout.

Why a process per runner: ONNX Runtime, OpenVINO (TBB) and PyTorch (OpenMP) each keep their own
thread pool, and pools spin for a while after a call. In one process the engine timed next competes
with the previous engine's spinning threads for the same cores — on a 2-core machine that made
PyTorch eager look several times slower than it is. An idle worker blocks on its pipe and uses no
CPU, so alternating between workers times each engine on otherwise quiet cores — as the Paddle
anchor, which always runs in its own interpreter, is timed.

    python -m res2net.benchmark.worker      (started by res2net.benchmark.core, not by hand)
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from res2net.benchmark.core import benchmark_model
from res2net.benchmark.runners import Unsupported, build_runner, fp32_means_fp32


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # replies on the real stdout; library prints go to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(**msg) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    runner = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        try:
            if cmd == "setup":
                runner = _setup(msg)
                reply(ok=True, label=runner.label, engine=runner.engine, precision=runner.precision,
                      supports_e2e=runner.supports_e2e, info=runner.info)  # fmt: skip
            elif cmd == "time":
                reply(ok=True, samples=runner.time(msg["bs"], msg["n"]))
            elif cmd == "e2e":
                reply(ok=True, seconds=runner.e2e([Path(f) for f in msg["files"]], msg["bs"]))
            elif cmd == "quit":
                if runner is not None:
                    runner.close()
                reply(ok=True)
                return 0
            else:
                reply(ok=False, kind="error", error=f"unknown command {cmd!r}")
        except Exception as e:
            kind = "unsupported" if isinstance(e, Unsupported) else "error"
            reply(ok=False, kind=kind, error=str(e) if kind == "unsupported" else f"{type(e).__name__}: {e}",
                  traceback=traceback.format_exc(limit=8))  # fmt: skip
    return 0


def _setup(spec: dict):
    import logging

    import torch

    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=spec.pop("log_level", logging.WARNING), format=fmt, datefmt="%H:%M:%S")
    threads = spec.get("threads")
    if threads and spec.get("device", "cpu") == "cpu":
        torch.set_num_threads(threads)
    fp32_means_fp32(spec.get("device", "cpu"))
    model = benchmark_model(spec.pop("model"), spec.pop("weights"), spec.pop("num_classes"))
    return build_runner(model, spec.pop("engine"), spec.pop("precision"), **spec)


if __name__ == "__main__":
    sys.exit(main())
