"""The ``res2net`` command: one module per subcommand, each the only place its arguments are parsed.

``COMMANDS`` maps a subcommand to its module in this package; every such module provides
``add_arguments(parser)`` (all of the subcommand's flags, in one place) and ``main(args) -> int``.
It is imported only when its subcommand runs, so ``res2net --help`` stays fast and one broken extra cannot
break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from res2net._version import __version__
from res2net.errors import Res2NetError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("res2net.cli.list_models", "list registered models and their weights"),
    "stats": ("res2net.cli.stats", "params / FLOPs / accuracy table of the models"),
    "convert": ("res2net.cli.convert", "convert PaddleClas/timm/authors' weights to .safetensors"),
    "download": ("res2net.cli.download", "download and verify official weights into the cache"),
    "quantize-report": ("res2net.cli.quantize_report", "int8 vs fp32 per engine: size, latency, logit error, accuracy"),
    "train": ("res2net.cli.train", "train / fine-tune / distill (PaddleClas recipe; torchrun for many processes)"),
    "eval": ("res2net.cli.evaluate", "top-1/top-5 on a list file or image folder (PaddleClas eval preprocessing)"),
    "export": ("res2net.cli.export", "export to ONNX / OpenVINO / pt2 (AOTInductor) / TorchScript / Triton, verified"),
    "serve": ("res2net.cli.serve", "inference server: Open Inference Protocol REST + gRPC, batching, web demo"),
    "benchmark": ("res2net.cli.benchmark", "latency and throughput tables (and charts) on this machine, with anchors"),
    "predict": ("res2net.cli.predict", "classify images: top-k ImageNet classes with the fastest checked engine"),
}


def _command(name: str):
    # Start-up time: a subcommand's module (and its heavy dependencies) is imported only when it runs.
    return importlib.import_module(COMMANDS[name][0])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="res2net", description="Res2Net models: predict, train, export, serve.")
    parser.add_argument("--version", action="version", version=f"res2net {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _command(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        parser.print_help()
        return 2

    try:
        return int(_command(args.command).main(args) or 0)
    except Res2NetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
