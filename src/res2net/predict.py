"""``res2net.Predictor`` and the ``res2net predict`` command: images in, top-k ImageNet classes out.

The pipeline is PaddleClas's (``deploy/python/predict_cls.py``): decode -> RGB -> resize the short
side to 256 (cv2 bilinear, rounded sizes) -> centre crop 224 (floor offsets) -> ``(x/255 - mean)/std``
-> model -> softmax -> top-k with label names. Decoding is Pillow (every mode PaddleClas's
``cv2.imread`` reads, plus CMYK, 16-bit, palette, EXIF rotation) and resizing is OpenCV, so pixels
match PaddleClas's within JPEG-decoder rounding (tests/data/test_transforms.py).

The model runs on one of several engines (:mod:`res2net.engines`). ``engine="auto"`` tries them
fastest-first for this machine and keeps the first whose accuracy check against PyTorch eager fp32
passes on real photos — fp32 engines within 1e-4 of the reference logits, bf16/int8 engines with
top-1 agreement >= 90% and relative logit error <= 10% — and logs which one it picked and why.
Exported, quantized and compiled artifacts are cached under ``$RES2NET_HOME/artifacts``, keyed by
the weights' sha256, engine, precision and input size, so the second run starts in about a second.

Under ``torchrun`` the ``predict`` command shards its inputs across processes (and nodes) and rank 0
writes one merged output in input order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from res2net.data.image import ImageError, ImageSource, _describe, find_images, load_image
from res2net.data.transforms import EvalTransform
from res2net.engines import (
    ENGINE_NAMES,
    PRECISIONS,
    AccuracyReport,
    ArtifactCache,
    BuildContext,
    Engine,
    EngineError,
    auto_candidates,
    compare_logits,
    create_engine,
)
from res2net.engines.base import array_digest, default_threads
from res2net.errors import Res2NetError
from res2net.paddleclas_cli import DONE_LINE as PADDLECLAS_DONE
from res2net.paddleclas_cli import add_paddleclas_arguments, apply_paddleclas_arguments, format_paddleclas

log = logging.getLogger("res2net.predict")

DEFAULT_MODEL = "Res2Net50_vd_26w_4s_ssld"


# ----------------------------------------------------------------------------------------- labels
def load_labels(path: str | Path | None = None) -> list[str]:
    """Class names, one per line; ``"<id> <name>"`` lines (PaddleClas's format) are accepted.

    ``None`` gives the ImageNet-1k names PaddleClas prints (``res2net/assets/imagenet1k_label_list.txt``).
    """
    if path is None:
        from importlib import resources

        text = (resources.files("res2net") / "assets" / "imagenet1k_label_list.txt").read_text()
        source = "imagenet1k_label_list.txt"
    else:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise Res2NetError(f"{path}: cannot read the label file ({e.strerror})") from None
        source = str(path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    parts = [line.split(maxsplit=1) for line in lines]
    if parts and all(len(p) == 2 and p[0].isdigit() for p in parts):
        ids = [int(p[0]) for p in parts]
        if ids != list(range(len(ids))):
            raise Res2NetError(f"{source}: class ids must run 0..{len(ids) - 1} in order")
        return [p[1] for p in parts]
    return lines


def _softmax_topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    k = min(k, probs.shape[1])
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]  # logits: no ties from underflowed probabilities
    return idx, np.take_along_axis(probs, idx, axis=1)


def _state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _infer_num_classes(path: Path, model_name: str) -> int | None:
    """The classifier size stored in a weights file (``None`` if it has no classifier we recognise)."""
    from res2net.models.zoo import get_card
    from res2net.weights.formats import read_weights
    from res2net.weights.load import _convert

    tensors = _convert(read_weights(path), get_card(model_name).config)
    fc = tensors.get("fc.weight")
    return int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None


# -------------------------------------------------------------------------------------- predictor
class Predictor:
    """Classify images with a Res2Net on the fastest trustworthy engine of this machine.

    Args:
        model: a registered name (``res2net.list_models()``) or a ready ``nn.Module`` (eval mode).
        weights: a weights file (PaddleClas/timm/authors/``res2net convert``/training checkpoints);
            ``None`` downloads and caches the official weights of ``model`` (see ``res2net download``).
        engine: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"openvino"``.
        precision: ``"fp32"``, ``"bf16"``, ``"int8"``, or ``None`` — fp32 for an explicit engine;
            with ``engine="auto"`` any precision whose accuracy check passes.
        device: ``"cpu"`` or ``"cuda[:N]"`` (CUDA: the torch engine, or ONNX Runtime with its CUDA provider).
        num_classes: classifier size; by default read from the weights file.
        transform: preprocessing; by default the model card's (PaddleClas eval: 256 -> 224).
        labels: a class-name file; by default the ImageNet-1k names for 1000-class models, else ids.
        topk: classes reported per image.
        batch_size: images per engine call in :meth:`predict` / :meth:`iter_predict`.
        threads: inference threads (default: this process's CPUs, split among torchrun workers).
        calibration: int8 calibration images (folder, list file, glob, paths or an array); default:
            the packaged sample photos. See :mod:`res2net.export.quantize`.
        check_images: images for the accuracy check (default: the packaged sample photos).
        check: run the accuracy check. With ``False``, ``engine="auto"`` only considers fp32 engines.
        cache_dir: artifact cache root (default ``$RES2NET_HOME/artifacts``).
        workers: decoding threads that prepare the next batch while the engine runs.
        engine_options: engine-specific knobs (OpenVINO: ``{"split_batches": False}`` runs a batch
            as one multi-threaded pass instead of one single-threaded stream per thread).
    """

    def __init__(
        self,
        model: str | nn.Module = DEFAULT_MODEL,
        weights: str | Path | None = None,
        engine: str = "auto",
        precision: str | None = None,
        device: str = "cpu",
        *,
        num_classes: int | None = None,
        transform: EvalTransform | None = None,
        labels: str | Path | Sequence[str] | None = None,
        topk: int = 5,
        batch_size: int = 8,
        threads: int | None = None,
        calibration=None,
        check_images=None,
        check: bool = True,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
        engine_options: dict | None = None,
    ) -> None:
        if engine != "auto" and engine not in ENGINE_NAMES:
            raise EngineError(f"unknown engine {engine!r}; choose one of auto, {', '.join(ENGINE_NAMES)}")
        if precision is not None and precision not in PRECISIONS:
            raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if batch_size < 1 or topk < 1:
            raise Res2NetError(f"batch_size and topk must be >= 1, got {batch_size} and {topk}")
        self.device = str(device)
        self.topk = topk
        self.batch_size = batch_size
        self.workers = workers if workers is not None else min(4, (os.cpu_count() or 1) + 1)
        self._module: nn.Module | None = None
        self._resolve_model(model, weights, num_classes)
        self.transform = transform or self._default_transform()
        self.labels = self._resolve_labels(labels)
        self._check_sources = check_images
        self._calibration_source = calibration

        ctx = BuildContext(
            model_id=self.model_id,
            weights_sha256=self.weights_sha256,
            model_factory=self._torch_model,
            input_size=self.transform.crop_size,
            cache=ArtifactCache(cache_dir),
            threads=threads or (default_threads() if self.device == "cpu" else None),
            device=self.device,
            calibration=self._calibration,
            calibration_digest=self._calibration_digest(calibration),
            options=dict(engine_options or {}),
        )
        self.accuracy: AccuracyReport | None = None
        self.engine: Engine = self._select_engine(engine, precision, ctx, check)
        self.engine_name = self.engine.name
        self.precision = self.engine.precision

    # ------------------------------------------------------------------ model / weights / labels
    def _resolve_model(self, model, weights, num_classes) -> None:
        from res2net.models.zoo import get_card

        if isinstance(model, nn.Module):
            self._module = model.eval()
            card = getattr(model, "card", None)
            self.model_name = getattr(card, "name", None) or type(model).__name__
            self.card = card
            self.num_classes = int(getattr(model, "num_classes", 0) or 0) or None
            self.weights_path = None
            self.weights_sha256 = _state_digest(model)
            cfg = getattr(model, "cfg", None)
        else:
            self.card = get_card(model)
            self.model_name = self.card.name
            if weights is None:
                from res2net.weights.hub import download_weights

                self.weights_path = download_weights(self.card.name)
                digest = self.weights_path.with_name(self.weights_path.name + ".sha256")
                sha = self.card.sha256 or (digest.read_text().split()[0] if digest.exists() else None)
            else:
                from res2net.models.factory import resolve_pretrained

                # a file, a save_pretrained directory, hf-hub:ORG/REPO or a PaddleClas prefix (.../latest)
                self.weights_path = resolve_pretrained(self.card.name, str(weights))
                if not self.weights_path.is_file():
                    raise Res2NetError(f"{weights}: no such weights file")
                sha = None
            from res2net.weights.load import sha256_file

            self.weights_sha256 = sha or sha256_file(self.weights_path)
            self.num_classes = num_classes or _infer_num_classes(self.weights_path, self.model_name)
            if self.num_classes is None:
                raise Res2NetError(f"{self.weights_path}: has no classifier; prediction needs one")
            cfg = self.card.config.with_overrides(num_classes=self.num_classes)
        cfg_digest = hashlib.sha256(repr(cfg).encode()).hexdigest()[:8]
        self.model_id = f"{self.model_name}-{self.num_classes}c-{cfg_digest}"

    def _torch_model(self) -> nn.Module:
        """The fp32 eval-mode PyTorch model (built on first use: cached engines never need it)."""
        if self._module is None:
            from res2net.models.factory import create_model

            self._module = create_model(
                self.model_name, pretrained=self.weights_path, num_classes=self.num_classes
            ).eval()
        return self._module

    def _default_transform(self) -> EvalTransform:
        pre = getattr(self.card, "preprocess", None)
        return EvalTransform.from_preprocess(pre) if pre is not None else EvalTransform()

    def _resolve_labels(self, labels) -> list[str]:
        if labels is None:
            if self.num_classes == 1000:
                return load_labels()
            return [str(i) for i in range(self.num_classes or 0)]
        names = list(labels) if not isinstance(labels, (str, Path)) else load_labels(labels)
        if self.num_classes and len(names) != self.num_classes:
            raise Res2NetError(f"{len(names)} label names for a {self.num_classes}-class model")
        return names

    # ------------------------------------------------------------------ calibration and checks
    def _calibration(self) -> np.ndarray:
        from res2net.export.quantize import calibration_data

        return calibration_data(self._calibration_source, self.transform)

    def _calibration_digest(self, source) -> str:
        """What the int8 artifact's cache key says about its calibration inputs.

        Images (the packaged samples or the user's files) are calibrated *after* ``self.transform``, so
        the transform is part of the key: the same photos resized or normalised differently calibrate
        a different int8 model. Arrays are already model inputs and stand for themselves.
        """
        if isinstance(source, np.ndarray):
            return array_digest(source)
        transform = hashlib.sha256(repr(self.transform).encode()).hexdigest()[:8]
        if source is None:
            return f"samples-{transform}"
        from res2net.export.quantize import calibration_files

        files = calibration_files(source)
        h = hashlib.sha256(transform.encode())
        for f in files:
            st = f.stat() if f.exists() else None
            h.update(f"{f.resolve()}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
        return h.hexdigest()[:16]

    def _check_inputs(self) -> np.ndarray:
        """Accuracy-check inputs: 4 views of each sample photo (disjoint from calibration) or the user's images."""
        if self._check_sources is None:
            from res2net.export.quantize import CHECK_SCALES, sample_views

            return sample_views(self.transform, CHECK_SCALES)
        from res2net.export.quantize import calibration_data

        return calibration_data(self._check_sources, self.transform, limit=64)

    def _reference(self, inputs: np.ndarray) -> np.ndarray:
        """PyTorch eager fp32 logits: what every engine is judged against."""
        model = self._torch_model()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # fp32 is fp32
            return np.concatenate(
                [
                    model(torch.from_numpy(inputs[i : i + 16]).to(device)).float().cpu().numpy()
                    for i in range(0, len(inputs), 16)
                ]
            )

    def check_engine(self, engine: Engine, inputs: np.ndarray | None = None) -> AccuracyReport:
        """Compare ``engine`` with PyTorch eager fp32 on the check images (cached per artifact)."""
        inputs = self._check_inputs() if inputs is None else inputs
        digest = array_digest(inputs)
        report = engine.cached_report(digest)
        if report is None:
            out = np.concatenate([engine.forward(inputs[i : i + 8]) for i in range(0, len(inputs), 8)])
            report = compare_logits(out, self._reference(inputs), engine.name, engine.precision)
            engine.store_report(digest, report)
        return report

    def _select_engine(self, engine: str, precision: str | None, ctx: BuildContext, check: bool) -> Engine:
        if engine != "auto":
            built = create_engine(engine, precision or "fp32", ctx)
            if check:
                self.accuracy = self.check_engine(built)
                level = logging.INFO if self.accuracy.passed else logging.WARNING
                log.log(level, "%s: %s", built.describe(), self.accuracy.summary())
            return built
        if not check and precision not in (None, "fp32"):
            raise EngineError(
                f"engine='auto' uses {precision} only after its accuracy check: drop check=False "
                "(--no-check) or name the engine explicitly"
            )
        candidates = auto_candidates(self.device, precision)
        if not check:
            candidates = [c for c in candidates if c[1] == "fp32"]
        if not candidates:
            raise EngineError(f"no engine can run {precision or 'any precision'} on {self.device} here")
        inputs = self._check_inputs() if check else None
        skipped = []
        for name, prec in candidates:
            try:
                built = create_engine(name, prec, ctx)
            except Res2NetError as e:
                skipped.append(f"{name} {prec}: {e}")
                continue
            except Exception as e:  # an exporter or runtime failing on this machine: try the next one
                log.debug("auto: %s %s failed to build", name, prec, exc_info=True)
                skipped.append(f"{name} {prec}: build failed ({type(e).__name__}: {e})")
                continue
            if check:
                report = self.check_engine(built, inputs)
                if not report.passed:
                    skipped.append(f"{name} {prec}: {report.reason}")
                    continue
                self.accuracy = report
            for s in skipped:
                log.info("auto: skipped %s", s)
            log.info(
                "auto: using %s%s",
                built.describe(),
                f"; {self.accuracy.summary()}" if self.accuracy else " (accuracy check off)",
            )
            return built
        raise EngineError("no engine passed its accuracy check: " + "; ".join(skipped))

    # ------------------------------------------------------------------ the pipeline
    @staticmethod
    def expand(images) -> list:
        """Sources for one call: folders (recursive) and globs expanded, single items wrapped in a list."""
        if isinstance(images, (str, Path)):
            images = [images]
        elif isinstance(images, (bytes, np.ndarray)) or not isinstance(images, Iterable):
            return [images]
        out: list = []
        for item in images:
            if isinstance(item, (str, Path)):
                out += find_images([item])
            else:
                out.append(item)
        return out

    def _prepare(self, source: ImageSource) -> np.ndarray:
        img = load_image(source)  # ImageError naming the source
        try:
            return self.transform(img)
        except (ValueError, cv2.error) as e:
            raise ImageError(f"{_describe(source)}: cannot preprocess ({e})") from None

    def preprocess(self, images) -> torch.Tensor:
        """Images (paths, folders, globs, bytes, arrays, PIL images) -> float32 NCHW tensor, PaddleClas-exact."""
        sources = self.expand(images)
        if not sources:
            raise ImageError("no images given")
        return torch.from_numpy(np.stack([self._prepare(s) for s in sources]))

    def forward(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Logits of a preprocessed float32 NCHW batch through the chosen engine (same type back)."""
        is_tensor = isinstance(batch, torch.Tensor)
        x = batch.detach().cpu().float().numpy() if is_tensor else np.asarray(batch, dtype=np.float32)
        if x.ndim != 4:
            raise Res2NetError(f"forward expects an NCHW batch, got shape {tuple(x.shape)}")
        n = self.batch_size
        out = np.concatenate([self.engine.forward(x[i : i + n]) for i in range(0, len(x), n)])
        return torch.from_numpy(out) if is_tensor else out

    def _results(self, logits: np.ndarray, names: list[str | None], topk: int) -> list[dict]:
        idx, probs = _softmax_topk(logits, topk)
        label = lambda i: self.labels[i] if i < len(self.labels) else str(i)  # noqa: E731
        return [
            {
                "class_ids": [int(i) for i in ids],
                "scores": [round(float(p), 5) for p in ps],
                "label_names": [label(int(i)) for i in ids],
                "filename": name,
            }
            for ids, ps, name in zip(idx, probs, names)
        ]

    def predict(self, images, topk: int | None = None) -> list[dict]:
        """Top-k results per image: ``{"class_ids", "scores", "label_names", "filename"}``, in input order.

        Scores are softmax probabilities rounded to 5 decimals, as PaddleClas's ``Topk`` postprocess.
        A bad image raises :class:`res2net.data.image.ImageError` naming it (use :meth:`iter_predict`
        to get per-image errors instead).
        """
        return list(self.iter_predict(images, topk=topk, on_error="raise"))

    def iter_predict(
        self,
        images,
        *,
        topk: int | None = None,
        batch_size: int | None = None,
        progress: bool | None = False,
        on_error: str = "return",
    ) -> Iterator[dict]:
        """Stream results over any number of images, decoding the next batch while the engine runs.

        With ``on_error="return"`` a bad image yields ``{"filename", "error"}`` and the rest go on;
        with ``"raise"`` it raises. ``progress=True`` shows a tqdm bar (``None``: only on a terminal).
        """
        if on_error not in ("return", "raise"):
            raise ValueError("on_error must be 'return' or 'raise'")
        sources = self.expand(images)
        topk = topk or self.topk
        bs = batch_size or self.batch_size
        from tqdm.auto import tqdm

        disable = not sys.stderr.isatty() if progress is None else not progress
        bar = tqdm(total=len(sources), unit="img", disable=disable, leave=False)
        with ThreadPoolExecutor(max(1, self.workers)) as pool:
            pending: list[Future] = []
            it = iter(sources)
            lookahead = 2 * bs

            def fill() -> None:
                for src in it:
                    pending.append(pool.submit(self._prepare, src))
                    if len(pending) >= lookahead:
                        break

            fill()
            done = 0
            while pending:
                batch_futures, pending[:] = pending[:bs], pending[bs:]
                batch_sources = sources[done : done + len(batch_futures)]
                done += len(batch_futures)
                fill()
                arrays, ok, errors = [], [], {}
                for j, f in enumerate(batch_futures):
                    try:
                        arrays.append(f.result())
                        ok.append(j)
                    except ImageError as e:
                        if on_error == "raise":
                            raise
                        errors[j] = str(e)
                names = [str(s) if isinstance(s, (str, Path)) else None for s in batch_sources]
                results = self._results(self.forward(np.stack(arrays)), [names[j] for j in ok], topk) if ok else []
                by_pos = dict(zip(ok, results))
                for j in range(len(batch_sources)):
                    yield by_pos[j] if j in by_pos else {"filename": names[j], "error": errors[j]}
                bar.update(len(batch_sources))
        bar.close()

    def __repr__(self) -> str:
        return f"Predictor({self.model_name!r}, engine={self.engine.describe()!r})"


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", help="image files, folders (recursive) or globs; none: the sample photos")
    p.add_argument("--model", default=None, help=f"model name (default {DEFAULT_MODEL}; see `res2net list`)")
    p.add_argument("--weights", default=None, help="weights file instead of the official download")
    p.add_argument("--topk", "--top-k", type=int, default=5, help="classes printed per image (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=("auto", *ENGINE_NAMES),
        help="auto (default): the fastest engine here whose accuracy check against PyTorch passes",
    )
    p.add_argument("--precision", default=None, choices=PRECISIONS, help="default: fp32, or best checked with auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="inference threads per process")
    p.add_argument("--num-classes", type=int, default=None, help="default: read from the weights")
    p.add_argument(
        "--resize-short", type=int, default=None, help="preprocessing resize (default: the model card's, 256)"
    )
    p.add_argument("--crop-size", type=int, default=None, help="preprocessing centre crop (default: the card's, 224)")
    p.add_argument("--labels", default=None, help="class-name file (one per line, or PaddleClas '<id> <name>')")
    p.add_argument("--calibration", default=None, help="int8 calibration images: folder, list file or glob")
    p.add_argument("--check-images", default=None, help="images for the engine accuracy check")
    p.add_argument("--no-check", action="store_true", help="skip the accuracy check (auto then uses fp32 only)")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_paddleclas_arguments(p)


def _format(result: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(result, ensure_ascii=False)
    scores = "[" + ", ".join(f"{s:.2f}" for s in result["scores"]) + "]"
    return (
        f"{result['filename']}:\tclass id(s): {result['class_ids']}, score(s): {scores}, "
        f"label_name(s): {result['label_names']}"
    )


class _Shards:
    """torchrun sharding: rank r predicts files[r::world]; rank 0 gathers and prints in input order."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo")
            self.dist = dist

    def merged(self, local: Iterator[dict], total: int, step: int) -> Iterator[dict]:
        """All ranks' results in global order (yielded on rank 0 only); ``step`` results per rank per round."""
        if self.world == 1:
            yield from local
            return
        per_rank = math.ceil(total / self.world)
        for _ in range(math.ceil(per_rank / step) if per_rank else 0):
            chunk = [r for _, r in zip(range(step), local)]
            gathered = [None] * self.world if self.rank == 0 else None
            self.dist.gather_object(chunk, gathered, dst=0)
            if self.rank == 0:
                for j in range(step):
                    for lst in gathered:
                        if j < len(lst):
                            yield lst[j]

    def close(self) -> None:
        if self.world > 1 and self.dist.is_initialized():
            self.dist.destroy_process_group()


def main(args: argparse.Namespace) -> int:
    shards = _Shards()
    if shards.rank != 0:
        logging.getLogger("res2net").setLevel(logging.WARNING)
    try:
        return _run(args, shards)
    finally:
        shards.close()


def _run(args: argparse.Namespace, shards: _Shards) -> int:
    from res2net.export.quantize import sample_images

    apply_paddleclas_arguments(args)
    if args.images:
        files = find_images(args.images)
    else:
        files = sample_images()
        log.info("no images given: classifying the %d sample photos shipped with res2net", len(files))
    model = args.model
    if model is None:
        model = _model_from_weights(args.weights) if args.weights else DEFAULT_MODEL
    transform = None
    if args.resize_short or args.crop_size:
        from res2net.models.zoo import get_card

        base = EvalTransform.from_preprocess(get_card(model).preprocess) if isinstance(model, str) else EvalTransform()
        crop = args.crop_size or base.crop_size
        resize = args.resize_short or round(base.resize_short * crop / base.crop_size)
        transform = EvalTransform(resize, crop, base.interpolation, base.mean, base.std)
    device = args.device
    if device == "cuda" and shards.world > 1:  # torchrun: one GPU per local rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    predictor = Predictor(
        model,
        transform=transform,
        weights=args.weights,
        engine=args.engine,
        precision=args.precision,
        device=device,
        num_classes=args.num_classes,
        labels=args.labels,
        topk=args.topk,
        batch_size=args.batch_size,
        threads=args.threads,
        calibration=args.calibration,
        check_images=args.check_images,
        check=not args.no_check,
    )
    mine = files[shards.rank :: shards.world]
    local = predictor.iter_predict(mine, progress=False, on_error="return")
    failed = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(files), unit="img", disable=args.no_progress or not sys.stderr.isatty() or shards.rank != 0)
    for result in shards.merged(local, len(files), args.batch_size):
        if "error" in result:
            failed += 1
            print(f"error: {result['error']}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            bar.clear()
            line = format_paddleclas(result) if args.paddleclas_style and not args.json else _format(result, args.json)
            print(line, flush=True)
        bar.update(1)
    bar.close()
    if shards.rank == 0 and args.paddleclas_style and not args.json:
        print(PADDLECLAS_DONE, flush=True)
    if shards.rank == 0:
        if failed:
            log.warning("%d of %d images failed", failed, len(files))
        if predictor.accuracy is not None:
            log.debug("accuracy: %s", json.dumps(asdict(predictor.accuracy)))
    return 1 if failed else 0


def _model_from_weights(path: str) -> str:
    """The model a weights file belongs to: its ``res2net convert`` metadata, else a key/shape match."""
    from res2net.weights.formats import read_weights
    from res2net.weights.load import guess_model

    raw = read_weights(path)
    name = raw.metadata.get("model") if isinstance(raw.metadata, dict) else None
    name = name or guess_model(raw)
    if name is None:
        raise Res2NetError(f"{path}: cannot tell which model these weights belong to; pass --model NAME")
    return name
