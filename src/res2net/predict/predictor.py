"""``res2net.Predictor`` and the ``res2net predict`` command: images in, top-k ImageNet classes out.

The pipeline is PaddleClas's (``deploy/python/predict_cls.py``): decode -> RGB -> resize the short
side to 256 (cv2 bilinear, rounded sizes) -> centre crop 224 (floor offsets) -> ``(x/255 - mean)/std``
-> model -> softmax -> top-k with label names. Decoding is Pillow (every mode PaddleClas's
``cv2.imread`` reads, plus CMYK, 16-bit, palette, EXIF rotation) and resizing is OpenCV, so pixels
match PaddleClas's within JPEG-decoder rounding (tests/data/test_transforms.py).

The model runs on one of several engines (:mod:`res2net.runtime`). ``engine="auto"`` tries them
fastest-first for this machine and keeps the first whose accuracy check against PyTorch eager fp32
passes on real photos — fp32 engines within 1e-4 of the reference logits, bf16/int8 engines with
top-1 agreement >= 90% and relative logit error <= 10% — and logs which one it picked and why.
Exported, quantized and compiled artifacts are cached under ``$RES2NET_HOME/artifacts``, keyed by
the weights' sha256, engine, precision and input size, so the second run starts in about a second.

Under ``torchrun`` the ``predict`` command shards its inputs across processes (and nodes) and rank 0
writes one merged output in input order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net._paths import sha256_file, state_digest
from res2net.data.image import ImageError, ImageSource, find_images, prepare_image
from res2net.data.labels import load_labels
from res2net.data.transforms import EvalTransform
from res2net.errors import Res2NetError
from res2net.export.calibration import calibration_data
from res2net.factory import create_model
from res2net.models.zoo import get_card
from res2net.predict.calibration import calibration_digest, check_inputs
from res2net.predict.postprocess import top_k
from res2net.predict.selection import select_engine
from res2net.runtime import (
    ENGINE_NAMES,
    PRECISIONS,
    AccuracyReport,
    ArtifactCache,
    BuildContext,
    Engine,
    EngineError,
    compare_logits,
)
from res2net.runtime.base import array_digest, default_threads
from res2net.weights.formats import RawWeights, read_weights
from res2net.weights.hub import download_weights
from res2net.weights.load import classifier_size

log = logging.getLogger("res2net.predict")

DEFAULT_MODEL = "Res2Net50_vd_26w_4s_ssld"


# -------------------------------------------------------------------------------------- predictor
class Predictor:
    """Classify images with a Res2Net on the fastest trustworthy engine of this machine.

    Args:
        model: a registered name (``res2net.list_models()``) or a ready ``nn.Module`` (eval mode).
        weights: a weights file (PaddleClas/timm/authors/``res2net convert``/training checkpoints) or
            one already read by :func:`res2net.weights.read_weights`; ``None`` downloads and caches the
            official weights of ``model`` (see ``res2net download``).
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
        weights: str | Path | RawWeights | None = None,
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
        self._raw: RawWeights | None = None  # the weights as read, until the engine is chosen
        self._resolve_model(model, weights, num_classes)
        self.transform = transform or self._default_transform()
        self.labels = self._resolve_labels(labels)
        self._check_sources = check_images
        self._calibration_source = calibration

        ctx = BuildContext(
            model_id=self.model_id,
            weights_sha256=self.weights_sha256,
            model_factory=self.torch_model,
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
        self._raw = None  # a cached engine never needed it; a later check re-reads the file
        self.engine_name = self.engine.name
        self.precision = self.engine.precision

    # ------------------------------------------------------------------ model / weights / labels
    def _resolve_model(self, model, weights, num_classes) -> None:
        if isinstance(model, nn.Module):
            self._module = model.eval()
            card = getattr(model, "card", None)
            self.model_name = getattr(card, "name", None) or type(model).__name__
            self.card = card
            self.num_classes = int(getattr(model, "num_classes", 0) or 0) or None
            self.weights_path = None
            self.weights_sha256 = state_digest(model)
            cfg = getattr(model, "cfg", None)
        else:
            self.card = get_card(model)
            self.model_name = self.card.name
            if weights is None:
                self.weights_path = download_weights(self.card.name)
                digest = self.weights_path.with_name(self.weights_path.name + ".sha256")
                sha = self.card.sha256 or (digest.read_text().split()[0] if digest.exists() else None)
            else:
                from res2net.factory import resolve_pretrained

                self._raw = weights if isinstance(weights, RawWeights) else None
                # a file, a save_pretrained directory, hf-hub:ORG/REPO or a PaddleClas prefix (.../latest)
                self.weights_path = self._raw.path if self._raw else resolve_pretrained(self.card.name, str(weights))
                if not self.weights_path.is_file():
                    raise Res2NetError(f"{weights}: no such weights file")
                sha = None

            if not num_classes and self._raw is None:
                self._raw = read_weights(self.weights_path)  # the one read: hash and classifier size now, model later
            # Without the classifier size to learn, only the hash is needed: cached engines never build the model.
            self.weights_sha256 = sha or (self._raw.sha256 if self._raw else "") or sha256_file(self.weights_path)
            self.num_classes = num_classes or classifier_size(self._raw, self.card.config)
            if self.num_classes is None:
                raise Res2NetError(f"{self.weights_path}: has no classifier; prediction needs one")
            cfg = self.card.config.with_overrides(num_classes=self.num_classes)
        cfg_digest = hashlib.sha256(repr(cfg).encode()).hexdigest()[:8]
        self.model_id = f"{self.model_name}-{self.num_classes}c-{cfg_digest}"

    def torch_model(self) -> nn.Module:
        """The fp32 eval-mode PyTorch model (built on first use: cached engines never need it)."""
        if self._module is None:
            weights = self._raw or self.weights_path
            self._module = create_model(self.model_name, pretrained=weights, num_classes=self.num_classes).eval()
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
        return calibration_data(self._calibration_source, self.transform)

    def _calibration_digest(self, source) -> str:
        return calibration_digest(source, self.transform)

    def _check_inputs(self) -> np.ndarray:
        return check_inputs(self._check_sources, self.transform)

    def _select_engine(self, engine: str, precision: str | None, ctx: BuildContext, check: bool) -> Engine:
        built, self.accuracy = select_engine(engine, precision, ctx, check, self.check_engine, self._check_inputs)
        return built

    def _reference(self, inputs: np.ndarray) -> np.ndarray:
        """PyTorch eager fp32 logits: what every engine is judged against."""
        model = self.torch_model()
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
        return prepare_image(source, self.transform)  # ImageError naming the source

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
        idx, probs = top_k(logits, topk)
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
