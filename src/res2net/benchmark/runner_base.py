"""What every benchmark runner shares: the interface, the model-only input and the torch precision checks.

Apart from :mod:`res2net.benchmark.runners` so that the anchor runners (:mod:`res2net.benchmark.timm_anchor`)
build on it and the runner table can import them without a cycle.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net._paths import state_digest
from res2net.benchmark.timing import cuda_sync, time_calls
from res2net.cpu import has_bf16
from res2net.errors import Res2NetError
from res2net.export.verify import compare_outputs, default_images, preprocess_images
from res2net.runtime.cache import ArtifactKey


def artifact_key(model: nn.Module, fmt: str, precision: str, input_size: int, device_type: str) -> ArtifactKey:
    """The cache key of a benchmark runner's exported file: model, config, weights, format, precision, size."""
    card = getattr(model, "card", None)
    cfg_digest = hashlib.sha256(repr(getattr(model, "cfg", "")).encode()).hexdigest()[:8]
    model_id = f"{getattr(card, 'name', type(model).__name__)}-{getattr(model, 'num_classes', 0)}c-{cfg_digest}"
    return ArtifactKey(model_id, state_digest(model), fmt, precision, input_size, device_type)


TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Unsupported(Res2NetError):
    """This engine cannot run this precision on this device here (the reason is reported, not fatal)."""


def random_batch(batch_size: int, input_size: int, seed: int = 0) -> np.ndarray:
    """The model-only input: standard-normal float32 NCHW, as the seed's benchmark used (random tensor)."""
    return np.random.default_rng(seed).standard_normal((batch_size, 3, input_size, input_size), dtype=np.float32)


class Runner(ABC):
    """One engine at one precision, loaded and ready: ``time`` model-only calls, optionally ``e2e`` files."""

    engine: str
    precision: str
    supports_e2e = False

    def __init__(self, device: str) -> None:
        self.device = device
        self.info: dict = {}

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"

    @abstractmethod
    def time(self, batch_size: int, n: int) -> list[float]:
        """``n`` latency samples (seconds) of one batch of ``batch_size`` (the first calls warm up)."""

    def e2e(self, files: list[Path], batch_size: int) -> float:
        """Seconds for one pass over ``files``: decode, preprocess, infer, top-5."""
        raise Unsupported(f"{self.label}: no end-to-end path")

    def close(self) -> None:  # noqa: B027 - most runners hold nothing that needs closing
        """Release what the runner holds (the Paddle worker process)."""


def check_torch_precision(engine: str, precision: str, device: str) -> None:
    if precision not in TORCH_DTYPES:
        raise Unsupported(f"{engine} {precision}: no {precision} path (int8 runs on onnxruntime / openvino)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Unsupported(f"{engine}: CUDA is not available")
    if device == "cpu" and precision == "fp16":
        raise Unsupported(f"{engine} fp16: CPU fp16 convolutions are emulated (slower than fp32); GPU only")
    if device == "cpu" and precision == "bf16" and not has_bf16():
        raise Unsupported(f"{engine} bf16: this CPU has no native bf16 (AVX512-BF16/AMX)")


class TensorRunner(Runner):
    """A callable on torch tensors (input resident on the device, output left there, device synced)."""

    def __init__(self, device: str, precision: str, input_size: int) -> None:
        super().__init__(device)
        self.precision = precision
        self.dtype = TORCH_DTYPES[precision]
        self.input_size = input_size
        self.sync = cuda_sync(device)
        self._inputs: dict[int, torch.Tensor] = {}
        self.fn = None

    def _input(self, batch_size: int) -> torch.Tensor:
        if batch_size not in self._inputs:
            x = torch.from_numpy(random_batch(batch_size, self.input_size))
            self._inputs[batch_size] = x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return self._inputs[batch_size]

    def time(self, batch_size: int, n: int) -> list[float]:
        x = self._input(batch_size)
        with torch.inference_mode():
            return time_calls(lambda: self.fn(x), n, self.sync)


def accuracy_vs_eager(model: nn.Module, fn, dtype: torch.dtype, device: str) -> dict | None:
    """Outputs of ``fn`` vs CPU eager fp32 on the packaged photos: max abs diff, rel. error, top-1 agreement."""
    images = default_images()
    if not images:
        return None
    size = getattr(getattr(model, "card", None), "preprocess", None)
    crop = size.crop_size if size is not None else 224
    x = preprocess_images(images, model, crop, crop)
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x)).float().numpy()
        xd = torch.from_numpy(x).to(device, dtype).contiguous(memory_format=torch.channels_last)
        out = fn(xd).float().cpu().numpy()
    m = compare_outputs(out, ref)
    return {"images": len(x), **{k: m[k] for k in ("max_abs_diff", "rel_error", "top1_agreement")}}


def fp32_means_fp32(device: str) -> None:
    """No TF32 on CUDA (PyTorch's cuDNN default allows it for convolutions)."""
    if device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
