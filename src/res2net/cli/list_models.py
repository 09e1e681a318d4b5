"""``res2net list``: the registered models and their weights."""

from __future__ import annotations

import argparse
import json

from res2net.models.zoo import get_card, list_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="glob filter, e.g. '*vd*'")
    parser.add_argument("--family", choices=("paddleclas", "timm"))
    parser.add_argument("--pretrained", action="store_true", help="only models with official weights")
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern, args.family, args.pretrained):
        card = get_card(name)
        if args.json:
            print(json.dumps({"name": name, "family": card.family, "top1": card.top1, "url": card.url}))
        else:
            top1 = f"{card.top1:.3f}" if card.top1 is not None else "  -  "
            print(f"{name:28s} {card.family:10s} top1 {top1}  {card.description}")
    return 0
