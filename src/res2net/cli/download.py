"""``res2net download``: fetch and verify official weights into the cache (``$RES2NET_HOME/weights``)."""

from __future__ import annotations

import argparse

from res2net.models.zoo import list_models
from res2net.weights.hub import download_weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="model names, or 'all'")
    parser.add_argument("--mirror", help="base URL replacing the official host (or set RES2NET_MIRROR)")
    parser.add_argument("--force", action="store_true", help="download again even if cached")


def main(args: argparse.Namespace) -> int:
    names = list_models(pretrained=True) if args.models == ["all"] else args.models
    for name in names:
        print(f"{name}: {download_weights(name, mirror=args.mirror, force=args.force)}")
    return 0
