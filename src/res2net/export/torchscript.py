"""TorchScript export (``torch.jit.trace``), for runtimes that still take ``torch.jit.load`` files.

PyTorch deprecates TorchScript in favour of ``torch.export``/AOTInductor (:mod:`res2net.export.pt2`);
it remains here because older libtorch deployments, mobile (Lite interpreter) and some serving
stacks load only ``.pt`` TorchScript. Tracing is exact for Res2Net: its control flow does not depend
on the data and the split sizes are Python ints, so the trace runs at any batch size (the batch is
never baked in); the spatial size the trace saw is recorded in the metadata, other sizes also run.
The metadata travels as the extra file ``res2net.json``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from res2net.export._common import (
    ExportError,
    eval_mode,
    example_input,
    input_hw,
    log,
    metadata,
    output_path,
    prepare,
)

EXTRA_FILE = "res2net.json"


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    softmax: bool = False,
    input_size: int | tuple[int, int] = 224,
    freeze: bool = True,
) -> Path:
    """Trace ``model`` and save it at ``path`` (``.pt``); return the path.

    ``freeze`` inlines the weights as constants and folds BatchNorm into the convolutions
    (``torch.jit.freeze``): a faster graph with the same outputs to ~1e-6.
    """
    h, w = input_hw(input_size)
    path = output_path(path, ".pt")
    with eval_mode(model):
        wrapped = prepare(model, softmax)
        x = example_input(model, h, w)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.trace is deprecated"
                traced = torch.jit.trace(wrapped, x, check_trace=False)
                if freeze:
                    traced = torch.jit.freeze(traced)
        except Exception as e:
            raise ExportError(f"TorchScript tracing of {type(model).__name__} failed: {e}") from e
        meta = metadata(model, h, w, softmax=softmax, dynamic_batch=True, fmt="torchscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(meta)})
    log.info("wrote %s (TorchScript%s)", path, ", frozen" if freeze else "")
    return path


def load_torchscript(path: str | Path, device: str = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """Load a TorchScript file written by :func:`export_torchscript`; return it and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such TorchScript file")
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as e:
        raise ExportError(f"{path}: not a TorchScript file ({e})") from e
    return module.eval(), json.loads(extra[EXTRA_FILE] or "{}")
