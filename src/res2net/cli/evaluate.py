"""``res2net eval``: top-1 / top-5 on a list file or image folder, with PaddleClas's eval preprocessing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from res2net.factory import create_model
from res2net.training.config import ConfigError, load_config
from res2net.training.distributed import cleanup, init_distributed
from res2net.training.evaluate import build_eval_loader, evaluate


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


def load_model(args, cfg: dict) -> nn.Module:
    """``create_model`` with the requested weights (a ``last.pt`` training checkpoint works too)."""
    name = args.model or cfg["Arch"]["name"]
    num_classes = args.num_classes or cfg["Arch"]["num_classes"]
    pretrained = True if args.pretrained else (args.weights or False)
    return create_model(name, pretrained=pretrained, num_classes=num_classes)


def main(args: argparse.Namespace) -> int:
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
        model = load_model(args, cfg).to(info.device)
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
