"""The ``res2net`` command. Each subcommand lives in the module that does the work.

``COMMANDS`` maps a subcommand to ``"module"`` or ``"module:Object"``; that module (or object)
provides ``add_arguments(parser)`` and ``main(args) -> int``. It is imported only when its
subcommand runs, so ``res2net --help`` stays fast and one broken extra cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("res2net.weights.commands:ListModels", "list registered models and their weights"),
    "stats": ("res2net.stats", "params / FLOPs / accuracy table of the models"),
    "convert": ("res2net.weights.commands:Convert", "convert PaddleClas/timm/authors' weights to .safetensors"),
    "download": ("res2net.weights.commands:Download", "download and verify official weights into the cache"),
    "quantize-report": ("res2net.export.report", "int8 vs fp32 per engine: size, latency, logit error, accuracy"),
    "train": ("res2net.engine.train", "train / fine-tune / distill (PaddleClas recipe; torchrun for many processes)"),
    "eval": ("res2net.engine.evaluate", "top-1/top-5 on a list file or image folder (PaddleClas eval preprocessing)"),
    "export": ("res2net.export.cli", "export to ONNX / OpenVINO / pt2 (AOTInductor) / TorchScript / Triton, verified"),
    "serve": ("res2net.serve.cli", "inference server: Open Inference Protocol REST + gRPC, batching, web demo"),
    "benchmark": ("res2net.benchmark.cli", "latency and throughput tables (and charts) on this machine, with anchors"),
    "predict": ("res2net.predict", "classify images: top-k ImageNet classes with the fastest checked engine"),
}


def _command(name: str):
    module, _, attr = COMMANDS[name][0].partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    from res2net import __version__

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
    try:
        return _run(argv, command)
    except ModuleNotFoundError as e:  # an optional dependency: name the extra that provides it
        if e.name is None or e.name.split(".")[0] == "res2net":
            raise
        from res2net.errors import MissingExtraError

        print(f"error: {MissingExtraError(e.name, f'res2net {command}')}", file=sys.stderr)
        return 1


def _run(argv: list[str], command: str | None) -> int:
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.captureWarnings(True)  # library warnings as log lines, not echoed source lines
    if args.command is None:
        parser.print_help()
        return 2
    from res2net.errors import Res2NetError

    try:
        return int(_command(args.command).main(args) or 0)
    except Res2NetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
