"""What the benchmark times: one *runner* per (engine, precision), all with the same interface.

* ``torch`` / ``onnxruntime`` / ``openvino`` / ``auto``: :class:`res2net.Predictor` — the engines users
  run (BN folded, cached exports, int8 calibration, accuracy-checked); model-only latency is
  ``Predictor.forward`` on a preprocessed batch, end-to-end is ``Predictor.iter_predict`` on files.
* ``pt2``: the AOTInductor package of :func:`res2net.export.export_pt2` (the C++ path's artifact).
* ``torchscript``: :func:`res2net.export.export_torchscript` (frozen trace).
* ``cudagraph`` (CUDA only): the BN-folded channels-last eager model in fp32/fp16/bf16, cuDNN
  autotuned, captured once per batch size in a ``torch.cuda.CUDAGraph`` and replayed — no kernel
  launch overhead (Res2Net runs ~200 small kernels per image) and no compile time.
* ``compile``: ``torch.compile`` of the BN-folded channels-last model; on CUDA with CUDA graphs
  (``mode="reduce-overhead"``).

On CUDA, fp32 means fp32: TF32 convolutions/matmuls are switched off for the process, so fp32
numbers are comparable with the seed's FP32 column and fp32 outputs with the CPU reference.
* ``paddle``: PaddleClas's own deployment engine (Paddle Inference + oneDNN), same weights, in its own
  interpreter (:mod:`res2net.benchmark.paddle_anchor`) — the first anchor ratios are taken against.
* ``timm``: timm's own Res2Net as a timm user runs it (eager, NCHW, ``inference_mode``; autocast for
  bf16 / fp16), same weights (:mod:`res2net.benchmark.timm_anchor`) — the second anchor.
* ``cpp`` / ``cpp-pt2``: the C++ predictor ``deploy/cpp`` builds, on an OpenVINO IR (fp32 / int8) or
  a ``.pt2`` package (:mod:`res2net.benchmark.cpp_runner`).

pt2 / torchscript / compile artifacts are built once and cached like the Predictor's (keyed by the
weights' digest) in ``$RES2NET_HOME/artifacts``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net.accuracy import PRECISIONS as ENGINE_PRECISIONS
from res2net.benchmark.cpp_runner import CppRunner, check_cpp
from res2net.benchmark.paddle_anchor import PaddleAnchor, PaddleUnavailable, paddle_model_name, paddle_python
from res2net.benchmark.runner_base import (
    Runner,
    TensorRunner,
    Unsupported,
    accuracy_vs_eager,
    artifact_key,
    check_torch_precision,
    fp32_means_fp32,
    random_batch,
)
from res2net.benchmark.timing import time_calls
from res2net.benchmark.timm_anchor import TimmRunner, check_timm
from res2net.errors import Res2NetError
from res2net.export.pt2 import export_pt2, load_pt2
from res2net.export.torchscript import export_torchscript, load_torchscript
from res2net.export.verify import default_images, preprocess_images
from res2net.models.fuse import fold_batchnorm
from res2net.predict import Predictor
from res2net.runtime import ENGINE_NAMES, engine_class
from res2net.runtime.cache import ArtifactCache

PREDICTOR_ENGINES = ENGINE_NAMES
ARTIFACT_ENGINES = ("pt2", "torchscript")
ANCHOR_ENGINES = ("paddle", "timm")  # not ours: what our engines are compared against
CPP_ENGINES = ("cpp", "cpp-pt2")  # the C++ predictor (res2net.benchmark.cpp_runner)
ENGINES = (*PREDICTOR_ENGINES, "auto", "cudagraph", "compile", *ARTIFACT_ENGINES, *CPP_ENGINES, *ANCHOR_ENGINES)
CPU_ENGINES = (*PREDICTOR_ENGINES, "auto", *ANCHOR_ENGINES)  # the default set on a CPU
PRECISIONS = ("fp32", "fp16", *ENGINE_PRECISIONS[1:])  # fp16: GPU only


class PredictorRunner(Runner):
    """``res2net.Predictor`` with one engine (or ``auto``): the user-facing path, accuracy-checked."""

    supports_e2e = True

    def __init__(
        self,
        model: nn.Module,
        engine: str,
        precision: str | None,
        *,
        device: str,
        threads: int | None,
        input_size: int,
        check: bool,
        max_batch: int,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device)
        if engine != "auto":
            if precision == "fp16":
                raise Unsupported(f"{engine} fp16: the Predictor's engines run fp32, bf16 and int8")
            reason = engine_class(engine).unavailable_reason(precision, device)
            if reason:
                raise Unsupported(f"{engine} {precision}: {reason}")
        self.predictor = Predictor(
            model,
            engine=engine,
            precision=precision,
            device=device,
            threads=threads,
            batch_size=max_batch,
            check=check,
            cache_dir=cache_dir,
        )
        self.engine = engine
        self.precision = self.predictor.precision
        chosen = self.predictor.engine.describe()
        self.info = {"engine": chosen, "accuracy": asdict(self.predictor.accuracy) if self.predictor.accuracy else None}
        if engine == "auto":
            self.info["auto_choice"] = f"{self.predictor.engine_name} {self.predictor.precision}"
        self.input_size = input_size

    @property
    def label(self) -> str:
        if self.engine == "auto":
            return f"auto ({self.predictor.engine_name} {self.predictor.precision})"
        return super().label

    def time(self, batch_size: int, n: int) -> list[float]:
        x = random_batch(batch_size, self.input_size)
        return time_calls(lambda: self.predictor.forward(x), n)  # numpy out: already synchronised

    def e2e(self, files: list[Path], batch_size: int) -> float:
        t = time.perf_counter()
        n = sum(1 for _ in self.predictor.iter_predict(files, batch_size=batch_size, on_error="raise"))
        seconds = time.perf_counter() - t
        if n != len(files):
            raise Res2NetError(f"{self.label}: {n} results for {len(files)} images")
        return seconds


def _fold(model: nn.Module, device: str, dtype: torch.dtype) -> nn.Module:
    """A BN-folded, channels-last copy in ``dtype`` on ``device`` (the user's model is not touched)."""
    m = fold_batchnorm(copy.deepcopy(model).eval())
    return m.to(device=device, dtype=dtype, memory_format=torch.channels_last)


class CudaGraphRunner(TensorRunner):
    """Eager (folded, channels-last) model captured in one CUDA graph per batch size and replayed."""

    engine = "cudagraph"

    def __init__(self, model: nn.Module, precision: str, *, device: str, input_size: int) -> None:
        if not device.startswith("cuda"):
            raise Unsupported("cudagraph: CUDA graphs need a CUDA device")
        check_torch_precision("cudagraph", precision, device)
        super().__init__(device, precision, input_size)
        fp32_means_fp32(device)
        torch.backends.cudnn.benchmark = True  # autotune conv algorithms once per shape, before capture
        self.model = _fold(model, device, self.dtype)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.info = {
            "engine": f"eager + CUDA graph ({device}, {precision}, cuDNN benchmark, BN folded, channels_last)",
            "accuracy": accuracy_vs_eager(model, self.model, self.dtype, device),
        }

    def _graph(self, batch_size: int) -> torch.cuda.CUDAGraph:
        if batch_size not in self.graphs:
            x = self._input(batch_size)  # the graph's static input
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(stream):
                for _ in range(3):  # cuDNN autotuning and allocator warm-up happen outside the capture
                    self.model(x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                out = self.model(x)
            self.graphs[batch_size] = (graph, out)
        return self.graphs[batch_size][0]

    def time(self, batch_size: int, n: int) -> list[float]:
        return time_calls(self._graph(batch_size).replay, n, self.sync)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for ``x`` through the captured graph (copied into its static input, replayed)."""
        graph = self._graph(len(x))
        self._inputs[len(x)].copy_(x)
        graph.replay()
        return self.graphs[len(x)][1].clone()


class CompileRunner(TensorRunner):
    """``torch.compile`` (Inductor) of the folded model; CUDA graphs on GPU (``reduce-overhead``)."""

    engine = "compile"

    def __init__(self, model: nn.Module, precision: str, *, device: str, input_size: int, mode: str | None) -> None:
        check_torch_precision("compile", precision, device)
        super().__init__(device, precision, input_size)
        fp32_means_fp32(device)
        mode = mode or ("reduce-overhead" if device.startswith("cuda") else None)
        if device == "cpu":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # constant-fold weights into the CPU kernels (oneDNN prepacking)
        self.model = _fold(model, device, self.dtype)
        compiled = torch.compile(self.model, mode=mode, dynamic=False)
        cudagraphs = mode in ("reduce-overhead", "max-autotune")

        def call(x):
            if cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            return compiled(x)

        self.fn = call
        self.info = {"engine": f"torch.compile mode={mode or 'default'} ({device}, {precision})"}


class ArtifactRunner(TensorRunner):
    """An exported pt2 (AOTInductor) or TorchScript file, built once per weights and cached."""

    def __init__(
        self,
        model: nn.Module,
        fmt: str,
        precision: str,
        *,
        device: str,
        input_size: int,
        cache_dir: str | Path | None = None,
    ) -> None:
        check_torch_precision(fmt, precision, device)
        if fmt == "torchscript" and precision == "bf16" and device == "cpu":
            raise Unsupported("torchscript bf16: use compile or pt2")
        super().__init__(device, precision, input_size)
        fp32_means_fp32(device)

        self.engine = fmt
        key = artifact_key(model, fmt, precision, input_size, torch.device(device).type)
        cache = ArtifactCache(cache_dir)
        filename = "model.pt2" if fmt == "pt2" else "model.pt"

        def build(d: Path) -> None:
            folded = _fold(model, device, self.dtype)
            if fmt == "pt2":
                export_pt2(folded, d / filename, input_size=input_size, device=device)
            else:
                export_torchscript(folded, d / filename, input_size=input_size)

        path = cache.get_or_build(key, build) / filename
        if fmt == "pt2":
            self.fn = load_pt2(path, device)
        else:
            self.fn, _ = load_torchscript(path, device)
        self.info = {
            "engine": f"{fmt} {precision} ({device})",
            "artifact": str(path),
            "accuracy": accuracy_vs_eager(model, self.fn, self.dtype, device),
        }


class PaddleRunner(Runner):
    """The anchor: PaddleClas's ClsPredictor (Paddle Inference, oneDNN) in ``.venv-paddle``."""

    engine = "paddle"
    precision = "fp32"
    supports_e2e = True

    def __init__(self, model: nn.Module, *, device: str, threads: int, input_size: int, program: str = "pir") -> None:
        super().__init__(device)
        if device != "cpu":
            raise Unsupported("paddle: the anchor runs Paddle Inference on the CPU (oneDNN)")

        try:  # reasons not to run at all are skips; a worker that fails later is a failure
            paddle_model_name(model)
            paddle_python()
        except PaddleUnavailable as e:
            raise Unsupported(f"paddle: {e}") from None

        self.anchor = PaddleAnchor(model, threads=threads, input_size=input_size, program=program)
        self.info = {"engine": f"Paddle Inference {self.anchor.info['paddle']} oneDNN fp32 ({threads} threads)",
                     **self.anchor.info}  # fmt: skip
        self.input_size = input_size
        self._check_same_weights(model)

    @property
    def label(self) -> str:
        return "paddle fp32"

    def _check_same_weights(self, model: nn.Module) -> None:
        """The anchor must run the same function: compare its outputs with ours on real photos (warn if not)."""
        images = default_images()
        if not images:
            return
        x = preprocess_images(images, model, self.input_size, self.input_size)
        theirs = self.anchor.run(x)
        with torch.inference_mode():
            ours = model.eval()(torch.from_numpy(x)).double().numpy()
        if self.anchor.softmax:  # log-probabilities are the logits up to a per-image constant
            theirs = np.log(np.maximum(theirs.astype(np.float64), 1e-30))
        centred = lambda t: t - t.mean(axis=1, keepdims=True)  # noqa: E731
        self.info["parity"] = {
            "images": len(x),
            "max_abs_logit_diff": float(np.abs(centred(theirs) - centred(ours)).max()),
            "top1_agreement": float((theirs.argmax(1) == ours.argmax(1)).mean()),
        }
        p = self.info["parity"]
        if p["max_abs_logit_diff"] > 1e-2 or p["top1_agreement"] < 1.0:
            import logging

            logging.getLogger("res2net.benchmark").warning(
                "the Paddle anchor's outputs differ from ours (max |logit diff| %.3g, top-1 agreement %.0f%%): "
                "it may not run the same weights",
                p["max_abs_logit_diff"],
                100 * p["top1_agreement"],
            )

    def time(self, batch_size: int, n: int) -> list[float]:
        return self.anchor.time(batch_size, n)

    def e2e(self, files: list[Path], batch_size: int) -> float:
        return self.anchor.e2e(files, batch_size, passes=1)[0]

    def close(self) -> None:
        self.anchor.close()


def check_supported(engine: str, precision: str | None, device: str, model: str | None = None) -> None:
    """Raise :class:`Unsupported` if ``engine`` cannot run ``precision`` on ``device`` here — without building it.

    ``model`` (a zoo name), when given, is checked too where an engine covers only some models
    (timm), so no worker process is started just to report that.
    """
    if engine not in ENGINES:
        raise Res2NetError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine in PREDICTOR_ENGINES:
        if precision == "fp16":
            raise Unsupported(f"{engine} fp16: the Predictor's engines run fp32, bf16 and int8")
        reason = engine_class(engine).unavailable_reason(precision or "fp32", device)
        if reason:
            raise Unsupported(f"{engine} {precision}: {reason}")
    elif engine == "paddle":
        if precision not in (None, "fp32"):
            raise Unsupported(f"paddle {precision}: the anchor is fp32 (PaddleClas's CPU deployment)")
        if device != "cpu":
            raise Unsupported("paddle: the anchor runs Paddle Inference on the CPU (oneDNN)")
    elif engine == "timm":
        check_timm(model, precision or "fp32", device)
    elif engine in CPP_ENGINES:
        check_cpp(engine, precision, device)
    elif engine != "auto":
        if engine == "cudagraph" and not device.startswith("cuda"):
            raise Unsupported("cudagraph: CUDA graphs need a CUDA device")
        check_torch_precision(engine, precision or "fp32", device)
        if engine == "torchscript" and precision == "bf16" and device == "cpu":
            raise Unsupported("torchscript bf16: use compile or pt2")


def build_runner(
    model: nn.Module,
    engine: str,
    precision: str | None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    input_size: int = 224,
    check: bool = True,
    max_batch: int = 8,
    cache_dir: str | Path | None = None,
    compile_mode: str | None = None,
    paddle_program: str = "pir",
) -> Runner:
    """The runner for ``engine`` at ``precision``; :class:`Unsupported` says why one cannot run here."""
    check_supported(engine, precision, device)
    if engine in PREDICTOR_ENGINES or engine == "auto":
        return PredictorRunner(
            model,
            engine,
            precision,
            device=device,
            threads=threads,
            input_size=input_size,
            check=check,
            max_batch=max_batch,
            cache_dir=cache_dir,
        )
    if engine == "cudagraph":
        return CudaGraphRunner(model, precision or "fp32", device=device, input_size=input_size)
    if engine == "compile":
        return CompileRunner(model, precision or "fp32", device=device, input_size=input_size, mode=compile_mode)
    if engine in ARTIFACT_ENGINES:
        return ArtifactRunner(
            model, engine, precision or "fp32", device=device, input_size=input_size, cache_dir=cache_dir
        )
    if engine in CPP_ENGINES:
        return CppRunner(model, engine, precision, threads=threads, input_size=input_size, cache_dir=cache_dir)
    if engine == "timm":
        return TimmRunner(model, precision or "fp32", device=device, input_size=input_size, check=check)
    if engine == "paddle":
        return PaddleRunner(model, device=device, threads=threads or 2, input_size=input_size, program=paddle_program)
    raise Res2NetError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
