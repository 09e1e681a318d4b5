"""A runner in a worker process of its own (:mod:`res2net.benchmark.worker`), behind the same interface."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from res2net.benchmark.runner_base import Runner, Unsupported
from res2net.errors import Res2NetError


class RemoteRunner(Runner):
    """A runner living in its own worker process (:mod:`res2net.benchmark.worker`); same interface.

    Construction starts the worker and builds the runner there (raising :class:`Unsupported` with
    the worker's reason when it cannot run); calls are forwarded over the worker's pipes.
    """

    def __init__(self, spec: dict, *, threads: int | None, timeout: float = 1800) -> None:
        super().__init__(spec.get("device", "cpu"))
        self._json = json
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        debug = logging.getLogger("res2net.benchmark").isEnabledFor(logging.DEBUG)
        spec = {**spec, "log_level": logging.INFO if debug else logging.WARNING}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "res2net.benchmark.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            reply = self._call(cmd="setup", **spec)
        except BaseException:
            self.close()
            raise
        self.engine, self.precision, self._label = reply["engine"], reply["precision"], reply["label"]
        self.supports_e2e = reply["supports_e2e"]
        self.info = {**reply["info"], "process": "own worker process"}

    @property
    def label(self) -> str:
        return self._label

    def _call(self, **msg) -> dict:
        if self.proc.poll() is not None:
            raise Res2NetError(f"benchmark worker exited with code {self.proc.returncode} (run with -v for its log)")
        self.proc.stdin.write(self._json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise Res2NetError(f"benchmark worker died during {msg['cmd']!r} (run with -v for its log)")
        reply = self._json.loads(line)
        if not reply.get("ok"):
            if reply.get("kind") == "unsupported":
                raise Unsupported(reply["error"])
            raise Res2NetError(f"benchmark worker: {msg['cmd']} failed: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def time(self, batch_size: int, n: int) -> list[float]:
        return self._call(cmd="time", bs=batch_size, n=n)["samples"]

    def e2e(self, files: list[Path], batch_size: int) -> float:
        return self._call(cmd="e2e", files=[str(f) for f in files], bs=batch_size)["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call(cmd="quit")
                self.proc.wait(timeout=60)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
