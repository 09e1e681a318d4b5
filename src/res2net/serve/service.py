"""What the server does, independent of REST or gRPC: admit, decode, batch, classify, describe.

Every route (OIP REST, OIP gRPC, ``/v1/classify``, the PaddleServing route, the web demo) goes
through :class:`InferenceService`, so limits, backpressure, timeouts and results are identical
whichever door a request comes in by.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from res2net._version import __version__
from res2net.data.image import ImageError
from res2net.models import get_card
from res2net.predict.postprocess import softmax, top_k
from res2net.serve.batching import DynamicBatcher, allowed_batch_sizes
from res2net.serve.config import ServeConfig
from res2net.serve.errors import BadRequest, NotFound, PayloadTooLarge, QueueFull, Timeout, Unavailable
from res2net.serve.metrics import Metrics
from res2net.serve.model import ServedModel
from res2net.serve.oip import InferRequest, InferResponse, OutputTensor, parse_timeout_s, parse_top_k, wants_binary
from res2net.serve.parsing import BodyParser

log = logging.getLogger(__name__)
_BYTES_PREFIX = re.compile(r"^<\d+ bytes>: ")  # load_image names in-memory inputs so; we name them better

INPUT_IMAGE = "image"  # BYTES [-1]: encoded images (JPEG, PNG, BMP, WebP, TIFF, GIF ...)
INPUT_TENSOR = "input"  # FP32 [-1, 3, H, W]: already preprocessed pixels
OUT_CLASS_IDS, OUT_SCORES, OUT_LABELS, OUT_PROBS = "class_ids", "scores", "label_names", "probabilities"
DEFAULT_OUTPUTS = (OUT_CLASS_IDS, OUT_SCORES, OUT_LABELS)
ALL_OUTPUTS = (*DEFAULT_OUTPUTS, OUT_PROBS)
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]


@dataclass
class Classification:
    """Top-k of one image. ``scores`` are unrounded softmax probabilities (float64)."""

    class_ids: list[int]
    scores: list[float]
    label_names: list[str]
    probabilities: np.ndarray
    logits: np.ndarray  # what the classes are ranked by (res2net.predict.postprocess.top_k)

    def as_dict(self, filename: str | None = None) -> dict:
        """The JSON form: exactly what ``Predictor.predict`` returns (scores rounded to 5 decimals,
        as PaddleClas's ``Topk`` postprocess does)."""
        return {
            "class_ids": self.class_ids,
            "scores": [round(s, 5) for s in self.scores],
            "label_names": self.label_names,
            "filename": filename,
        }


class InferenceService:
    """Model lifecycle (load, warm up, ready, drain) and the inference entry points."""

    def __init__(self, cfg: ServeConfig, metrics: Metrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.card = get_card(cfg.model)  # unknown names fail here, before any port is bound
        self.model: ServedModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.ready = False
        self.draining = False
        self.load_error: BaseException | None = None
        self._decode_pool = ThreadPoolExecutor(cfg.decode_pool_size, thread_name_prefix="res2net-decode")
        self.parse = BodyParser()  # await service.parse(parser, body, ...): large bodies off the event loop

    # ------------------------------------------------------------------------------------ lifecycle
    @property
    def names(self) -> set[str]:
        return {self.cfg.model, self.card.name, self.card.name.lower(), *self.card.aliases}

    @property
    def num_classes(self) -> int:
        return self.model.num_classes if self.model else self.card.config.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.model is not None:
            return tuple(self.model.input_shape)
        crop = self.card.preprocess.crop_size
        return (3, crop, crop)

    async def load(self, model: ServedModel | None = None) -> None:
        """Load (unless given) and warm up the model, start batching, then report ready."""
        loop = asyncio.get_running_loop()
        try:
            if model is None:
                import torch

                torch.set_num_threads(self.cfg.torch_threads)
                model = await loop.run_in_executor(
                    None,
                    lambda: ServedModel(
                        self.cfg.model,
                        self.cfg.weights,
                        self.cfg.engine,
                        self.cfg.device,
                        max_pixels=self.cfg.max_pixels,
                        max_batch_size=self.cfg.max_batch_size,
                        threads=self.cfg.torch_threads,
                    ),
                )
            self.metrics.model_load_seconds.set(model.load_seconds)
            if self.cfg.warmup:  # every batch size the batcher will use: no compile on the first request
                sizes = allowed_batch_sizes(self.cfg.max_batch_size)
                seconds = await loop.run_in_executor(None, model.warmup, sizes)
                self.metrics.warmup_seconds.set(seconds)
            self.model = model
            self.batcher = DynamicBatcher(
                model.infer,
                max_batch_size=self.cfg.max_batch_size,
                max_delay_s=self.cfg.max_delay_ms / 1000,
                max_queue=self.cfg.max_queue,
                metrics=self.metrics,
            )
            self.batcher.start()
        except BaseException as e:
            self.load_error = e
            raise
        self.ready = True
        self.metrics.ready.set(1)
        log.info(
            "model %s ready (engine %s, %d classes; load %.2fs, warm-up %.2fs)",
            model.name,
            model.engine,
            model.num_classes,
            model.load_seconds,
            model.warmup_seconds,
        )

    async def close(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher is not None:
            await self.batcher.stop()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        self.parse.close()

    def start_draining(self) -> None:
        """From now on readiness is false and new inference requests get 503; in-flight ones finish."""
        self.draining = True
        self.metrics.ready.set(0)

    # ------------------------------------------------------------------------------------ checks
    def resolve_model(self, name: str, version: str = "") -> None:
        if name not in self.names:
            raise NotFound(f"unknown model {name!r}: this server serves {self.cfg.model!r}")
        if version not in ("", ServedModel.version):
            raise NotFound(f"model {name!r} has no version {version!r} (versions: [{ServedModel.version!r}])")

    def check_accepting(self, n: int = 1) -> None:
        """Cheap early refusal, before a request body is even read."""
        if self.draining:
            raise Unavailable("server is shutting down; retry on another replica")
        if not self.ready:
            raise Unavailable("model is loading; retry shortly", retry_after_s=2)
        if not self.batcher.has_room(n):
            self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(f"server at capacity ({self.batcher.admitted}/{self.cfg.max_queue} images); retry shortly")

    def top_k_param(self, value: object, what: str = "top_k") -> int:
        """A request's ``top_k``, validated (:func:`~res2net.serve.oip.parse_top_k`); the server's default if absent."""
        k = parse_top_k(value, self.num_classes, what)
        return self.cfg.top_k if k is None else k

    def _timeout(self, requested_s: float | None) -> float:
        return min(self.cfg.timeout_s, requested_s) if requested_s and requested_s > 0 else self.cfg.timeout_s

    # ------------------------------------------------------------------------------------ inference
    async def _rows(self, rows: list[np.ndarray], timeout_s: float) -> list[np.ndarray]:
        try:
            return await asyncio.wait_for(self.batcher.submit(rows), timeout_s)
        except asyncio.TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise Timeout(f"request did not finish within {timeout_s:g} s") from None

    def _classification(self, logits: np.ndarray, k: int) -> Classification:
        ids, scores = top_k(logits, k)  # ranked by logits: the Predictor's order and tie rule
        probs = softmax(logits)
        labels = self.model.labels
        return Classification(ids.tolist(), scores.tolist(), [labels[i] for i in ids], probs, logits)

    async def _decode(self, images: list[bytes]) -> list[np.ndarray | ImageError]:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._decode_pool, self.model.decode, data) for data in images),
            return_exceptions=True,
        )
        out: list[np.ndarray | ImageError] = []
        for r in results:
            if isinstance(r, ImageError):  # prepare_image turns whatever the input made fail into this
                out.append(ImageError(_BYTES_PREFIX.sub("", str(r), count=1)))
            elif isinstance(r, BaseException):
                raise r
            else:
                out.append(r)
        errors = sum(isinstance(r, ImageError) for r in out)
        if errors:
            self.metrics.image_errors.inc(errors)
        return out

    async def classify_images(
        self, images: list[bytes], k: int, kind: str, timeout_s: float | None = None
    ) -> list[Classification | ImageError]:
        """Encoded images -> one result per image; an undecodable image gets its ``ImageError`` and
        never affects the others."""
        n = len(images)
        if n == 0:
            raise BadRequest("no image in the request")
        if n > self.cfg.max_images_per_request:
            raise PayloadTooLarge(f"{n} images in one request; the limit is {self.cfg.max_images_per_request}")
        self.check_accepting()
        timeout_s = self._timeout(timeout_s)
        with self.batcher.admit(n):
            try:
                decoded = await asyncio.wait_for(self._decode(images), timeout_s)
            except asyncio.TimeoutError:
                raise Timeout(f"decoding did not finish within {timeout_s:g} s") from None
            good = [x for x in decoded if not isinstance(x, ImageError)]
            rows = iter(await self._rows(good, timeout_s) if good else [])
        self.metrics.images.labels(kind).inc(len(good))
        return [x if isinstance(x, ImageError) else self._classification(next(rows), k) for x in decoded]

    async def classify_tensor(
        self, x: np.ndarray, k: int, kind: str, timeout_s: float | None = None, what: str = "input"
    ) -> list[Classification]:
        """Preprocessed ``[N, 3, H, W]`` float32 pixels -> one result per image."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise BadRequest(
                f"{what}: expected shape [N, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}"
            )
        n = x.shape[0]
        if n == 0:
            raise BadRequest(f"{what}: batch of 0 images")
        if n > self.cfg.max_images_per_request:
            raise PayloadTooLarge(f"{what}: {n} images in one request; the limit is {self.cfg.max_images_per_request}")
        if not np.isfinite(x).all():
            raise BadRequest(f"{what}: contains NaN or infinite values")
        self.check_accepting()
        with self.batcher.admit(n):
            rows = await self._rows(list(np.ascontiguousarray(x, dtype=np.float32)), self._timeout(timeout_s))
        self.metrics.images.labels(kind).inc(n)
        return [self._classification(r, k) for r in rows]

    # ------------------------------------------------------------------------------------ OIP
    def server_metadata(self) -> dict:
        return {"name": "res2net", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self) -> dict:
        c, h, w = self.input_shape
        return {
            "name": self.cfg.model,
            "versions": [ServedModel.version],
            "platform": f"res2net_{self.model.engine if self.model else self.cfg.engine}",
            "inputs": [
                {"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [-1]},
                {"name": INPUT_TENSOR, "datatype": "FP32", "shape": [-1, c, h, w]},
            ],
            "outputs": [
                {"name": OUT_CLASS_IDS, "datatype": "INT64", "shape": [-1, -1]},
                {"name": OUT_SCORES, "datatype": "FP32", "shape": [-1, -1]},
                {"name": OUT_LABELS, "datatype": "BYTES", "shape": [-1, -1]},
                {"name": OUT_PROBS, "datatype": "FP32", "shape": [-1, self.num_classes]},
            ],
        }

    def model_ready(self, name: str, version: str = "") -> bool:
        self.resolve_model(name, version)
        return self.ready and not self.draining

    async def infer(self, req: InferRequest) -> InferResponse:
        """One OIP inference request: ``image`` (BYTES) or ``input`` (FP32) in, top-k (+ probabilities) out."""
        self.resolve_model(req.model_name, req.model_version)
        self.check_accepting()
        k = self.top_k_param(req.parameters.get("top_k"))
        timeout_s = parse_timeout_s(req.parameters.get("timeout"))
        requested = self._requested_outputs(req)
        if len(req.inputs) != 1:
            raise BadRequest(
                f"expected exactly one input ({INPUT_IMAGE!r} or {INPUT_TENSOR!r}), got {[i.name for i in req.inputs]}"
            )
        inp = req.inputs[0]
        what = f"input {inp.name!r}"
        if inp.name == INPUT_IMAGE:
            if inp.datatype != "BYTES":
                raise BadRequest(f"{what} must be BYTES (encoded images), got {inp.datatype}")
            images = [self._element_bytes(e, i, what, inp.parameters) for i, e in enumerate(inp.data)]
            results = await self.classify_images(images, k, "oip_image", timeout_s)
            bad = [(i, r) for i, r in enumerate(results) if isinstance(r, ImageError)]
            if bad:
                i, err = bad[0]
                more = f" (and {len(bad) - 1} more bad elements)" if len(bad) > 1 else ""
                raise BadRequest(f"{what} element {i}: {err}{more}")
        elif inp.name == INPUT_TENSOR:
            if inp.datatype != "FP32":
                raise BadRequest(f"{what} must be FP32, got {inp.datatype}")
            results = await self.classify_tensor(inp.data, k, "oip_tensor", timeout_s, what)
        else:
            c, h, w = self.input_shape
            raise BadRequest(
                f"unknown input {inp.name!r}: this model takes {INPUT_IMAGE!r} (BYTES, encoded images) "
                f"or {INPUT_TENSOR!r} (FP32 [-1, {c}, {h}, {w}])"
            )
        return InferResponse(
            self.cfg.model, ServedModel.version, req.id, [self._output(o, results, k, req) for o in requested]
        )

    @staticmethod
    def _element_bytes(element: bytes | str, i: int, what: str, params: dict) -> bytes:
        if isinstance(element, bytes):
            return element
        try:  # JSON cannot carry raw image bytes: JSON BYTES elements are base64 (MLServer's content_type)
            return base64.b64decode(element, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(
                f"{what} element {i}: JSON BYTES elements must be base64-encoded images "
                "(or send binary data with the Inference-Header-Content-Length extension)"
            ) from None

    def _requested_outputs(self, req: InferRequest) -> list:
        if req.outputs is None:
            return [(name, {}) for name in DEFAULT_OUTPUTS]
        if not req.outputs:
            raise BadRequest("'outputs' is empty")
        out = []
        for o in req.outputs:
            if o.name not in ALL_OUTPUTS:
                raise BadRequest(f"unknown output {o.name!r}: this model produces {list(ALL_OUTPUTS)}")
            cls = o.parameters.get("classification")
            if cls is not None:
                if o.name != OUT_PROBS:
                    raise BadRequest(f"the classification extension applies to {OUT_PROBS!r} only")
                self.top_k_param(cls, "parameter 'classification'")
            out.append((o.name, o.parameters))
        return out

    def _output(self, requested: tuple, results: list[Classification], k: int, req: InferRequest) -> OutputTensor:
        name, params = requested
        n = len(results)
        binary = wants_binary(params, req)
        if name == OUT_CLASS_IDS:
            data = np.asarray([r.class_ids for r in results], dtype=np.int64).reshape(n, -1)
            return OutputTensor(name, "INT64", data.shape, data, binary)
        if name == OUT_SCORES:
            data = np.asarray([r.scores for r in results], dtype=np.float32).reshape(n, -1)
            return OutputTensor(name, "FP32", data.shape, data, binary)
        if name == OUT_LABELS:
            items = [s.encode() for r in results for s in r.label_names]
            return OutputTensor(name, "BYTES", (n, len(items) // max(n, 1)), items, binary)
        probs = np.stack([r.probabilities for r in results]).astype(np.float32)
        cls = params.get("classification")
        if cls is not None:  # Triton's classification extension: "score:index:label" strings
            kk = self.top_k_param(cls, "parameter 'classification'")
            ids, scores = top_k(np.stack([r.logits for r in results]), kk)
            items = [
                f"{s:f}:{i}:{self.model.labels[i]}".encode()
                for row_i, row_s in zip(ids, scores)
                for i, s in zip(row_i, row_s)
            ]
            return OutputTensor(name, "BYTES", (n, kk), items, binary)
        return OutputTensor(name, "FP32", probs.shape, probs, binary)
