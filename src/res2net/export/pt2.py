"""``torch.export`` + AOTInductor: a self-contained ``.pt2`` package of compiled kernels.

This is the C++ path's input: the package loads without Python through
``torch::inductor::AOTIModelPackageLoader(path)`` (libtorch), and in Python through
``torch._inductor.aoti_load_package(path)``. The kernels are compiled ahead of time for one device
type (``cpu`` or ``cuda``) and, on CPU, for the instruction set of the machine that compiled it
(the package records it as ``AOTI_CPU_ISA``) — compile on (a machine like) the one that runs it.

Compiling takes a while (tens of seconds for a small model, minutes for Res2Net-200 on two cores);
it happens once, at export.

On CPU the weights are frozen into the package (Inductor's ``freezing``, as ``torch.compile``
users set it: BatchNorm folded into the convolutions, constants folded, the convolutions become
oneDNN ``mkldnn._convolution_pointwise`` calls on weights prepacked at load, residual adds and ReLUs
fused into them) instead of generic ``aten.convolution`` calls that reorder every weight on every
call. See docs/deploy.md for what it changes and where the package stands on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from res2net.export._common import (
    ExportError,
    eval_mode,
    export_program,
    input_hw,
    log,
    metadata,
    output_path,
)

if TYPE_CHECKING:
    from res2net.data.transforms import EvalTransform


def export_pt2(
    model: nn.Module,
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    softmax: bool = False,
    input_size: int | tuple[int, int] = 224,
    batch_size: int = 1,
    device: str = "cpu",
    inductor_configs: dict[str, Any] | None = None,
    transform: EvalTransform | None = None,
    labels: Sequence[str] | str | Path | None = None,
) -> Path:
    """Compile ``model`` with AOTInductor into the package ``path`` (``.pt2``); return the path.

    Args mirror :func:`res2net.export.export_onnx`; ``device`` (``"cpu"``/``"cuda"``/``"cuda:1"``)
    is where the kernels run, and ``inductor_configs`` are passed to Inductor (e.g.
    ``{"max_autotune": True}`` on GPU; ``{"freezing": False}`` keeps CPU weights unfrozen). The
    package's metadata (``get_metadata()`` in Python and C++) holds the model name, classes, tensor
    names, the preprocessing (``transform``, default the card's) and the class names (``labels``,
    default ImageNet's for 1000 classes).
    """
    h, w = input_hw(input_size)
    path = output_path(path, ".pt2")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExportError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    param = next(model.parameters(), None)
    original = param.device if param is not None else torch.device("cpu")
    meta = metadata(
        model, h, w, softmax=softmax, dynamic_batch=dynamic_batch, fmt="pt2", batch_size=batch_size,
        transform=transform, labels=labels,
    )  # fmt: skip
    configs = {"aot_inductor.metadata": meta, "freezing": device.type == "cpu", **(inductor_configs or {})}
    with eval_mode(model):
        model.to(device)
        try:
            program = export_program(model, h, w, softmax=softmax, dynamic_batch=dynamic_batch, batch_size=batch_size)
            try:
                # Without grad: Inductor only freezes (and so only prepacks oneDNN weights) when grad is off;
                # with it on, `freezing` is silently ignored and every convolution reorders its weights per call.
                with torch.no_grad():
                    out = torch._inductor.aoti_compile_and_package(
                        program, package_path=str(path), inductor_configs=configs
                    )
            except Exception as e:
                raise ExportError(f"AOTInductor compilation of {meta['model_name']} failed: {e}") from e
        finally:
            model.to(original)
    log.info("wrote %s (AOTInductor, %s, %s batch)", out, device, "dynamic" if dynamic_batch else "static")
    return Path(out)


def load_pt2(path: str | Path, device: str | None = None):
    """Load a ``.pt2`` package for inference: a callable ``tensor -> tensor`` with ``get_metadata()``."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such .pt2 package")
    index = torch.device(device).index if device is not None else None
    try:
        return torch._inductor.aoti_load_package(str(path), device_index=-1 if index is None else index)
    except Exception as e:
        raise ExportError(f"{path}: not a loadable AOTInductor package ({e})") from e
