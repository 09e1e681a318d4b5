"""The cached files of the engines that run an exported model (ONNX Runtime, OpenVINO).

Both derive their model the same way: export the PyTorch model once, fp32 with a dynamic batch, then
for int8 quantize that file on calibration images; each step is an artifact in the cache, so only
the first run pays for it. One copy of the recipe keeps the cache keys, file names, log lines and
the "needs calibration" error alike for both engines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from res2net.runtime.base import BuildContext, EngineError
from res2net.runtime.cache import ArtifactKey

log = logging.getLogger("res2net.runtime")


def cached_export(ctx: BuildContext, engine: str, filename: str, export: Callable[..., object], doing: str) -> str:
    """Path of ``ctx``'s model exported by ``export(model, path, dynamic_batch=True, input_size=...)``
    to ``filename`` in the cache (key: ``engine``, fp32), exporting it if needed. ``doing`` is the
    log line's start, e.g. ``"exporting %s to ONNX"`` (``%s``: the model id)."""

    def build(d: Path) -> None:
        log.info(doing + " (one-time, cached in %s)", ctx.model_id, d)
        export(ctx.model_factory(), d / filename, dynamic_batch=True, input_size=ctx.input_size)

    return str(ctx.cache.get_or_build(ctx.key(engine, "fp32"), build) / filename)


def cached_int8(
    ctx: BuildContext,
    key: ArtifactKey,
    fp32_path: str,
    filename: str,
    quantize: Callable[[str, Path, np.ndarray], object],
    doing: str,
) -> str:
    """Path of ``fp32_path`` quantized by ``quantize(fp32_path, path, calibration_data)`` to
    ``filename`` in the cache under ``key``, calibrating on ``ctx.calibration()`` if needed.
    ``doing`` is the log line's start, e.g. ``"calibrating int8 ONNX model"``."""

    def build(d: Path) -> dict:
        if ctx.calibration is None:
            raise EngineError("int8 needs calibration images")
        log.info(doing + " (one-time, cached in %s)", d)
        data = ctx.calibration()
        quantize(fp32_path, d / filename, data)
        return {"calibration_images": len(data)}

    return str(ctx.cache.get_or_build(key, build) / filename)
