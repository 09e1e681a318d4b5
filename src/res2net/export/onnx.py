"""ONNX export (opset >= 17) through ``torch.export`` and the dynamo-based ONNX exporter.

Why the dynamo exporter: the TorchScript-based one regressed on exactly the op Res2Net-vd needs —
``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`` in the avg-down shortcut lost
``ceil_mode`` and failed on dynamic shapes (pytorch/pytorch#99424, #101397). The graph captured by
``torch.export`` keeps split sizes as Python ints and the pool's ``ceil_mode``; the tests check the
exported vd models at 224 and at odd sizes (where ceil mode changes the output shape) against eager.

The file holds one float32 input ``input`` ``[batch, 3, H, W]`` and one output ``logits`` (or
``probabilities`` with ``softmax=True``), plus metadata (model name, classes, preprocessing) in
``metadata_props``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from res2net.export._common import (
    INPUT_NAME,
    ExportError,
    convert_program,
    input_hw,
    log,
    output_name,
    output_path,
    quiet,
)

MIN_OPSET = 17
_MAX_PROTOBUF = 1_800_000_000  # ONNX protobufs cap at 2 GiB; larger models go to external data


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    softmax: bool = False,
    opset: int = 18,
    input_size: int | tuple[int, int] = 224,
    batch_size: int = 1,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (``.onnx`` appended if missing) and return the path.

    Args:
        model: a Res2Net (any ``nn.Module`` taking one NCHW tensor); exported in eval mode, its
            training flag restored afterwards.
        dynamic_batch: a symbolic ``batch`` dimension (1..1024); otherwise the batch is ``batch_size``.
        softmax: append a softmax, as PaddleClas's inference models do; the output is then
            ``probabilities`` instead of ``logits``.
        opset: ONNX opset, at least 17 (LayerNorm-era ops; older opsets mis-export ceil-mode pools).
        input_size: the spatial size (``224`` or ``(h, w)``); fixed in the graph.
    """
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; res2net exports ONNX opset >= {MIN_OPSET}")
    h, w = input_hw(input_size)
    path = output_path(path, ".onnx")
    onnx_program, meta = convert_program(
        model,
        h,
        w,
        lambda program: torch.onnx.export(
            program,
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[output_name(softmax)],
            optimize=True,
            verbose=False,
        ),
        what="ONNX export",
        fmt="onnx",
        softmax=softmax,
        dynamic_batch=dynamic_batch,
        batch_size=batch_size,
    )
    ir_model = onnx_program.model
    if dynamic_batch:
        _name_batch_dim(ir_model)
    ir_model.metadata_props.update(meta)
    ir_model.doc_string = f"{meta['model_name']} exported by {meta['producer']}"
    size = sum(v.const_value.nbytes for v in ir_model.graph.initializers.values() if v.const_value is not None)
    external = size > _MAX_PROTOBUF
    with quiet():
        onnx_program.save(path, external_data=external)
    onnx.checker.check_model(str(path))
    log.info(
        "wrote %s (opset %d, %s batch, %.1f MB)",
        path,
        opset,
        "dynamic" if dynamic_batch else "static",
        path.stat().st_size / 1e6,
    )
    return path


def _name_batch_dim(ir_model) -> None:
    """Call the symbolic batch dimension ``batch`` everywhere (torch.export names it ``s0``, ``s77`` ...)."""
    graph = ir_model.graph
    first = graph.inputs[0].shape
    if first is None or isinstance(first[0], int):
        return
    shape_cls = type(first)  # onnx_ir.Shape (onnx_ir comes with onnxscript; not imported by name)
    old = str(first[0])
    values = [*graph.inputs, *graph.outputs, *(v for node in graph for v in node.outputs)]
    for value in values:
        shape = value.shape
        if shape is not None and any(not isinstance(d, int) and str(d) == old for d in shape):
            value.shape = shape_cls(["batch" if not isinstance(d, int) and str(d) == old else d for d in shape])


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` written by :func:`export_onnx` (without loading the weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
