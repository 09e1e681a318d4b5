"""ExecuTorch ``.pte`` programs for phones and edge boards, delegated to XNNPACK (fp32 or int8).

Why ExecuTorch + XNNPACK: it is PyTorch's own on-device runtime (Android, iOS, Linux ARM/x86, a
~1 MB C++ runtime with no Python), it consumes the same ``torch.export`` graph as every other
exporter here (:func:`res2net.export._common.export_program`), and XNNPACK runs Res2Net's convs,
pools, adds and concatenations fully delegated on ARM and x86 CPUs.

int8 is PT2E post-training quantization with ``XNNPACKQuantizer``: weights symmetric per output
channel, activations per tensor with ranges observed on calibration images preprocessed exactly as
at inference (:func:`res2net.export.quantize.calibration_data`: a folder, a list file or an array).
BatchNorm is folded into the convolutions by ``convert_pt2e`` before the weights are quantized.

A ``.pte`` has a static input shape ``[batch_size, 3, H, W]`` (XNNPACK plans its memory for it) and
no room for free-form metadata, so a ``NAME.pte.json`` beside it records the same metadata as the
other formats (model, classes, preprocessing, precision). :class:`PteModel` runs a program from
Python through ExecuTorch's runtime (a pybind of the C++ runtime an app links): what the tests and
``res2net quantize-report`` use to verify the file against PyTorch eager.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net.accuracy import PRECISIONS as ALL_PRECISIONS
from res2net.data.preprocess import Preprocess
from res2net.data.transforms import EvalTransform
from res2net.export._common import (
    ExportError,
    convert_quietly,
    eval_mode,
    export_program,
    input_hw,
    log,
    metadata,
    model_name,
    output_path,
)
from res2net.export.calibration import OUTLIER_FRACTION, calibration_data, trim_outliers
from res2net.export.pte import PteModel, read_metadata, require_executorch, sidecar
from res2net.export.verify import verify_export

PRECISIONS = tuple(p for p in ALL_PRECISIONS if p != "bf16")  # XNNPACK has no bf16 path


def eval_transform_for(model: nn.Module, h: int):
    """The model card's :class:`EvalTransform`, scaled to crop ``h`` (as the recorded metadata says)."""
    card = getattr(model, "card", None)
    return EvalTransform.from_preprocess(card.preprocess if card is not None else Preprocess()).at_crop(h)


CALIBRATION_BATCH = 32


def quantize_pt2e(
    model: nn.Module,
    h: int,
    w: int,
    calibration: np.ndarray,
    *,
    softmax: bool = False,
    batch_size: int = 1,
    outlier_fraction: float | None = None,
) -> torch.export.ExportedProgram:
    """PT2E int8 of ``model`` for XNNPACK, calibrated on ``calibration`` (float32 NCHW); returns the
    quantized program with a fixed batch of ``batch_size``.

    The graph is captured with a dynamic batch for calibration, which then runs in batches of
    :data:`CALIBRATION_BATCH` (observers in Python cost per call: 300 images take ~10 s instead of
    ~100 s one by one), and re-exported at the program's fixed batch after ``convert_pt2e``.

    Like the ONNX Runtime and OpenVINO recipes, the calibration leaves out the ``outlier_fraction``
    (default :data:`res2net.export.quantize.OUTLIER_FRACTION`) of images with the most extreme fp32
    logits (:func:`res2net.export.quantize.trim_outliers`): the observers' min/max ranges are
    otherwise set by those few images. On a trained Res2Net50_vd (digits, 32 px, 300 calibration
    images) this took the ``.pte``'s relative logit error from 55.4% to 8.5% and its accuracy
    delta from -5.01 to -1.11 points.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    program = export_program(model, h, w, softmax=softmax, dynamic_batch=True)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(program.module(), quantizer)
    data = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    with torch.no_grad():
        logits = torch.cat([model(data[i : i + CALIBRATION_BATCH]) for i in range(0, len(data), CALIBRATION_BATCH)])
    fraction = OUTLIER_FRACTION if outlier_fraction is None else outlier_fraction
    data = torch.from_numpy(trim_outliers(data.numpy(), logits.float().numpy(), fraction))
    with torch.no_grad():
        for start in range(0, len(data), CALIBRATION_BATCH):
            prepared(data[start : start + CALIBRATION_BATCH])
    converted = convert_pt2e(prepared)
    example = data[[i % len(data) for i in range(batch_size)]]
    return torch.export.export(converted, (example,), strict=False)


def export_pte(
    model: nn.Module,
    path: str | Path,
    *,
    quantize: str | None = None,
    calibration=None,
    softmax: bool = False,
    input_size: int | tuple[int, int] = 224,
    batch_size: int = 1,
    verify: bool = True,
) -> Path:
    """Write ``model`` as an ExecuTorch program with the XNNPACK delegate at ``path`` (``.pte`` added).

    Args:
        quantize: ``None``/``"fp32"`` for float, ``"int8"`` for PT2E static int8.
        calibration: int8 only: a folder, list file, glob, paths or a float32 ``[N, 3, H, W]``
            array (:func:`res2net.export.quantize.calibration_data`); ``None`` uses the packaged
            sample photos, fine for a demo — pass 100-300 images of your own data for production.
        softmax: end in a softmax (output ``probabilities``) as PaddleClas's inference models do.
        input_size: spatial size, fixed in the program.
        batch_size: the program's fixed batch size.
        verify: run the written file with ExecuTorch's runtime on real images next to eager
            PyTorch (:func:`verify_pte`): fp32 must agree within 1e-4 (else :class:`ExportError`).
    """
    require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    precision = quantize or "fp32"
    if precision not in PRECISIONS:
        raise ExportError(f"unknown pte precision {quantize!r}; choose one of {PRECISIONS}")
    if batch_size < 1:
        raise ExportError(f"batch size must be >= 1, got {batch_size}")
    h, w = input_hw(input_size)
    path = output_path(path, ".pte")
    with eval_mode(model):
        if precision == "int8":
            data = calibration_data(calibration, eval_transform_for(model, h))
            if data.shape[2:] != (h, w):
                raise ExportError(f"calibration inputs are {data.shape[2]}x{data.shape[3]}, the program takes {h}x{w}")
            program = quantize_pt2e(model, h, w, data, softmax=softmax, batch_size=batch_size)
        else:
            program = export_program(model, h, w, softmax=softmax, dynamic_batch=False, batch_size=batch_size)
        et_program = convert_quietly(
            lambda: to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch(),
            "ExecuTorch lowering",
            model_name(model),
        )
        meta = metadata(model, h, w, softmax=softmax, dynamic_batch=False, fmt="pte")
    meta["input_shape"] = json.dumps([batch_size, 3, h, w])
    meta["precision"] = precision
    meta["backend"] = "xnnpack"
    path.write_bytes(et_program.buffer)
    sidecar(path).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %s (%s, XNNPACK, batch %d, %.1f MB)", path, precision, batch_size, path.stat().st_size / 1e6)
    if verify:
        verify_pte(model, path)
    return path


def verify_pte(model: nn.Module, path: str | Path, *, atol: float = 1e-4, images=None):
    """Run ``path`` with ExecuTorch's runtime on real photos next to eager ``model``
    (:func:`res2net.export.verify_export`). An fp32 program must match within ``atol`` (else
    :class:`ExportError`); an int8 program's agreement is reported, not judged (on random-weight or
    unlabelled checks it means little: the tests judge int8 on a trained model's labelled set)."""
    int8 = read_metadata(path).get("precision") == "int8"
    report = verify_export(path, model, fmt="pte", images=images, atol=atol, raise_on_fail=not int8)
    log.info("%s%s", report.summary(), " (int8: not held to the fp32 tolerance)" if int8 else "")
    return report


__all__ = ["PRECISIONS", "PteModel", "export_pte", "quantize_pt2e", "read_metadata", "verify_pte"]
