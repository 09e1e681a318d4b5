"""The ``paddleclas`` command's flags and output lines for ``res2net predict``.

PaddleClas users come with habits: ``paddleclas --model_name=ResNet50 --infer_imgs=img.jpg``
(PaddleClas's ``docs/en/inference_deployment/whl_deploy_en.md``). ``res2net predict`` accepts
those flags as they are; when any is used, results are printed the way ``paddleclas`` prints
them (``class_ids: [...], scores: [...], label_names: [...], filename: ...`` then
``Predict complete!``). Flags without an equivalent here are accepted with a note of what they
map to, instead of an "unrecognized arguments" error.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("res2net.predict")


def str2bool(text: str) -> bool:
    """PaddleClas's boolean flags: ``--use_gpu=False``, ``--use_gpu true``, ``--use_gpu 0``."""
    value = text.strip().lower()
    if value in ("true", "t", "yes", "y", "1"):
        return True
    if value in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


class _PaddleClasFlag(argparse.Action):
    """Stores into our own destination and remembers that a PaddleClas spelling was used."""

    def __call__(self, parser, namespace, values, option_string=None):
        if self.dest == "infer_imgs":
            values = [*(getattr(namespace, "infer_imgs", None) or []), values]
        setattr(namespace, self.dest, values)
        namespace.paddleclas_style = True


def add_paddleclas_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``paddleclas`` command's flags, each stored where our own flag stores it."""
    g = parser.add_argument_group(
        "PaddleClas's paddleclas command flags (accepted as they are; results are then printed in its format)"
    )

    def flag(name: str, dest: str, help: str, **kw) -> None:
        g.add_argument(name, dest=dest, action=_PaddleClasFlag, help=help, **kw)

    flag("--model_name", "model", "= --model")
    flag("--infer_imgs", "infer_imgs", "an image file, folder or glob (= the IMAGES arguments); may repeat")
    flag("--batch_size", "batch_size", "= --batch-size", type=int)
    flag("--class_id_map_file", "labels", "= --labels (PaddleClas's '<id> <name>' lines)")
    flag("--resize_short", "resize_short", "= --resize-short", type=int)
    flag("--crop_size", "crop_size", "= --crop-size", type=int)
    flag("--cpu_num_threads", "threads", "= --threads", type=int)
    bool_kw = dict(nargs="?", const=True, type=str2bool, metavar="BOOL")
    flag("--use_gpu", "use_gpu", "True: --device cuda (when CUDA is available); False: --device cpu", **bool_kw)
    flag(
        "--enable_mkldnn",
        "enable_mkldnn",
        "accepted: the CPU engines use oneDNN already; choose with --engine",
        **bool_kw,
    )
    flag(
        "--use_tensorrt",
        "use_tensorrt",
        "accepted: no TensorRT here; --engine auto picks the fastest checked one",
        **bool_kw,
    )
    parser.set_defaults(paddleclas_style=False, infer_imgs=None, use_gpu=None, enable_mkldnn=None, use_tensorrt=None)


def apply_paddleclas_arguments(args: argparse.Namespace) -> list[str]:
    """Fold the PaddleClas-only flags into ours; return (and log) a note per flag that maps loosely."""
    notes: list[str] = []
    if args.infer_imgs:
        args.images = [*(args.images or []), *args.infer_imgs]
    if args.use_gpu is not None:
        import torch

        if args.use_gpu and not torch.cuda.is_available():
            notes.append("--use_gpu=True: no CUDA device here, running on the CPU")
            args.device = "cpu"
        else:
            args.device = "cuda" if args.use_gpu else "cpu"
            notes.append(f"--use_gpu={args.use_gpu} -> --device {args.device}")
    if args.enable_mkldnn is not None:
        notes.append(f"--enable_mkldnn={args.enable_mkldnn}: no effect; the engine is --engine {args.engine}")
    if args.use_tensorrt:
        notes.append(f"--use_tensorrt: no TensorRT here; using --engine {args.engine}")
    for note in notes:
        log.info("%s", note)
    return notes


def format_paddleclas(result: dict) -> str:
    """One result as the ``paddleclas`` command prints it (scores rounded to 5 decimals, as it does)."""
    scores = [round(float(s), 5) for s in result["scores"]]
    return (
        f"class_ids: {list(result['class_ids'])}, scores: {scores}, "
        f"label_names: {list(result['label_names'])}, filename: {result['filename']}"
    )


DONE_LINE = "Predict complete!"
