"""Top-1 / top-5 evaluation with PaddleClas's exact eval preprocessing, on one process or many.

Preprocessing is :class:`res2net.data.transforms.EvalTransform` (cv2 bilinear resize of the short side
to 256 with rounding, centre crop 224 with floor offsets, RGB, ImageNet mean/std) — what PaddleClas's
``Eval`` section does (paddleclas.md §4.1). Unreadable images are logged, skipped and counted.

    res2net eval -c CONFIG --weights best.safetensors
    res2net eval --model Res2Net50_vd_26w_4s_ssld --pretrained --data /data/ILSVRC2012 --list val_list.txt
    torchrun --nproc_per_node 4 -m res2net eval -c CONFIG --weights W      # each process a shard
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch
from torch import nn

from res2net.data.datasets import ImageDataset, collate, read_list_file, scan_image_folder
from res2net.data.transforms import EvalTransform
from res2net.training.distributed import all_reduce_sum

log = logging.getLogger(__name__)


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {none, bf16, fp16}."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def build_eval_loader(section: dict, dist_info, *, pin_memory: bool = False):
    """The ``DataLoader.Eval`` section -> a loader over this process's shard (no padding, no repeats)."""
    transform = EvalTransform(
        resize_short=section["resize_short"],
        crop_size=section["crop_size"],
        interpolation=section["interpolation"],
        mean=tuple(section["mean"]),
        std=tuple(section["std"]),
    )
    if section.get("list"):
        samples, classes = read_list_file(section["list"], section["root"]), None
    else:
        samples, classes = scan_image_folder(section["root"])
    dataset = ImageDataset(samples, transform, classes=classes, on_error="drop")
    shard = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, shard),
        batch_size=section["batch_size"],
        shuffle=False,
        num_workers=section["num_workers"],
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    *,
    amp: str = "none",
    channels_last: bool = False,
    num_classes: int | None = None,
) -> dict:
    """Top-1/top-5 accuracy and mean cross-entropy, summed over all processes of a distributed run."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64)  # correct1, correct5, loss sum, count, skipped
    t0 = time.perf_counter()
    for batch in loader:
        totals[4] += batch.skipped
        if batch.images.numel() == 0:
            continue
        images = batch.images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top.eq(labels[:, None])
        totals[0] += hit[:, :1].sum().item()
        totals[1] += hit.any(1).sum().item()
        totals[2] += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        totals[3] += labels.numel()
    totals = all_reduce_sum(totals.to(device)).cpu() if device.type == "cuda" else all_reduce_sum(totals)
    model.train(was_training)
    n = max(totals[3].item(), 1.0)
    return {
        "top1": totals[0].item() / n,
        "top5": totals[1].item() / n,
        "loss": totals[2].item() / n,
        "count": int(totals[3].item()),
        "skipped": int(totals[4].item()),
        "seconds": time.perf_counter() - t0,
    }
