"""Triton Inference Server model repository: ``DIR/<name>/config.pbtxt`` + ``DIR/<name>/1/model.onnx``.

The model runs on Triton's ONNX Runtime backend with **dynamic batching** on: requests of one image
each are merged server-side into batches (preferring 4 and 8, the sizes the seed benchmarks), which
is where a GPU's throughput comes from. The ONNX file is :func:`res2net.export.export_onnx` with a
dynamic batch, so ``max_batch_size`` only bounds what Triton assembles. With 1000 classes the
ImageNet label list is written as ``labels.txt`` and attached to the output, so Triton's
classification extension (``class_count`` in a request) returns ``"score:index:label"`` strings.

Layout written (``DIR`` may already hold other models; this model's directory is replaced)::

    DIR/
      Res2Net50_vd_26w_4s/
        config.pbtxt
        labels.txt        (1000 classes, or the file given)
        1/model.onnx
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from torch import nn

from res2net.export._common import INPUT_NAME, ExportError, input_hw, log, model_name, output_name
from res2net.export.onnx import export_onnx

INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")


def imagenet_labels() -> list[str] | None:
    """The ImageNet-1k class names PaddleClas prints (first synonym), if the package ships the list."""
    from importlib import resources

    try:
        text = resources.files("res2net").joinpath("assets/imagenet1k_label_list.txt").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return None
    labels = [line.split(" ", 1)[1].split(",")[0].strip() for line in text.splitlines() if line.strip()]
    return labels if len(labels) == 1000 else None


def triton_config(
    name: str,
    *,
    input_hw: tuple[int, int],
    in_chans: int = 3,
    num_classes: int,
    output: str,
    max_batch_size: int = 64,
    preferred_batch_sizes: tuple[int, ...] = (4, 8),
    max_queue_delay_us: int = 100,
    instance_kind: str | None = None,
    instance_count: int = 1,
    label_filename: str | None = None,
) -> str:
    """The text of ``config.pbtxt`` (protobuf text format of Triton's ``ModelConfig``)."""
    h, w = input_hw
    preferred = sorted(b for b in preferred_batch_sizes if b <= max_batch_size)
    lines = [
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        "  {",
        f'    name: "{INPUT_NAME}"',
        "    data_type: TYPE_FP32",
        "    format: FORMAT_NCHW",
        f"    dims: [ {in_chans}, {h}, {w} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{output}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {num_classes} ]",
        *([f'    label_filename: "{label_filename}"'] if label_filename else []),
        "  }",
        "]",
        "dynamic_batching {",
        *([f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]"] if preferred else []),
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
    ]
    if instance_kind is not None:
        lines += ["instance_group [", "  {", f"    count: {instance_count}", f"    kind: {instance_kind}", "  }", "]"]
    return "\n".join(lines) + "\n"


def export_triton(
    model: nn.Module,
    directory: str | Path,
    *,
    name: str | None = None,
    softmax: bool = False,
    input_size: int | tuple[int, int] = 224,
    opset: int = 18,
    max_batch_size: int = 64,
    preferred_batch_sizes: tuple[int, ...] = (4, 8),
    max_queue_delay_us: int = 100,
    instance_kind: str | None = None,
    instance_count: int = 1,
    labels: list[str] | str | Path | None = None,
    version: int = 1,
) -> Path:
    """Write a Triton model (ONNX + ``config.pbtxt``) into the repository ``directory``; return the model dir.

    Args:
        name: the model's name in Triton (default: the model's registry name).
        max_batch_size: the largest batch the dynamic batcher assembles (the ONNX batch is dynamic).
        preferred_batch_sizes / max_queue_delay_us: dynamic batcher settings.
        instance_kind: ``KIND_CPU`` / ``KIND_GPU`` / ``KIND_AUTO``; ``None`` leaves Triton's default
            (one instance per GPU, or on CPU if there is none).
        labels: class names (list or a one-per-line file); default ImageNet names for 1000 classes.
    """
    name = name or model_name(model)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ExportError(f"Triton model name {name!r}: use letters, digits, '_', '.', '-'")
    if max_batch_size < 1:
        raise ExportError(f"max_batch_size must be >= 1 (dynamic batching), got {max_batch_size}")
    if instance_kind is not None and instance_kind not in INSTANCE_KINDS:
        raise ExportError(f"instance kind {instance_kind!r}: choose one of {', '.join(INSTANCE_KINDS)}")
    h, w = input_hw(input_size)
    num_classes = int(getattr(model, "num_classes", 0))
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        if not path.is_file():
            raise ExportError(f"{path}: no such labels file")
        labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif labels is None and num_classes == 1000:
        labels = imagenet_labels()
    if labels is not None and len(labels) != num_classes:
        raise ExportError(f"{len(labels)} labels for a model with {num_classes} classes")

    repo = Path(directory)
    if repo.exists() and not repo.is_dir():
        raise ExportError(f"{repo} is a file; --output must be a (model repository) directory for Triton")
    model_dir = repo / name
    staging = repo / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / str(version)).mkdir(parents=True)
    export_onnx(
        model,
        staging / str(version) / "model.onnx",
        dynamic_batch=True,
        softmax=softmax,
        opset=opset,
        input_size=(h, w),
    )
    if labels is not None:
        (staging / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    config = triton_config(
        name,
        input_hw=(h, w),
        in_chans=getattr(getattr(model, "cfg", None), "in_chans", 3),
        num_classes=num_classes,
        output=output_name(softmax),
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_delay_us=max_queue_delay_us,
        instance_kind=instance_kind,
        instance_count=instance_count,
        label_filename="labels.txt" if labels is not None else None,
    )
    (staging / "config.pbtxt").write_text(config, encoding="utf-8")
    shutil.rmtree(model_dir, ignore_errors=True)  # replace only once the new one is complete
    staging.rename(model_dir)
    log.info("wrote Triton model %s (ONNX Runtime backend, dynamic batching, max batch %d)", model_dir, max_batch_size)
    return model_dir
