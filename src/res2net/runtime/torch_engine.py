"""PyTorch eager, made fast: BatchNorm folded into the convolutions, channels_last, optional bf16.

Folding removes a third of the model's kernels (every conv is followed by a BN) and lets oneDNN use
its fused conv+bias(+ReLU) path; channels_last is oneDNN's and cuDNN's preferred layout. bf16 casts
the folded weights and the input to ``bfloat16`` (native on AVX512-BF16 / AMX CPUs and on GPUs).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from res2net.cpu import has_bf16
from res2net.models.fuse import fold_batchnorm
from res2net.runtime.base import BuildContext, Engine


class TorchEngine(Engine):
    """PyTorch eager with BN folded, channels_last; fp32 or bf16, on CPU or CUDA."""

    name = "torch"
    precisions = ("fp32", "bf16")

    @classmethod
    def unavailable_reason(cls, precision: str, device: str) -> str | None:
        if precision not in cls.precisions:
            return f"no {precision} path (int8 runs on onnxruntime or openvino)"
        if device.startswith("cuda") and not torch.cuda.is_available():
            return "CUDA is not available"
        if precision == "bf16" and device == "cpu" and not has_bf16():
            return "this CPU has no native bf16 (AVX512-BF16/AMX)"
        return None

    def __init__(self, ctx: BuildContext, precision: str = "fp32") -> None:
        super().__init__(ctx, precision)
        if ctx.threads and ctx.device == "cpu":
            torch.set_num_threads(ctx.threads)
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = fold_batchnorm(copy.deepcopy(ctx.model_factory()).eval())
        self.model = model.to(ctx.device, dtype=self.dtype, memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        if self.device.startswith("cuda") and self.precision == "fp32":
            # cuDNN may run fp32 convolutions in TF32 (10-bit mantissa) by default: fp32 must mean fp32.
            with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False):
                return self.model(x).float().cpu().numpy()
        return self.model(x).float().cpu().numpy()
