"""The model as the server sees it: decode one image, run one batch, name the classes.

A thin layer over :class:`res2net.Predictor`, which owns preprocessing and the engines. The server
needs the steps separately — decoding per image on a thread pool (so one bad image fails alone and
decoding overlaps inference), forward passes per dynamic batch — and adds the server's own
decompression-bomb limit (``max_pixels``) in front of the predictor's preprocessing.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from res2net.data.image import prepare_image
from res2net.models import get_card

log = logging.getLogger(__name__)


class ServedModel:
    """One loaded model. ``infer`` is called from the batcher's single inference thread only."""

    version = "1"

    def __init__(
        self,
        model: str,
        weights: str | None = None,
        engine: str = "auto",
        device: str | None = None,
        max_pixels: int = 40_000_000,
        max_batch_size: int = 8,
        threads: int | None = None,
    ):
        from res2net.predict import Predictor

        self.card = get_card(model)
        self.name = model
        self.max_pixels = max_pixels
        start = time.perf_counter()
        # batch_size: one dynamic batch is one engine call (the Predictor would split larger ones).
        self.predictor = Predictor(
            model, weights=weights, engine=engine, device=device or "cpu", batch_size=max_batch_size, threads=threads
        )
        self.load_seconds = time.perf_counter() - start
        self.engine = f"{self.predictor.engine_name}-{self.predictor.precision}"
        crop = self.predictor.transform.crop_size
        self.input_shape = (3, crop, crop)
        self.labels: list[str] = list(self.predictor.labels)
        self.num_classes = int(self.predictor.num_classes or len(self.labels))
        self.warmup_seconds = 0.0

    def decode(self, data: bytes) -> np.ndarray:
        """Encoded image -> preprocessed ``float32`` CHW array; raises ``ImageError`` naming the problem."""
        return prepare_image(data, self.predictor.transform, self.max_pixels)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """``[B, 3, H, W]`` float32 -> ``[B, num_classes]`` float32 logits (ranked and softmaxed by the caller)."""
        return self.predictor.forward(np.ascontiguousarray(batch, dtype=np.float32))

    def warmup(self, batch_sizes: tuple[int, ...]) -> float:
        """Run the decode path and each batch size once, so the first real request is not the slow one."""
        import io

        from PIL import Image

        start = time.perf_counter()
        buf = io.BytesIO()
        Image.new("RGB", (320, 256), (120, 90, 60)).save(buf, format="JPEG")
        x = self.decode(buf.getvalue())
        for n in sorted(set(batch_sizes)):
            self.infer(np.stack([x] * n))
        self.warmup_seconds = time.perf_counter() - start
        return self.warmup_seconds
