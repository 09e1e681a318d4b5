"""OpenVINO IR export (``.xml`` + ``.bin``), converted from the ``torch.export`` graph.

Converting the ``ExportedProgram`` (rather than letting OpenVINO trace with the deprecated
``torch.jit.trace``) means OpenVINO sees the same graph as the ONNX and pt2 exports. The spatial
size is fixed (static shapes let OpenVINO pick its fastest kernels); the batch stays dynamic.
Weights are stored in float32 by default — OpenVINO's ``save_model`` would silently halve them to
fp16, which costs ~1e-3 in logits and breaks the 1e-4 parity claim.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from res2net.export._common import INPUT_NAME, convert_program, input_hw, log, output_name, output_path


def export_openvino(
    model: nn.Module,
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    softmax: bool = False,
    input_size: int | tuple[int, int] = 224,
    batch_size: int = 1,
    compress_to_fp16: bool = False,
) -> Path:
    """Write ``model`` as OpenVINO IR at ``path`` (``.xml``, weights beside it in ``.bin``); return the ``.xml``.

    Args mirror :func:`res2net.export.export_onnx`; ``compress_to_fp16`` stores fp16 weights (half
    the file, ~1e-3 logit error) — computation precision is chosen at compile time, not here.
    """
    import openvino as ov

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
    )
    in_chans = ov_model.inputs[0].get_partial_shape()[1]
    ov_model.reshape({0: ov.PartialShape([-1 if dynamic_batch else batch_size, in_chans, h, w])})
    ov_model.inputs[0].get_tensor().set_names({INPUT_NAME})
    ov_model.outputs[0].get_tensor().set_names({output_name(softmax)})
    ov_model.set_friendly_name(meta["model_name"])
    for key, value in meta.items():
        ov_model.set_rt_info(value, ["res2net", key])
    ov.save_model(ov_model, str(path), compress_to_fp16=compress_to_fp16)
    log.info("wrote %s + %s (%s batch)", path, path.with_suffix(".bin").name, "dynamic" if dynamic_batch else "static")
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The res2net metadata stored in an IR's ``rt_info`` by :func:`export_openvino`."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    if not model.has_rt_info(["res2net"]):
        return {}
    info = model.get_rt_info(["res2net"]).value
    return {str(k): str(v) for k, v in info.items()}
