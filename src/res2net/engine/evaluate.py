"""Top-1 / top-5 evaluation with PaddleClas's exact eval preprocessing, on one process or many.

Preprocessing is :class:`res2net.data.transforms.EvalTransform` (cv2 bilinear resize of the short side
to 256 with rounding, centre crop 224 with floor offsets, RGB, ImageNet mean/std) — what PaddleClas's
``Eval`` section does (ppcls/configs/ImageNet/Res2Net/*.yaml in PaddleClas). Unreadable images are
logged, skipped and counted.

    res2net eval -c CONFIG --weights best.safetensors
    res2net eval --model Res2Net50_vd_26w_4s_ssld --pretrained --data /data/ILSVRC2012 --list val_list.txt
    torchrun --nproc_per_node 4 -m res2net eval -c CONFIG --weights W      # each process a shard
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {none, bf16, fp16}."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def build_eval_loader(section: dict, dist_info, *, pin_memory: bool = False):
    """The ``DataLoader.Eval`` section -> a loader over this process's shard (no padding, no repeats)."""
    from res2net.data.datasets import ImageDataset, collate, read_list_file, scan_image_folder
    from res2net.data.transforms import EvalTransform

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
    from res2net.engine.distributed import all_reduce_sum

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


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="training config (YAML path or bundled name); its Eval section is used")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--weights", help="weights file (.safetensors/.pth/.pdparams or a last.pt checkpoint)")
    parser.add_argument("--model", help="model name (default: the config's Arch.name)")
    parser.add_argument("--pretrained", action="store_true", help="use the model's official weights")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the config's Arch.num_classes)")
    parser.add_argument("--data", help="image root (ImageFolder tree, or the root of --list paths)")
    parser.add_argument("--list", help="PaddleClas list file 'relative/path label' (paths relative to --data)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")


def _load_model(args, cfg: dict) -> nn.Module:
    """``create_model`` with the requested weights (a ``last.pt`` training checkpoint works too)."""
    import res2net

    name = args.model or cfg["Arch"]["name"]
    num_classes = args.num_classes or cfg["Arch"]["num_classes"]
    pretrained = True if args.pretrained else (args.weights or False)
    return res2net.create_model(name, pretrained=pretrained, num_classes=num_classes)


def main(args: argparse.Namespace) -> int:
    from res2net.engine.config import ConfigError, load_config
    from res2net.engine.distributed import cleanup, init_distributed

    cfg = load_config(args.config, args.override)
    ev = cfg["DataLoader"]["Eval"]
    if args.data:
        ev["root"], ev["list"] = args.data, args.list
    elif args.list:
        ev["root"], ev["list"] = str(Path(args.list).parent), args.list
    if args.batch_size:
        ev["batch_size"] = args.batch_size
    if args.workers is not None:
        ev["num_workers"] = args.workers
    if not (args.config or args.data or args.list):
        raise ConfigError("say what to evaluate on: -c CONFIG, or --data ROOT [--list FILE]")
    if not (args.weights or args.pretrained or cfg["Arch"]["pretrained"]):
        raise ConfigError("no weights: pass --weights FILE or --pretrained")
    if not args.weights and not args.pretrained:
        args.weights = cfg["Arch"]["pretrained"] if cfg["Arch"]["pretrained"] is not True else None
        args.pretrained = cfg["Arch"]["pretrained"] is True
    amp = args.amp or cfg["Global"]["amp"]
    info = init_distributed(args.device or cfg["Global"]["device"])
    try:
        model = _load_model(args, cfg).to(info.device)
        channels_last = bool(cfg["Global"]["channels_last"])
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        loader = build_eval_loader(ev, info, pin_memory=info.device.type == "cuda")
        result = evaluate(model, loader, info.device, amp=amp, channels_last=channels_last)
    finally:
        cleanup()
    if info.is_main:
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  loss {result['loss']:.4f}  "
                f"({result['count']} images, {result['skipped']} skipped, {result['seconds']:.1f} s)"
            )
    return 0
