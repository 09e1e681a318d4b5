"""PyTorch eager, made fast: BatchNorm folded into the convolutions, channels_last, optional bf16.

Folding removes a third of the model's kernels (every conv is followed by a BN) and lets oneDNN use
its fused conv+bias(+ReLU) path; channels_last is oneDNN's and cuDNN's preferred layout. bf16 casts
the folded weights and the input to ``bfloat16`` (native on AVX512-BF16 / AMX CPUs and on GPUs).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from res2net.cpu import has_bf16
from res2net.engines.base import BuildContext, Engine


def _fold_pair(owner: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(owner, conv_name, None), getattr(owner, bn_name, None)
    conv_owner, conv_attr = owner, conv_name
    if isinstance(conv, nn.Sequential) and len(conv) and isinstance(conv[-1], nn.Conv2d):
        conv_owner, conv_attr, conv = conv, str(len(conv) - 1), conv[-1]  # deep stem: (conv1[-1], bn1)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(conv_owner, conv_attr, fuse_conv_bn_eval(conv, bn))
        setattr(owner, bn_name, nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d into that conv, in place.

    Handles adjacent ``(Conv2d, BatchNorm2d)`` in any ``nn.Sequential`` (stems, shortcuts), the
    ``conv1/bn1``, ``conv3/bn3`` attribute pairs and the ``convs[i]/bns[i]`` lists of Res2Net blocks.
    Returns ``model``. Numerically equal to the unfolded model up to float rounding (~1e-6 relative).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model (BN running statistics are folded)")
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        for conv_name, bn_name in (("conv1", "bn1"), ("conv3", "bn3")):
            _fold_pair(module, conv_name, bn_name)
        convs, bns = getattr(module, "convs", None), getattr(module, "bns", None)
        if isinstance(convs, nn.ModuleList) and isinstance(bns, nn.ModuleList) and len(convs) == len(bns):
            for i, (conv, bn) in enumerate(zip(convs, bns)):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    convs[i] = fuse_conv_bn_eval(conv, bn)
                    bns[i] = nn.Identity()
    return model


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
