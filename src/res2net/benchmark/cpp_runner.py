"""The C++ predictor (``deploy/cpp`` ``res2net_predict``) as a benchmark runner, next to the Python ones.

* ``cpp``: an OpenVINO IR (fp32, or the NNCF int8 IR — the same recipe and default calibration as
  the Predictor's ``openvino int8``), run by OpenVINO's C++ API;
* ``cpp-pt2``: the AOTInductor ``.pt2`` package that ``res2net export --format pt2`` writes, on libtorch.

The package is exported once per weights and cached like the other artifacts. Model-only latency is
the binary's own ``--benchmark --json`` samples (full batches of a real photo, after 3 untimed
calls, in a fresh process per call of :meth:`CppRunner.time`); end-to-end is one run over the
files (decode, preprocess, infer, top-5, printing), timed by the binary from the first image to the
last result — model loading and compilation excluded, as the Predictor's construction is.

The binary: ``$RES2NET_CPP_PREDICT``, else ``deploy/cpp/build/res2net_predict`` of this source
checkout (``bash deploy/cpp/build.sh``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
from torch import nn

from res2net.benchmark.runner_base import Runner, Unsupported, artifact_key
from res2net.errors import Res2NetError
from res2net.runtime.base import default_threads
from res2net.runtime.cache import ArtifactCache

WARMUP = 3  # untimed calls inside every binary run: the first calls of a fresh process are slower
_TOTAL = re.compile(r"^total: (\d+) image\(s\) in ([\d.]+) ms")


def find_binary() -> Path:
    """``res2net_predict``: ``$RES2NET_CPP_PREDICT``, else the build of this source checkout."""
    env = os.environ.get("RES2NET_CPP_PREDICT")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "deploy" / "cpp" / "build" / "res2net_predict"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise Unsupported(
            f"no C++ predictor at {path}: build it with bash deploy/cpp/build.sh (or set RES2NET_CPP_PREDICT)"
        )
    return path


def check_cpp(engine: str, precision: str | None, device: str) -> None:
    """:class:`Unsupported` when ``engine`` cannot run ``precision`` here (before anything is built)."""
    if device != "cpu":
        raise Unsupported(f"{engine}: the C++ predictor runs on the CPU")
    allowed = ("fp32", "int8") if engine == "cpp" else ("fp32",)
    if (precision or "fp32") not in allowed:
        raise Unsupported(f"{engine} {precision}: the C++ predictor runs {' and '.join(allowed)} here")
    find_binary()


class CppRunner(Runner):
    """``res2net_predict`` on a cached export of the model (see the module docstring)."""

    supports_e2e = True

    def __init__(
        self,
        model: nn.Module,
        engine: str,
        precision: str | None,
        *,
        threads: int | None,
        input_size: int,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__("cpu")
        check_cpp(engine, precision, "cpu")
        self.engine, self.precision = engine, precision or "fp32"
        self.binary = find_binary()
        self.threads = threads or default_threads()
        self.package = self._export(model, input_size, cache_dir)
        from res2net.export.verify import default_images

        self.photo = default_images()[0]
        first = self._run("--image", self.photo, "--topk", "1").splitlines()[0]
        self.info = {
            "engine": f"C++ res2net_predict: {first.split('(', 1)[1].split(';')[0]}",
            "artifact": str(self.package),
            "binary": str(self.binary),
            # top-5 probabilities only (what the binary prints), so not the logit-based "accuracy" record
            "probability_check": self._accuracy(model, input_size),
        }

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"

    def _export(self, model: nn.Module, input_size: int, cache_dir) -> Path:
        fmt = "cpp-openvino" if self.engine == "cpp" else "cpp-pt2"
        filename = "model.xml" if self.engine == "cpp" else "model.pt2"
        key = artifact_key(model, fmt, self.precision, input_size, "cpu")

        def build(d: Path) -> None:
            if self.engine == "cpp":
                from res2net.export.openvino import export_openvino

                quantize = "int8" if self.precision == "int8" else None
                export_openvino(model, d / filename, input_size=input_size, quantize=quantize)
            else:
                from res2net.export.pt2 import export_pt2

                export_pt2(model, d / filename, input_size=input_size)

        return ArtifactCache(cache_dir).get_or_build(key, build) / filename

    def _run(self, *args) -> str:
        cmd = [str(self.binary), "--model", str(self.package), "--threads", str(self.threads), *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise Res2NetError(f"{self.label}: res2net_predict exited with {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def _accuracy(self, model: nn.Module, input_size: int) -> dict | None:
        """The binary's top-5 probabilities vs PyTorch eager fp32 on the packaged photos."""
        import torch

        from res2net.export.verify import default_images, preprocess_images

        images = default_images()
        out = self._run(*[a for p in images for a in ("--image", p)], "--json", "--topk", "5")
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        with torch.inference_mode():
            x = torch.from_numpy(preprocess_images(images, model, input_size, input_size))
            ref = torch.softmax(model.eval()(x).double(), 1).numpy()
        diffs = [abs(t["score"] - ref[i, t["class_id"]]) for i, r in enumerate(rows) for t in r["topk"]]
        top1 = np.array([r["topk"][0]["class_id"] for r in rows])
        return {"images": len(rows), "max_abs_prob_diff": float(max(diffs)),
                "top1_agreement": float((top1 == ref.argmax(1)).mean())}  # fmt: skip

    def time(self, batch_size: int, n: int) -> list[float]:
        out = self._run("--image", self.photo, "--benchmark", "--json", "--batch-size", batch_size,
                        "--warmup", WARMUP, "--iters", n, "--topk", "1")  # fmt: skip
        bench = next(json.loads(line)["benchmark"] for line in out.splitlines() if line.startswith('{"benchmark"'))
        return [ms / 1000 for ms in bench["samples_ms"]]

    def e2e(self, files: list[Path], batch_size: int) -> float:
        out = self._run(*[a for f in files for a in ("--image", f)], "--batch-size", batch_size)
        done = next((m for m in map(_TOTAL.match, out.splitlines()) if m), None)
        if done is None or int(done.group(1)) != len(files):
            raise Res2NetError(
                f"{self.label}: res2net_predict classified {done and done.group(1)} of {len(files)} images"
            )
        return float(done.group(2)) / 1000
