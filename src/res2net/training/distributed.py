"""Multi-process / multi-node helpers on PyTorch's own engine (``torchrun`` + ``torch.distributed``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; we only read
them. Backend: NCCL when the device is CUDA, gloo on CPU. Rank 0 alone writes checkpoints and logs.

``SyncBatchNorm`` in PyTorch only runs on accelerators; :class:`CpuSyncBatchNorm` computes the same
global-batch statistics with differentiable ``all_reduce`` calls, so SyncBN also works on a gloo/CPU
run (and makes a 2-process run numerically equivalent to one process with the global batch).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from res2net.training.config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's CUDA device if there is one, else CPU."""
    pref = str(pref or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"Global.device={pref}: CUDA is not available on this machine")
        if pref == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(pref)
    if pref != "cpu":
        raise ConfigError(f"Global.device={pref!r}: expected auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` set up (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        log.info("rank %d/%d (local %d) on %s, backend %s", rank, world, local_rank, device, backend)
    return DistInfo(rank, world, local_rank, device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place); identity for a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order (on every rank); ``[obj]`` for a single process."""
    if dist.is_available() and dist.is_initialized():
        box: list = [None] * dist.get_world_size()
        dist.all_gather_object(box, obj)
        return box
    return [obj]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce: the gradient of a global sum w.r.t. each process's input is the global
    sum of the incoming gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch across all processes.

    Mean and (biased) variance come from all-reduced sums — two passes, ``sum(x)`` then
    ``sum((x - mean)^2)``, so no precision is lost to ``E[x^2] - mean^2`` cancellation — through a
    differentiable all-reduce, so autograd produces the exact SyncBN gradient (what ``nn.SyncBatchNorm``
    computes with fused CUDA kernels). Running statistics use the unbiased global variance, as
    ``nn.SyncBatchNorm`` does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        xf = x.float()
        count = torch.tensor([float(x.numel() // x.shape[1])])
        total = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = xf - mean[None, :, None, None]
        var = _AllReduceSum.apply((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=m)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        y = centred * scale[None, :, None, None]
        if self.bias is not None:
            y = y + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``nn.SyncBatchNorm`` on CUDA, :class:`CpuSyncBatchNorm` elsewhere (same parameters and buffers)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CpuSyncBatchNorm):
        out = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        with torch.no_grad():
            if module.affine:
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
