"""``res2net quantize-report``: what int8 (and each engine) costs and buys, measured on your data.

For every engine x precision it prints the artifact size, latency at several batch sizes, the
relative logit error and top-1 agreement with PyTorch eager fp32 and — given a labelled set — the
accuracy and its delta to fp32, so a user picks a deployment knowingly rather than by default.

Engines: ``torch``, ``onnxruntime`` and ``openvino`` are :class:`res2net.Predictor`'s (int8 =
ONNX Runtime static QDQ / OpenVINO NNCF, built and cached by :mod:`res2net.export.quantize`);
``executorch`` is the XNNPACK ``.pte`` of :mod:`res2net.export.executorch` (int8 = PT2E). All
int8 artifacts are calibrated on the same images. A ``.pte`` has a fixed batch size; it is built at
batch 1 (the edge case), so its other batch sizes are left blank.

The relative logit error is the mean over images of ``||d(int8) - d(fp32)|| / ||d(fp32)||`` with
``d`` the logits minus their per-image mean (:func:`res2net.runtime.compare_logits`).
Latencies are medians of ``--iters`` timed calls after warm-up, on this machine's threads; numbers
are only comparable within one run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from res2net.cpu import isa_level
from res2net.data.datasets import DatasetError, read_list_file, scan_image_folder
from res2net.data.image import load_image
from res2net.errors import Res2NetError
from res2net.export.calibration import calibration_data, calibration_files, sample_images
from res2net.export.executorch import PRECISIONS as PTE_PRECISIONS
from res2net.export.executorch import PteModel, export_pte
from res2net.predict import Predictor
from res2net.runtime import ENGINE_NAMES, EngineError, compare_logits, engine_class
from res2net.runtime.base import array_digest
from res2net.runtime.cache import ArtifactCache, ArtifactKey

log = logging.getLogger("res2net.report")

ENGINES = (*ENGINE_NAMES, "executorch")
DEFAULT_BATCH_SIZES = (1, 4, 8)
PTE_RECIPE = 2  # bump when export_pte's output changes (2: PT2E calibration in batches), to rebuild cached .pte


@dataclass
class ReportRow:
    engine: str
    precision: str
    size_mb: float | None = None
    latency_ms: dict[int, float | None] = field(default_factory=dict)
    max_abs_diff: float | None = None
    rel_error: float | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None
    accuracy_delta: float | None = None
    note: str = ""  # why the row has no numbers
    recipe: str = ""  # an int8 recipe chosen for this CPU kind (ONNX Runtime), shown in the note column


@dataclass
class EvalSet:
    """Preprocessed inputs, their labels (or ``None``) and where they came from."""

    inputs: np.ndarray
    labels: np.ndarray | None
    source: str


def load_eval_set(source, transform, limit: int = 1000) -> EvalSet:
    """Evaluation images: a PaddleClas list file (``path label``), an ImageFolder tree, an unlabelled
    folder/glob, or ``None`` for the packaged sample photos (unlabelled). At most ``limit`` images,
    taken evenly across the set so every class is represented."""
    if source is None:
        files, labels, name = sample_images(), None, "packaged sample photos"
    else:
        p = Path(source)
        samples = None
        try:
            if p.is_file():
                samples = read_list_file(p)
            elif p.is_dir() and any(d.is_dir() for d in p.iterdir()):
                samples, _ = scan_image_folder(p)
        except DatasetError as e:
            raise Res2NetError(f"--eval {source}: {e}") from None
        if samples is not None:
            files, labels = [s.path for s in samples], np.array([s.label for s in samples])
        else:
            files, labels = calibration_files(p), None
        name = str(source)
    if len(files) > limit:
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in idx]
        labels = labels[idx] if labels is not None else None
    try:
        inputs = np.stack([transform(load_image(f)) for f in files]).astype(np.float32)
    except (Res2NetError, ValueError) as e:
        raise Res2NetError(f"--eval {name}: {e}") from None
    return EvalSet(inputs, labels, name)


def _median_ms(fn, x: np.ndarray, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _batch(inputs: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(inputs[np.arange(n) % len(inputs)])


def _file_size_mb(path: str | Path | None) -> float | None:
    if path is None:
        return None
    p = Path(path)
    files = [p, p.with_suffix(".bin")] if p.suffix == ".xml" else [p, Path(str(p) + ".data")]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def _run_chunks(fn, inputs: np.ndarray, chunk: int = 16) -> np.ndarray:
    return np.concatenate([np.asarray(fn(inputs[i : i + chunk]), np.float32) for i in range(0, len(inputs), chunk)])


def build_pte(predictor, precision: str, calibration: np.ndarray | None):
    """The predictor's model as a batch-1 XNNPACK ``.pte`` (cached like the other engines' artifacts)."""
    size = predictor.transform.crop_size
    extra = f"b1-r{PTE_RECIPE}" + (f"-{array_digest(calibration)}" if precision == "int8" else "")
    cache: ArtifactCache = predictor.engine.cache
    key = ArtifactKey(predictor.model_id, predictor.weights_sha256, "executorch", precision, size, extra)

    def build(d: Path) -> None:
        export_pte(
            predictor.torch_model(),  # the fp32 eval-mode model the Predictor resolved
            d / "model.pte",
            quantize=precision,
            calibration=calibration,
            input_size=size,
            verify=False,
        )

    return PteModel(cache.get_or_build(key, build) / "model.pte")


def _measure(row: ReportRow, ref_pred, build, calib, data: EvalSet, batch_sizes, timing: tuple[int, int]) -> np.ndarray:
    """Size and latency of ``row``'s engine into ``row``; return its logits on the evaluation set.

    ``ref_pred`` is the PyTorch fp32 reference Predictor (reused for that row and the ``.pte`` export),
    ``build(engine, precision)`` makes the others; ``timing`` is ``(warmup, iters)``. ExecuTorch runs
    its fixed-batch ``.pte`` at batch 1 only.
    """
    engine, precision = row.engine, row.precision
    warmup, iters = timing
    if engine == "executorch":
        pte = build_pte(ref_pred, precision, calib)
        fn = lambda x, m=pte: m(x).numpy()  # noqa: E731
        row.size_mb = _file_size_mb(pte.path)
        sizes = [1]
    else:
        pred = ref_pred if (engine, precision) == ("torch", "fp32") else build(engine, precision)
        fn = pred.engine.forward
        if engine == "torch":
            sd = pred.torch_model().state_dict()
            row.size_mb = sum(t.numel() * t.element_size() for t in sd.values()) / 1e6
            if precision != "fp32":
                row.size_mb = None  # converted at load time: no artifact on disk
        else:
            row.size_mb = _file_size_mb(getattr(pred.engine, "path", None))
        if getattr(pred.engine, "recipe", None):  # ONNX Runtime int8: depends on the CPU kind
            row.recipe = f"{pred.engine.recipe} (CPU: {isa_level()})"
        sizes = list(batch_sizes)
    with torch.inference_mode():
        out = _run_chunks(fn, data.inputs, 1 if engine == "executorch" else 16)
        for b in batch_sizes:
            row.latency_ms[b] = _median_ms(fn, _batch(data.inputs, b), warmup, iters) if b in sizes else None
    return out


def quantize_report(
    model="Res2Net50_vd_26w_4s_ssld",
    weights: str | Path | None = None,
    *,
    engines: Sequence[str] = ENGINES,
    precisions: Sequence[str] = ("fp32", "int8"),
    calibration=None,
    eval_set=None,
    eval_limit: int = 1000,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    warmup: int = 3,
    iters: int = 10,
    threads: int | None = None,
    num_classes: int | None = None,
    transform=None,
    cache_dir: str | Path | None = None,
) -> tuple[list[ReportRow], EvalSet]:
    """Measure every ``engine`` x ``precision`` against PyTorch eager fp32 on ``eval_set``.

    ``model``/``weights``/``num_classes`` are as :class:`res2net.Predictor` takes them (a name
    and weights file, or an ``nn.Module``); ``transform`` is the eval preprocessing (default: the
    model card's). ``calibration`` feeds every int8 artifact (default: the packaged sample photos).
    A combination that cannot run here gets a row with a note.
    """
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise Res2NetError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    if any(b < 1 for b in batch_sizes):
        raise Res2NetError(f"batch sizes must be >= 1, got {list(batch_sizes)}")

    def predictor(engine: str, precision: str) -> Predictor:
        return Predictor(
            model,
            weights,
            engine=engine,
            precision=precision,
            num_classes=num_classes,
            transform=transform,
            calibration=calib if precision == "int8" else None,
            check=False,
            threads=threads,
            cache_dir=cache_dir,
            batch_size=max(batch_sizes),
        )

    calib = None
    ref_pred = predictor("torch", "fp32")
    data = load_eval_set(eval_set, ref_pred.transform, eval_limit)
    if "int8" in precisions:
        calib = calibration_data(calibration, ref_pred.transform)
    with torch.inference_mode():
        reference = _run_chunks(ref_pred.engine.forward, data.inputs)
    ref_acc = float((reference.argmax(1) == data.labels).mean()) if data.labels is not None else None

    rows: list[ReportRow] = []
    for engine in engines:
        for precision in precisions:
            supported = PTE_PRECISIONS if engine == "executorch" else engine_class(engine).precisions
            if precision not in supported:
                continue  # e.g. torch int8: not a path this library offers
            row = ReportRow(engine, precision)
            rows.append(row)
            log.info("measuring %s %s", engine, precision)
            try:
                out = _measure(row, ref_pred, predictor, calib, data, batch_sizes, (warmup, iters))
            except (EngineError, Res2NetError, ImportError) as e:
                row.note = str(e).splitlines()[0]
                log.warning("%s %s: %s", engine, precision, row.note)
                continue
            cmp = compare_logits(out, reference, engine, precision)
            row.max_abs_diff, row.rel_error, row.top1_agreement = cmp.max_abs_diff, cmp.rel_error, cmp.top1_agreement
            if data.labels is not None:
                row.accuracy = float((out.argmax(1) == data.labels).mean())
                row.accuracy_delta = row.accuracy - ref_acc
    return rows, data


def format_table(rows: list[ReportRow], batch_sizes: Sequence[int], markdown: bool = True) -> str:
    head = ["engine", "precision", "size (MB)", *[f"bs{b} (ms)" for b in batch_sizes]]
    head += ["rel. logit err", "top-1 agree", "accuracy", "Δ acc (pts)", "note"]
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    pct = lambda v, f: "—" if v is None else format(100 * v, f) + "%"  # noqa: E731
    lines = []
    for r in rows:
        lines.append(
            [
                r.engine,
                r.precision,
                fmt(r.size_mb, ".1f"),
                *[fmt(r.latency_ms.get(b), ".1f") for b in batch_sizes],
                pct(r.rel_error, ".2f"),
                pct(r.top1_agreement, ".1f"),
                fmt(None if r.accuracy is None else 100 * r.accuracy, ".2f"),
                fmt(None if r.accuracy_delta is None else 100 * r.accuracy_delta, "+.2f"),
                r.note or r.recipe,
            ]
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    row = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([row(head), row(["-" * w for w in widths]), *map(row, lines)])
