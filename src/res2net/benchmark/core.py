"""The benchmark run: build every runner, then time them *alternately* and collect comparable records.

Why alternate: on a shared or throttling machine the speed changes over minutes. Timing engine A for
a minute and then engine B compares two different machines. Here every batch size is measured in
``rounds`` rounds, and in each round every runner (Paddle's included) does ``repeats / rounds``
calls in turn, so a slow minute slows all of them alike; the ratios are what survives the noise.

Model-only latency: one preprocessed random batch, warm-up calls first (they build, compile, tune),
then ``repeats`` (>= 30) timed calls; median and p90. End-to-end: JPEG files -> top-5 results, with
decoding and preprocessing, one warm pass then ``e2e_passes`` timed passes alternated across
runners; images/s from the median pass.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from res2net.accuracy import PRECISIONS as ENGINE_PRECISIONS
from res2net.benchmark.remote import RemoteRunner
from res2net.benchmark.runner_base import Runner, Unsupported, fp32_means_fp32
from res2net.benchmark.runners import CPU_ENGINES, build_runner, check_supported
from res2net.benchmark.timing import Summary
from res2net.cpu import cpu_flags, isa_level
from res2net.data.image import find_images
from res2net.errors import Res2NetError
from res2net.export.verify import default_images, preprocess_images
from res2net.factory import create_model_for_weights

log = logging.getLogger("res2net.benchmark")


@dataclass
class Settings:
    models: list[str]
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 8])
    engines: list[str] = field(default_factory=lambda: list(CPU_ENGINES))
    precisions: list[str] = field(default_factory=lambda: list(ENGINE_PRECISIONS))
    device: str = "cpu"
    threads: int | None = 2
    input_size: int = 224
    weights: str | None = None  # None: seeded random weights; "official"; or a file (one model)
    num_classes: int | None = None
    warmup: int = 10
    repeats: int = 30
    rounds: int = 5
    check: bool = True
    e2e: bool = True
    e2e_images: list[str] | None = None
    e2e_count: int = 64
    e2e_batch_size: int = 8
    e2e_passes: int = 3
    compile_mode: str | None = None
    paddle_program: str = "pir"
    cache_dir: str | None = None
    isolate: bool = True  # every runner in its own worker process (see res2net.benchmark.worker)

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.rounds < 1 or self.warmup < 0:
            raise Res2NetError("--repeats and --rounds must be >= 1 and --warmup >= 0")
        if any(b < 1 for b in self.batch_sizes):
            raise Res2NetError(f"batch sizes must be >= 1, got {self.batch_sizes}")


@dataclass
class LatencyRecord:
    model: str
    size: int
    engine: str
    precision: str
    label: str
    batch_size: int
    device: str
    n: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float


@dataclass
class E2ERecord:
    model: str
    engine: str
    precision: str
    label: str
    batch_size: int
    images: int
    passes: int
    median_s: float
    images_per_s: float


@dataclass
class BenchmarkResult:
    settings: dict
    machine: dict
    command: str
    started: str
    seconds: float = 0.0
    latency: list[LatencyRecord] = field(default_factory=list)
    e2e: list[E2ERecord] = field(default_factory=list)
    runners: list[dict] = field(default_factory=list)  # per model/runner: what it is, checks, build time
    skipped: list[dict] = field(default_factory=list)  # (model, engine, precision, reason)

    def to_dict(self) -> dict:
        return asdict(self)


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on (docs/benchmarks.md wants machine + command next to them)."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
    }
    with contextlib.suppress(AttributeError):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]

    flags = cpu_flags()
    info["cpu_features"] = sorted(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
                                  if f in flags)  # fmt: skip
    info["isa"] = isa_level()
    for mod in ("onnxruntime", "openvino"):
        with contextlib.suppress(ImportError):
            info[mod] = __import__(mod).__version__
    if str(device).startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(idx)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


LAST_BN_GAMMA_SCALE = 0.1


def random_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random weights and BN statistics whose predictions depend on the input.

    The training init zeroes the last BN of every block, and plain random BN statistics let the
    input-independent part swamp the rest in a deep net: either way every image gets the same class,
    and accuracy checks or the Paddle anchor's same-weights check would pass whatever an engine
    computes. So weights are random (N(0, 1/fan_in), gammas U(0.5, 1)) and each BN's running
    statistics are those of its actual input on real photos, perturbed (as tests/oracle does); the
    classifier bias cancels the features' mean, so the top class varies from image to image.
    Each block's last BN gamma is scaled by :data:`LAST_BN_GAMMA_SCALE`, as training leaves them
    small: with gammas of ~1 the residual stream grows block by block and float32 rounding with it
    (fp32 engines then differed from eager by 2e-4 on Res2Net-101 and 1e-3 on Res2Net-200, Paddle
    likewise, and bf16 by 26% on Res2Net-50); scaled, fp32 agrees within 2e-6 and bf16 within the
    check. int8 still errs 11-16% on them (random filters are not what int8 is calibrated for):
    judge int8 on trained weights.
    Latency does not depend on the values; being seeded, the same weights come back every run.
    """
    g = torch.Generator().manual_seed(seed)
    bns = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                bns.append(m)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)

    def calibrate(bn: nn.BatchNorm2d, inputs) -> None:
        x = inputs[0].double()
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        shift = torch.randn(mean.shape, generator=g, dtype=torch.float64)
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * shift)
        bn.running_var.copy_(var * (torch.rand(var.shape, generator=g, dtype=torch.float64) + 0.5) + bn.eps)

    with torch.no_grad():  # small last-BN gammas, as training leaves them: residual stream O(1)
        for m in model.modules():
            if hasattr(m, "zero_init_last") and isinstance(getattr(m, "bn3", None), nn.BatchNorm2d):
                m.bn3.weight.mul_(LAST_BN_GAMMA_SCALE)
    hooks = [bn.register_forward_pre_hook(calibrate) for bn in bns]
    x = _calibration_batch(model)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear) and hasattr(model, "forward_head"):
        with torch.no_grad():  # remove the class bias every image shares, so the top class depends on the image
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            fc.bias.copy_(-fc.weight @ feats.mean(0) + torch.randn(fc.bias.shape, generator=g) * 0.1)
    return model


def _calibration_batch(model: nn.Module) -> torch.Tensor:
    images = default_images()
    crop = getattr(getattr(getattr(model, "pretrained_cfg", None), "preprocess", None), "crop_size", 224)
    if images:
        return torch.from_numpy(preprocess_images(images, model, crop, crop))
    return torch.randn(4, 3, crop, crop, generator=torch.Generator().manual_seed(1))


def benchmark_model(name: str, weights: str | None, num_classes: int | None) -> nn.Module:
    """The fp32 eval model. Without weights: seeded random ones (the same every run, so cached
    exports and int8 calibrations are reused)."""
    if weights is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return random_weights_(create_model_for_weights(name, None, num_classes or None))
    return create_model_for_weights(name, weights, num_classes or None)


def e2e_files(settings: Settings) -> list[Path]:
    """The end-to-end image list: the user's files, or the packaged photos repeated to ``e2e_count``."""
    files = find_images(settings.e2e_images) if settings.e2e_images else default_images()
    files = [f for f in files if f.is_file()]
    if not files:
        raise Res2NetError("no images for the end-to-end benchmark (pass --images DIR, or --no-e2e)")
    if settings.e2e_images:
        return files
    return [files[i % len(files)] for i in range(settings.e2e_count)]


def _combos(settings: Settings) -> list[tuple[str, str | None]]:
    combos: list[tuple[str, str | None]] = []
    for engine in settings.engines:
        if engine in ("auto", "paddle"):
            combos.append((engine, None))  # auto picks its precision; the anchor is fp32
        else:
            combos += [(engine, p) for p in settings.precisions]
    return combos


def run_benchmark(settings: Settings, command: str = "") -> BenchmarkResult:
    """Measure every model x engine x precision x batch size of ``settings`` on this machine."""
    t0 = time.perf_counter()
    if settings.threads and settings.device == "cpu":
        torch.set_num_threads(settings.threads)

    fp32_means_fp32(settings.device)  # every runner of this run, the Predictor's torch engine included
    result = BenchmarkResult(
        settings=asdict(settings),
        machine=machine_info(settings.device),
        command=command or " ".join(["res2net", *sys.argv[1:]]),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    files = e2e_files(settings) if settings.e2e else []
    for name in settings.models:
        model = benchmark_model(name, settings.weights, settings.num_classes)
        runners = _build_runners(model, name, settings, result)
        try:
            _measure_latency(runners, name, settings, result)
            if settings.e2e:
                _measure_e2e(runners, name, files, settings, result)
        finally:
            for r in runners:
                r.close()
    result.seconds = round(time.perf_counter() - t0, 1)
    return result


def _build_runners(model: nn.Module, name: str, settings: Settings, result: BenchmarkResult) -> list[Runner]:
    runners: list[Runner] = []
    for engine, precision in _combos(settings):
        t = time.perf_counter()
        options = dict(
            device=settings.device,
            threads=settings.threads,
            input_size=settings.input_size,
            check=settings.check,
            max_batch=max([*settings.batch_sizes, settings.e2e_batch_size]),
            cache_dir=settings.cache_dir,
            compile_mode=settings.compile_mode,
        )
        try:
            check_supported(engine, precision, settings.device, model=name)  # before starting a worker for nothing
            if settings.isolate and engine != "paddle":  # the Paddle anchor always has its own process
                spec = dict(model=name, weights=settings.weights, num_classes=settings.num_classes, engine=engine,
                            precision=precision, **options)  # fmt: skip
                runner = RemoteRunner(spec, threads=settings.threads)
            else:
                runner = build_runner(model, engine, precision, paddle_program=settings.paddle_program, **options)
        except Unsupported as e:
            result.skipped.append({"model": name, "engine": engine, "precision": precision, "reason": str(e)})
            log.info("skip %s %s: %s", engine, precision or "", e)
            continue
        except Res2NetError as e:  # a runner that fails to build must not sink the others' numbers
            result.skipped.append({"model": name, "engine": engine, "precision": precision, "reason": f"failed: {e}"})
            log.warning("%s %s could not be built: %s", engine, precision or "", e)
            continue
        if any(r.label == runner.label for r in runners):  # e.g. auto chose an engine listed explicitly too
            log.info("%s duplicates a runner already measured; keeping both", runner.label)
        runners.append(runner)
        result.runners.append(
            {"model": name, "label": runner.label, "build_seconds": round(time.perf_counter() - t, 1), **runner.info}
        )
        log.info("ready: %s (%.1f s)", runner.label, time.perf_counter() - t)
    return runners


def _measure_latency(runners: list[Runner], name: str, settings: Settings, result: BenchmarkResult) -> None:
    per_round = math.ceil(settings.repeats / settings.rounds)
    for bs in settings.batch_sizes:
        samples: dict[int, list[float]] = {i: [] for i in range(len(runners))}
        for r in runners:
            warm = max(settings.warmup, 3) if r.engine == "compile" else settings.warmup
            if warm:
                r.time(bs, warm)
        for _ in range(settings.rounds):
            for i, r in enumerate(runners):
                samples[i] += r.time(bs, per_round)
        for i, r in enumerate(runners):
            s = Summary.of(samples[i])
            rec = LatencyRecord(
                name, settings.input_size, r.engine, r.precision, r.label, bs, settings.device, **asdict(s)
            )
            result.latency.append(rec)
            log.info("%s bs=%d %s: median %.2f ms, p90 %.2f ms", name, bs, r.label, s.median_ms, s.p90_ms)


def _measure_e2e(runners: list[Runner], name: str, files: list[Path], settings: Settings, result: BenchmarkResult):
    e2e = [r for r in runners if r.supports_e2e]
    bs = settings.e2e_batch_size
    seconds: dict[int, list[float]] = {i: [] for i in range(len(e2e))}
    for r in e2e:
        r.e2e(files, bs)  # warm pass: file cache, decoder and thread pools
    for _ in range(settings.e2e_passes):
        for i, r in enumerate(e2e):
            seconds[i].append(r.e2e(files, bs))
    for i, r in enumerate(e2e):
        med = sorted(seconds[i])[len(seconds[i]) // 2]
        rec = E2ERecord(name, r.engine, r.precision, r.label, bs, len(files), len(seconds[i]), med, len(files) / med)
        result.e2e.append(rec)
        log.info("%s end-to-end %s: %.1f images/s", name, r.label, rec.images_per_s)
