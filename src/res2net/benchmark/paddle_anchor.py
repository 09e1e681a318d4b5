"""Parent side of the Paddle Inference anchor: same weights, separate interpreter, JSON-lines protocol.

Paddle must never be imported into the res2net process (nor become a dependency), so the anchor runs
:mod:`res2net.benchmark.paddle_worker` with the Paddle environment's interpreter — found in
``$RES2NET_PADDLE_PYTHON``, else ``.venv-paddle/bin/python`` in the current directory or the
repository this package is installed from (``scripts/setup.sh`` creates it).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

from res2net.errors import Res2NetError
from res2net.weights.paddle import paddle_key_maps

log = logging.getLogger("res2net.benchmark")

# PaddleClas builds these (ppcls/arch/backbone/model_zoo/res2net*.py); _ssld weights share the graph.
PADDLE_MODELS = (
    "Res2Net50_26w_4s",
    "Res2Net50_14w_8s",
    "Res2Net50_vd_26w_4s",
    "Res2Net101_vd_26w_4s",
    "Res2Net200_vd_26w_4s",
)


class PaddleUnavailable(Res2NetError):
    """The Paddle anchor cannot run here (no Paddle environment, or a model PaddleClas does not have)."""


def paddle_python() -> Path:
    """The Paddle environment's interpreter, or :class:`PaddleUnavailable` saying where it was looked for."""
    env = os.environ.get("RES2NET_PADDLE_PYTHON")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[3]  # src/res2net/benchmark/ -> repository root (editable install)
    candidates += [Path.cwd() / ".venv-paddle/bin/python", repo / ".venv-paddle/bin/python"]
    for c in candidates:
        if c.is_file():
            return c
    raise PaddleUnavailable(
        "no Paddle environment: set RES2NET_PADDLE_PYTHON or create .venv-paddle (bash scripts/setup.sh); "
        f"looked for {', '.join(map(str, candidates))}"
    )


def paddle_model_name(model: nn.Module) -> str:
    """The PaddleClas constructor for ``model``, which must have PaddleClas semantics."""
    card = getattr(model, "pretrained_cfg", None)
    name = getattr(card, "name", "").removesuffix("_ssld")
    if name not in PADDLE_MODELS or getattr(card, "family", "") != "paddleclas":
        raise PaddleUnavailable(f"PaddleClas has no model for {getattr(card, 'name', type(model).__name__)!r}")
    cfg = getattr(model, "cfg", None)
    if cfg is not None and cfg != card.config.with_overrides(num_classes=cfg.num_classes):
        raise PaddleUnavailable(f"{name} was built with options PaddleClas's {name} does not have")
    return name


def paddle_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """``model``'s tensors under PaddleClas's structured keys (``Linear`` weights transposed to ``[in, out]``)."""
    ours = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    out = {}
    for m in paddle_key_maps(model.cfg):
        value = ours[m.ours]
        out[m.structured] = np.ascontiguousarray(value.T if m.transpose else value)
    return out


class PaddleAnchor:
    """A running Paddle Inference predictor (PaddleClas's ``ClsPredictor``) with ``model``'s weights."""

    def __init__(
        self,
        model: nn.Module,
        *,
        threads: int = 2,
        input_size: int = 224,
        mkldnn: bool = True,
        softmax: bool = True,
        program: str = "pir",
        work_dir: str | Path | None = None,
        timeout: float = 900,
    ) -> None:
        self.name = paddle_model_name(model)
        python = paddle_python()
        self._tmp = tempfile.TemporaryDirectory(prefix="res2net-paddle-") if work_dir is None else None
        self.work_dir = Path(work_dir or self._tmp.name)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.softmax = softmax
        weights = self.work_dir / "weights.npz"
        np.savez(weights, **paddle_state_dict(model))
        worker = Path(__file__).with_name("paddle_worker.py")
        if program not in ("pir", "pdmodel"):
            raise PaddleUnavailable(f"Paddle program format {program!r}: choose 'pir' (Paddle 3 default) or 'pdmodel'")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONNOUSERSITE": "1"}
        env["FLAGS_enable_pir_api"] = "1" if program == "pir" else "0"
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [str(python), str(worker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if not log.isEnabledFor(logging.DEBUG) else None,
            text=True,
            env=env,
        )
        card = model.pretrained_cfg
        resize = card.preprocess.at_crop(input_size).resize_short
        reply = self._call(
            cmd="setup",
            model=self.name,
            num_classes=model.num_classes,
            weights=str(weights),
            work_dir=str(self.work_dir),
            threads=threads,
            input_size=[input_size, input_size],
            resize_short=resize,
            mkldnn=mkldnn,
            softmax=softmax,
        )
        self.info = {**reply["info"], "setup_seconds": reply["seconds"], "model": self.name}
        log.info("Paddle anchor ready: %s (paddle %s, oneDNN %s, %d threads)", self.name, self.info["paddle"],
                 self.info["mkldnn"], threads)  # fmt: skip

    def _call(self, **msg) -> dict:
        if self.proc.poll() is not None:
            raise PaddleUnavailable(f"the Paddle worker exited (code {self.proc.returncode}){self._stderr()}")
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise PaddleUnavailable(f"the Paddle worker died during {msg['cmd']!r}{self._stderr()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PaddleUnavailable(f"Paddle worker: {msg['cmd']} failed: {reply.get('error')}")
        return reply

    def _stderr(self) -> str:
        return "" if log.isEnabledFor(logging.DEBUG) else " (run with -v to see its output)"

    def time(self, batch_size: int, n: int, warmup: int = 0) -> list[float]:
        """``n`` model-only latency samples (seconds) at ``batch_size`` (copy in + run + copy out)."""
        return self._call(cmd="time", bs=batch_size, n=n, warmup=warmup)["samples"]

    def e2e(self, files: list[str | Path], batch_size: int, passes: int = 1) -> list[float]:
        """Seconds per pass of PaddleClas's predict_cls.py loop over ``files``."""
        return self._call(cmd="e2e", files=[str(f) for f in files], bs=batch_size, passes=passes)["seconds"]

    def run(self, x: np.ndarray) -> np.ndarray:
        """The anchor's outputs (probabilities, with the softmax head) for a float32 NCHW batch."""
        src, dst = self.work_dir / "run_in.npy", self.work_dir / "run_out.npy"
        np.save(src, np.ascontiguousarray(x, dtype=np.float32))
        self._call(cmd="run", input=str(src), output=str(dst))
        return np.load(dst)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call(cmd="quit")
                self.proc.wait(timeout=30)
            except (PaddleUnavailable, OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> PaddleAnchor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    print(paddle_python(), file=sys.stderr)
