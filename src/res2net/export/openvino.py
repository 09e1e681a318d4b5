"""OpenVINO IR export (``.xml`` + ``.bin``), converted from the ``torch.export`` graph.

Converting the ``ExportedProgram`` (rather than letting OpenVINO trace with the deprecated
``torch.jit.trace``) means OpenVINO sees the same graph as the ONNX and pt2 exports. The spatial
size is fixed (static shapes let OpenVINO pick its fastest kernels); the batch stays dynamic.
Weights are stored in float32 by default — OpenVINO's ``save_model`` would silently halve them to
fp16, which costs ~1e-3 in logits and breaks the 1e-4 parity claim.

The metadata (``rt_info["res2net"]``: preprocessing, class names, shapes) travels inside the
``.xml``, so the C++ predictor (``deploy/cpp``) needs no flags to preprocess and label as Python
does. ``quantize="int8"`` writes the NNCF int8 model that ``res2net.Predictor(engine="openvino",
precision="int8")`` runs (same recipe: :func:`res2net.export.quantize.quantize_openvino`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from res2net.data.transforms import EvalTransform
from res2net.export._common import (
    INPUT_NAME,
    ExportError,
    convert_program,
    input_hw,
    log,
    output_name,
    output_path,
)


def export_openvino(
    model: nn.Module,
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    softmax: bool = False,
    input_size: int | tuple[int, int] = 224,
    batch_size: int = 1,
    compress_to_fp16: bool = False,
    transform: EvalTransform | None = None,
    labels: Sequence[str] | str | Path | None = None,
    quantize: str | None = None,
    calibration=None,
) -> Path:
    """Write ``model`` as OpenVINO IR at ``path`` (``.xml``, weights beside it in ``.bin``); return the ``.xml``.

    Args mirror :func:`res2net.export.export_onnx`; ``compress_to_fp16`` stores fp16 weights (half
    the file, ~1e-3 logit error) — computation precision is chosen at compile time, not here.
    ``transform`` (default: the model card's) and ``labels`` (names or a label file; default:
    ImageNet's for 1000 classes) are recorded for consumers. ``quantize="int8"`` quantizes with
    NNCF on ``calibration`` images (see :func:`res2net.export.quantize.calibration_data`; default:
    the packaged sample photos), preprocessed by ``transform``.
    """
    import openvino as ov

    if quantize not in (None, "fp32", "int8"):
        raise ExportError(f"unknown quantize {quantize!r} for OpenVINO; choose int8")
    h, w = input_hw(input_size)
    path = output_path(path, ".xml")
    ov_model, meta = convert_program(
        model,
        h,
        w,
        ov.convert_model,
        what="OpenVINO conversion",
        fmt="openvino",
        softmax=softmax,
        dynamic_batch=dynamic_batch,
        batch_size=batch_size,
        transform=transform,
        labels=labels,
    )
    in_chans = ov_model.inputs[0].get_partial_shape()[1]
    ov_model.reshape({0: ov.PartialShape([-1 if dynamic_batch else batch_size, in_chans, h, w])})
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})
    ov_model.outputs[0].get_tensor().set_names({output_name(softmax)})
    ov_model.set_friendly_name(meta["model_name"])
    if quantize == "int8":
        return _quantize(ov_model, path, meta, calibration, transform or _card_transform(model, h))
    _save(ov_model, path, meta, compress_to_fp16)
    log.info("wrote %s + %s (%s batch)", path, path.with_suffix(".bin").name, "dynamic" if dynamic_batch else "static")
    return path


def _save(ov_model, path: Path, meta: dict[str, str], compress_to_fp16: bool = False) -> None:
    import openvino as ov

    for key, value in meta.items():
        ov_model.set_rt_info(value, ["res2net", key])
    ov.save_model(ov_model, str(path), compress_to_fp16=compress_to_fp16)


def _card_transform(model: nn.Module, h: int) -> EvalTransform:
    """The eval preprocessing the recorded metadata describes when no transform is given."""
    card = getattr(model, "card", None)
    return EvalTransform.from_preprocess(card.preprocess.at_crop(h)) if card is not None else EvalTransform()


def _quantize(ov_model, path: Path, meta: dict[str, str], calibration, transform: EvalTransform) -> Path:
    """NNCF int8 of the converted fp32 model, through the fp32 IR on disk as the Predictor's engine
    does (:func:`res2net.export.quantize.quantize_openvino`), so both calibrate the same graph."""
    import openvino as ov

    from res2net.export.quantize import calibration_data, quantize_openvino

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.xml", Path(tmp) / "int8.xml"
        _save(ov_model, fp32, meta)
        quantize_openvino(fp32, int8, calibration_data(calibration, transform))
        # Re-saved from the temporary copy: OpenVINO maps the .bin it reads, so never overwrite that one.
        _save(ov.Core().read_model(str(int8)), path, {**meta, "precision": "int8"})
    log.info("wrote int8 %s + %s", path, path.with_suffix(".bin").name)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The res2net metadata stored in an IR's ``rt_info`` by :func:`export_openvino`."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    if not model.has_rt_info(["res2net"]):
        return {}
    info = model.get_rt_info(["res2net"]).value
    return {str(k): str(v) for k, v in info.items()}
