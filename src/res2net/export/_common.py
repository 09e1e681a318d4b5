"""What every exporter shares: the inference wrapper, the example input, names and metadata.

All formats export the same function — ``model`` in eval mode, optionally followed by a softmax
(PaddleClas's inference models end in ``Softmax``: ``Arch.infer_add_softmax``) — with one input
``input`` of shape ``[N, 3, H, W]`` (float32, already normalised) and one output ``logits`` (or
``probabilities`` with the softmax head) of shape ``[N, num_classes]``. Keeping the names fixed lets
engines, the Triton config and the C++ predictor find the tensors without reading the graph.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from res2net._version import __version__
from res2net.errors import Res2NetError

if TYPE_CHECKING:
    from res2net.data.transforms import EvalTransform

log = logging.getLogger("res2net.export")

INPUT_NAME = "input"
LOGITS_NAME = "logits"
PROBS_NAME = "probabilities"
MAX_BATCH = 1024  # upper bound of the dynamic batch dimension (a bound helps torch.export's solver)
EXAMPLE_BATCH = 2  # never trace with batch 1: torch.export would specialise the batch dimension to 1

T = TypeVar("T")


class ExportError(Res2NetError, RuntimeError):
    """An export could not be produced or failed its verification."""


class InferenceModel(nn.Module):
    """``model`` followed by an optional softmax: the function every exported file computes."""

    def __init__(self, model: nn.Module, softmax: bool = False) -> None:
        super().__init__()
        self.model = model
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return torch.softmax(y, dim=-1) if self.softmax else y


def output_name(softmax: bool) -> str:
    return PROBS_NAME if softmax else LOGITS_NAME


def input_hw(input_size: int | tuple[int, int]) -> tuple[int, int]:
    """``224`` or ``(h, w)`` -> ``(h, w)``; refuse sizes the network cannot take (stride 32, 3x3 pools)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if min(h, w) < 32:
        raise ExportError(f"input size {h}x{w} is too small: Res2Net downsamples by 32 (use >= 32)")
    return int(h), int(w)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Export in eval mode (BN running statistics, no dropout) and give the model back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def prepare(model: nn.Module, softmax: bool) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return InferenceModel(model, softmax).eval()


def example_input(model: nn.Module, h: int, w: int, batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    in_chans = getattr(getattr(model, "cfg", None), "in_chans", 3)
    return torch.randn(batch, in_chans, h, w, device=device, dtype=dtype)


def batch_dim(dynamic_batch: bool) -> dict | None:
    """``dynamic_shapes`` for torch.export: the batch dimension named ``batch`` in ``[1, MAX_BATCH]``."""
    if not dynamic_batch:
        return None
    return {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}


def export_program(
    model: nn.Module, h: int, w: int, *, softmax: bool, dynamic_batch: bool, batch_size: int = 1
) -> torch.export.ExportedProgram:
    """``torch.export`` of the inference function: the one graph capture shared by ONNX, OpenVINO, pt2."""
    wrapped = prepare(model, softmax)
    x = example_input(model, h, w, EXAMPLE_BATCH if dynamic_batch else batch_size)
    try:
        with torch.no_grad():
            return torch.export.export(wrapped, (x,), dynamic_shapes=batch_dim(dynamic_batch), strict=False)
    except Exception as e:  # surface the graph-capture failure with the model named
        raise ExportError(f"torch.export failed for {model_name(model)} at {h}x{w}: {e}") from e


def _param_dtype(model: nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else torch.float32


def model_name(model: nn.Module) -> str:
    card = getattr(model, "card", None)
    return getattr(card, "name", None) or type(model).__name__


def metadata(
    model: nn.Module,
    h: int,
    w: int,
    *,
    softmax: bool,
    dynamic_batch: bool,
    fmt: str,
    batch_size: int = 1,
    transform: EvalTransform | None = None,
    labels: Sequence[str] | str | Path | None = None,
) -> dict[str, str]:
    """String key/values stored in the exported file, so a consumer can run it without guessing.

    The preprocessing recorded is ``transform``'s, else the card's (resize the short side, centre
    crop, mean/std, RGB); for an export at another size the card's resize scales with the crop, as
    PaddleClas does. ``labels`` (class names, stored as a JSON array; see :func:`class_names`): the
    given ones, else the ImageNet-1k names for a 1000-class model — the names ``res2net.Predictor``
    prints, so the C++ predictor prints them too without a ``--labels`` flag.
    """
    card = getattr(model, "card", None)
    cfg = getattr(model, "cfg", None)
    num_classes = getattr(model, "num_classes", None)
    meta = {
        "producer": f"res2net {__version__}",
        "torch_version": torch.__version__,
        "format": fmt,
        "model_name": model_name(model),
        "num_classes": str(num_classes or ""),
        "input_name": INPUT_NAME,
        "output_name": output_name(softmax),
        "input_shape": json.dumps(["batch" if dynamic_batch else batch_size, getattr(cfg, "in_chans", 3), h, w]),
        "dtype": str(_param_dtype(model)).removeprefix("torch."),
        "softmax": str(bool(softmax)).lower(),
        "dynamic_batch": str(bool(dynamic_batch)).lower(),
    }
    p = transform if transform is not None else getattr(card, "preprocess", None)
    if p is not None:
        if transform is not None:
            if (transform.crop_size, transform.crop_size) != (h, w):
                raise ExportError(f"the transform crops {transform.crop_size}, but the export is {h}x{w}")
            resize = transform.resize_short
        else:
            resize = p.at_crop(h).resize_short if (h, w) != (p.crop_size, p.crop_size) else p.resize_short
        meta["preprocess"] = json.dumps(
            {
                "resize_short": resize,
                "crop_size": [h, w],
                "interpolation": p.interpolation,
                "mean": list(p.mean),
                "std": list(p.std),
                "channel_order": getattr(p, "channel_order", "RGB"),
                "layout": "NCHW",
            }
        )
    names = class_names(num_classes, labels)
    if names is not None:
        meta["labels"] = json.dumps(names)
    return meta


def class_names(num_classes: int | None, labels: Sequence[str] | str | Path | None = None) -> list[str] | None:
    """The class names an export records: ``labels`` (names, or a label file in any format
    :func:`res2net.data.labels.load_labels` reads), else ImageNet-1k's for 1000 classes, else none."""
    from res2net.data.labels import load_labels

    if labels is None:
        return load_labels() if num_classes == 1000 else None
    names = load_labels(labels) if isinstance(labels, (str, Path)) else [str(n) for n in labels]
    if num_classes and len(names) != num_classes:
        raise ExportError(f"{len(names)} label names for a {num_classes}-class model")
    return names


def output_path(path: str | Path, suffix: str) -> Path:
    """``path`` with ``suffix`` (added if missing), its parent directory created."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        path = path.with_name(path.name + suffix) if path.suffix == "" else path
    if path.suffix.lower() != suffix:
        raise ExportError(f"{path}: expected a {suffix} file name")
    if path.exists() and path.is_dir():
        raise ExportError(f"{path} is a directory; give a file name ending in {suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_NOISY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._export", "openvino")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow the exporters' progress prints and INFO logs (prints kept at debug level) during an export."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if buf.getvalue().strip():
            log.debug("%s", buf.getvalue().strip())


def convert_quietly(convert: Callable[[], T], what: str, name: str) -> T:
    """``convert()`` under :func:`quiet`; any failure becomes ``ExportError("{what} of {name} failed: ...")``.

    The converters (ONNX, OpenVINO, ExecuTorch) print progress and raise errors that name neither the
    step nor the model; this is the one place that silences the former and labels the latter.
    """
    try:
        with quiet():
            return convert()
    except Exception as e:
        raise ExportError(f"{what} of {name} failed: {e}") from e


def convert_program(
    model: nn.Module,
    h: int,
    w: int,
    convert: Callable[[torch.export.ExportedProgram], T],
    *,
    what: str,
    fmt: str,
    softmax: bool,
    dynamic_batch: bool,
    batch_size: int = 1,
    transform: EvalTransform | None = None,
    labels: Sequence[str] | str | Path | None = None,
) -> tuple[T, dict[str, str]]:
    """Capture ``model`` in eval mode (:func:`export_program`), ``convert`` the program
    (:func:`convert_quietly`, the model named by its class) and describe it (:func:`metadata`, with
    ``transform`` and ``labels``).

    The ONNX and OpenVINO exports are this same sequence with another converter; they then rename
    tensors and attach the metadata in their own format. Returns ``(converted, metadata)``.
    """
    with eval_mode(model):
        program = export_program(model, h, w, softmax=softmax, dynamic_batch=dynamic_batch, batch_size=batch_size)
        converted = convert_quietly(lambda: convert(program), what, type(model).__name__)
        meta = metadata(
            model, h, w, softmax=softmax, dynamic_batch=dynamic_batch, fmt=fmt, batch_size=batch_size,
            transform=transform, labels=labels,
        )  # fmt: skip
    return converted, meta
