"""``res2net export``: a named model (+ weights) -> a deployable file, optionally verified on real images.

    res2net export --model Res2Net50_vd_26w_4s --weights official --format onnx --output r2n50vd.onnx --verify

``--verify`` runs the written file with its own runtime next to PyTorch eager on real photographs and
exits non-zero if the outputs differ by more than ``--atol`` (1e-4 by default, fp32; for outputs
larger than 10 the tolerance grows in proportion, as float32 rounding does).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from res2net import export as ex
from res2net.cli._args import add_topk
from res2net.data.image import find_images
from res2net.export import ExportError, verify_export
from res2net.export.executorch import export_pte
from res2net.export.verify import FORMATS
from res2net.factory import create_model_for_weights

log = logging.getLogger("res2net.export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name (res2net list)")
    parser.add_argument(
        "--weights",
        help="weights file (.pdparams/.pdiparams/.pth/.safetensors), or 'official' for the released weights; "
        "without it the model is exported with random weights (a warning says so)",
    )
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the model's, 1000)")
    parser.add_argument(
        "--format",
        required=True,
        choices=(*FORMATS, "hf"),
        dest="fmt",
        help="onnx / openvino / pt2 (AOTInductor) / torchscript / triton (a model repository) / "
        "pte (ExecuTorch) / hf (a Hugging Face Hub directory: model.safetensors, config.json, README.md)",
    )
    parser.add_argument("--output", required=True, type=Path, help="file to write (Triton, hf: the directory to write)")
    parser.add_argument("--softmax", action="store_true", help="append a softmax (PaddleClas inference models do)")
    parser.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="symbolic batch dimension (default); --no-dynamic-batch fixes it to --batch-size",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="the batch size of a --no-dynamic-batch export")
    parser.add_argument("--input-size", type=int, default=224, help="square input size fixed in the graph")
    parser.add_argument(
        "--resize-short",
        type=int,
        help="preprocessing recorded in the file: resize the short side to this before the --input-size crop "
        "(default: the model card's, scaled with --input-size)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="class names recorded in the file ('name' or 'id name' per line; default: ImageNet's for 1000 classes)",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17)")
    parser.add_argument("--device", default="cpu", help="pt2: compile kernels for cpu or cuda")
    parser.add_argument("--verify", action="store_true", help="compare with PyTorch on real images; fail past --atol")
    parser.add_argument("--images", nargs="+", help="images/directories for --verify (default: the packaged photos)")
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="--verify tolerance on the max abs output difference, for outputs up to 10 (scaled beyond)",
    )
    add_topk(parser, "--verify: top-k agreement reported over this many classes (default 5)")
    triton = parser.add_argument_group("triton")
    triton.add_argument("--triton-name", help="model name in the repository (default: --model)")
    triton.add_argument("--max-batch-size", type=int, default=64, help="largest batch Triton's dynamic batcher forms")
    triton.add_argument(
        "--instance-kind",
        choices=("KIND_AUTO", "KIND_CPU", "KIND_GPU"),
        help="where Triton runs the model instances (default: Triton's choice)",
    )
    int8 = parser.add_argument_group("int8 (openvino: NNCF, as the Predictor's openvino int8; pte: PT2E + XNNPACK)")
    int8.add_argument("--quantize", choices=("int8",), help="post-training static int8 (openvino, pte)")
    int8.add_argument("--calibration", help="int8 calibration images: folder, list file or glob (default: samples)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")


def transform(args: argparse.Namespace, model):
    """The preprocessing to record: the card's, unless ``--resize-short`` is given (crop: ``--input-size``)."""
    if args.resize_short is None:
        return None
    from dataclasses import replace

    from res2net.data.transforms import EvalTransform

    card = getattr(model, "card", None)
    base = EvalTransform.from_preprocess(card.preprocess) if card is not None else EvalTransform()
    return replace(base, resize_short=args.resize_short, crop_size=args.input_size)


def export(args: argparse.Namespace, model) -> Path:
    common = dict(softmax=args.softmax, input_size=args.input_size)
    static = dict(dynamic_batch=args.dynamic_batch, batch_size=args.batch_size)
    recorded = dict(transform=transform(args, model), labels=args.labels)  # what the C++ predictor reads
    if args.fmt == "onnx":
        return ex.export_onnx(model, args.output, opset=args.opset, **common, **static)
    if args.fmt == "openvino":
        return ex.export_openvino(
            model, args.output, quantize=args.quantize, calibration=args.calibration, **common, **static, **recorded
        )
    if args.fmt == "pt2":
        return ex.export_pt2(model, args.output, device=args.device, **common, **static, **recorded)
    if args.fmt == "torchscript":
        return ex.export_torchscript(model, args.output, **common)
    if args.fmt == "hf":
        from res2net.weights.hf import save_pretrained

        return save_pretrained(model, args.output)
    if args.fmt == "pte":
        return export_pte(
            model, args.output, quantize=args.quantize, calibration=args.calibration, batch_size=args.batch_size,
            verify=False, **common,
        )  # fmt: skip
    return ex.export_triton(
        model,
        args.output,
        name=args.triton_name,
        opset=args.opset,
        max_batch_size=args.max_batch_size,
        instance_kind=args.instance_kind,
        labels=args.labels,
        **common,
    )


def _verify_reload(path: Path, model) -> dict[str, bool]:
    """An hf export stores the tensors themselves: reloading must give them back bit for bit."""
    import torch

    from res2net.export import ExportError
    from res2net.factory import create_model

    reloaded = create_model(model.card.name, pretrained=path, num_classes=model.num_classes)
    theirs = reloaded.state_dict()
    if any(not torch.equal(v, theirs[k]) for k, v in model.state_dict().items()):
        raise ExportError(f"{path}: reloaded weights differ from the exported model's")
    return {"passed": True}


def main(args: argparse.Namespace) -> int:
    if args.fmt != "triton" and not args.dynamic_batch and args.batch_size < 1:
        raise ExportError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.fmt == "torchscript" and not args.dynamic_batch:
        log.info("TorchScript traces are batch-agnostic; --no-dynamic-batch has no effect")
    if args.fmt == "triton" and not args.dynamic_batch:
        raise ExportError("Triton models are exported with a dynamic batch (dynamic batching needs it)")
    if args.quantize and args.fmt not in ("openvino", "pte"):
        raise ExportError(f"--quantize is for --format openvino or pte, not {args.fmt}")
    if args.resize_short is not None and args.fmt not in ("openvino", "pt2"):
        raise ExportError(f"--resize-short is recorded in openvino and pt2 files, not {args.fmt}")
    if args.labels is not None and args.fmt not in ("openvino", "pt2", "triton"):
        raise ExportError(f"--labels is recorded in openvino, pt2 and triton exports, not {args.fmt}")
    if args.weights is None:
        log.warning(
            "no --weights: exporting %s with RANDOM weights (fine for a smoke test, useless otherwise)", args.model
        )
    model = create_model_for_weights(args.model, args.weights, args.num_classes)
    t = time.perf_counter()
    path = export(args, model)
    summary = {"format": args.fmt, "path": str(path), "seconds": round(time.perf_counter() - t, 1)}
    print(f"wrote {path} ({args.fmt}, {summary['seconds']} s)")
    if args.verify and args.fmt == "hf":
        summary["verify"] = _verify_reload(path, model)
        print(f"reloaded {path}: weights identical")
    elif args.verify:
        images = find_images(args.images) if args.images else None
        report = verify_export(
            path,
            model,
            fmt=args.fmt,
            images=images,
            atol=args.atol,
            topk=args.topk,
            device=args.device,
            raise_on_fail=False,
        )
        if args.quantize == "int8":  # int8 is judged by top-1 agreement, not by the fp32 tolerance
            report.passed = report.top1_agreement >= 0.9
            verdict = "OK" if report.passed else "FAILED"
            print(report.summary().rsplit(" -> ", 1)[0] + f" -> int8 {verdict} (top-1 agreement >= 90%)")
            if not report.passed:
                raise ExportError(f"{path}: int8 top-1 agreement {report.top1_agreement:.0%} < 90%")
        else:
            print(report.summary())
        summary["verify"] = report.to_dict()
        if not report.passed:
            if args.json:
                print(json.dumps(summary))
            raise ExportError(
                f"{path} failed verification: max |difference| {report.max_abs_diff:.3g} > {report.tolerance:.2g}"
            )
    if args.json:
        print(json.dumps(summary))
    return 0
