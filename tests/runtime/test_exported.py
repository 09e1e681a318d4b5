"""The cached export / int8 recipe shared by the ONNX Runtime and OpenVINO engines (fake converters)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from res2net.runtime import ArtifactCache, BuildContext, EngineError
from res2net.runtime.exported import cached_export, cached_int8


def context(tmp_path: Path, calibration=None) -> BuildContext:
    return BuildContext(
        "tiny-abc", "sha", lambda: "MODEL", input_size=160, cache=ArtifactCache(tmp_path), calibration=calibration
    )


def test_cached_export_builds_once(tmp_path, caplog):
    calls = []

    def export(model, path, *, dynamic_batch, input_size):
        calls.append((model, path.name, dynamic_batch, input_size))
        path.write_text("graph")

    ctx = context(tmp_path)
    with caplog.at_level(logging.INFO, logger="res2net.runtime"):
        first = cached_export(ctx, "onnx", "model.onnx", export, "exporting %s to ONNX")
        second = cached_export(ctx, "onnx", "model.onnx", export, "exporting %s to ONNX")
    assert first == second == str(ctx.cache.path(ctx.key("onnx", "fp32")) / "model.onnx")
    assert Path(first).read_text() == "graph"
    assert calls == [("MODEL", "model.onnx", True, 160)]
    assert [r.getMessage() for r in caplog.records] == [
        f"exporting tiny-abc to ONNX (one-time, cached in {Path(first).parent})"
    ]


def test_cached_int8_needs_calibration_and_records_it(tmp_path):
    key = context(tmp_path).key("onnxruntime", "int8", "digest")

    def quantize(src, dst, data):
        dst.write_text(f"{src}:{len(data)}")

    with pytest.raises(EngineError, match="int8 needs calibration images"):
        cached_int8(context(tmp_path), key, "fp32.onnx", "model.onnx", quantize, "calibrating int8 ONNX model")
    ctx = context(tmp_path, calibration=lambda: np.zeros((3, 3, 32, 32), np.float32))
    path = cached_int8(ctx, key, "fp32.onnx", "model.onnx", quantize, "calibrating int8 ONNX model")
    assert Path(path).read_text() == "fp32.onnx:3"
    assert ctx.cache.read_meta(key)["calibration_images"] == 3
