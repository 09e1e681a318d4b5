"""Weight-related subcommands: ``list``, ``convert``, ``download``."""

from __future__ import annotations

import argparse
import json

from res2net.models.zoo import get_card, list_models


class ListModels:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pattern", nargs="?", help="glob filter, e.g. '*vd*'")
        parser.add_argument("--family", choices=("paddleclas", "timm"))
        parser.add_argument("--pretrained", action="store_true", help="only models with official weights")
        parser.add_argument("--json", action="store_true")

    @staticmethod
    def main(args: argparse.Namespace) -> int:
        for name in list_models(args.pattern, args.family, args.pretrained):
            card = get_card(name)
            if args.json:
                print(json.dumps({"name": name, "family": card.family, "top1": card.top1, "url": card.url}))
            else:
                top1 = f"{card.top1:.3f}" if card.top1 is not None else "  -  "
                print(f"{name:28s} {card.family:10s} top1 {top1}  {card.description}")
        return 0


class Convert:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("src", help=".pdparams / .pdiparams / .pth / .pt / .safetensors")
        parser.add_argument("dst", help="output .safetensors")
        parser.add_argument("--model", help="model name (guessed from the file when omitted)")

    @staticmethod
    def main(args: argparse.Namespace) -> int:
        from res2net.weights.load import convert_to_safetensors

        meta = convert_to_safetensors(args.src, args.dst, args.model)
        print(
            f"wrote {args.dst}: model {meta['model']}, origin {meta['origin']}, source sha256 {meta['source_sha256']}"
        )
        return 0


class Download:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("models", nargs="+", help="model names, or 'all'")
        parser.add_argument("--mirror", help="base URL replacing the official host (or set RES2NET_MIRROR)")
        parser.add_argument("--force", action="store_true", help="download again even if cached")

    @staticmethod
    def main(args: argparse.Namespace) -> int:
        from res2net.weights.hub import download_weights

        names = list_models(pretrained=True) if args.models == ["all"] else args.models
        for name in names:
            print(f"{name}: {download_weights(name, mirror=args.mirror, force=args.force)}")
        return 0
