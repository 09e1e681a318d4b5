"""``res2net convert``: PaddleClas / timm / authors' weights -> ``.safetensors`` with provenance metadata."""

from __future__ import annotations

import argparse

from res2net.weights.convert import convert_to_safetensors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help=".pdparams / .pdiparams / .pth / .pt / .safetensors")
    parser.add_argument("dst", help="output .safetensors")
    parser.add_argument("--model", help="model name (guessed from the file when omitted)")


def main(args: argparse.Namespace) -> int:
    meta = convert_to_safetensors(args.src, args.dst, args.model)
    print(f"wrote {args.dst}: model {meta['model']}, origin {meta['origin']}, source sha256 {meta['source_sha256']}")
    return 0
