"""``res2net train``: train / fine-tune / distill from a config (see docs/training.md)."""

from __future__ import annotations

import argparse

from res2net.training.config import load_config
from res2net.training.train import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="config YAML (ours or PaddleClas's) or a bundled name")
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="e.g. -o Global.epochs=10"
    )
    parser.add_argument("--output-dir", help="same as -o Global.output_dir=...")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", metavar="CHECKPOINT", help="resume from this last.pt (default: auto from output dir)"
    )
    group.add_argument(
        "--no-resume", action="store_true", help="start from scratch even if output dir has a checkpoint"
    )


def main(args: argparse.Namespace) -> int:
    overrides = list(args.override)
    if args.output_dir:
        overrides.append(f"Global.output_dir={args.output_dir}")
    if args.resume:
        overrides.append(f"Global.resume={args.resume}")
    if args.no_resume:
        overrides.append("Global.resume=never")
    train(load_config(args.config, overrides))
    return 0
