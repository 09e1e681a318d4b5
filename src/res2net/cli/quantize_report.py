"""``res2net quantize-report``: int8 vs fp32 per engine — size, latency, logit error, accuracy."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import torch

from res2net.benchmark.quantize_report import DEFAULT_BATCH_SIZES, ENGINES, format_table, quantize_report
from res2net.cpu import describe_cpu
from res2net.data.transforms import EvalTransform
from res2net.models.zoo import get_card


# ----------------------------------------------------------------------------------------- CLI
def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default="Res2Net50_vd_26w_4s_ssld", help="registered model name")
    p.add_argument("--weights", help="weights file (default: the official weights, downloaded once)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: from the weights)")
    p.add_argument("--resize-short", type=int, help="eval preprocessing: short side (default: the model card's, 256)")
    p.add_argument("--crop-size", type=int, help="eval preprocessing: centre crop (default: the model card's, 224)")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    p.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32,bf16,int8")
    p.add_argument("--calibration", help="int8 calibration images: folder, list file or glob (default: samples)")
    p.add_argument("--eval", dest="eval_set", help="evaluation set: PaddleClas list file or ImageFolder (labelled)")
    p.add_argument("--eval-limit", type=int, default=1000, help="at most this many evaluation images")
    p.add_argument("--batch-sizes", type=_ints, default=list(DEFAULT_BATCH_SIZES))
    p.add_argument("--iters", type=int, default=10, help="timed calls per batch size (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--cache-dir", help="artifact cache (default: $RES2NET_HOME/artifacts)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")


def main(args: argparse.Namespace) -> int:
    batch_sizes = args.batch_sizes
    transform = None
    if args.resize_short or args.crop_size:
        card = EvalTransform.from_preprocess(get_card(args.model).preprocess)
        transform = card.with_sizes(args.resize_short, args.crop_size)
    rows, data = quantize_report(
        args.model,
        args.weights,
        engines=[e for e in args.engines.split(",") if e],
        precisions=[p for p in args.precisions.split(",") if p],
        calibration=args.calibration,
        eval_set=args.eval_set,
        eval_limit=args.eval_limit,
        batch_sizes=batch_sizes,
        warmup=args.warmup,
        iters=args.iters,
        threads=args.threads,
        num_classes=args.num_classes,
        transform=transform,
        cache_dir=args.cache_dir,
    )
    if args.json:
        summary = {"eval_set": data.source, "images": len(data.inputs), "cpu": describe_cpu()}
        print(json.dumps({**summary, "rows": [asdict(r) for r in rows]}))
    else:
        labelled = "labelled" if data.labels is not None else "unlabelled: no accuracy"
        print(
            f"{args.model}: {len(data.inputs)} evaluation images from {data.source} ({labelled}); "
            f"latency = median of {args.iters} calls, {torch.get_num_threads()} threads\n{describe_cpu()}"
        )
        print(format_table(rows, batch_sizes, markdown=args.markdown))
    return 0 if any(r.rel_error is not None for r in rows) else 1
