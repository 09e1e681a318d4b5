"""``res2net stats``: the params / FLOPs / accuracy table of the models."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from res2net.models.zoo import list_models
from res2net.stats import SEED_MODELS, SWAP_NOTE, markdown_table, model_stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", help="model names (default: the seed's eight)")
    parser.add_argument("--all", action="store_true", help="every registered model")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a markdown table")


def main(args: argparse.Namespace) -> int:
    names = args.models or (list_models() if args.all else list(SEED_MODELS))
    rows = [model_stats(n, args.image_size) for n in names]
    if args.json:
        for r in rows:
            print(json.dumps(asdict(r)))
    else:
        print(markdown_table(rows))
        print()
        print(SWAP_NOTE)
    return 0
