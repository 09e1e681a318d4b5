"""``res2net benchmark``: the seed's latency tables (and charts) reproduced on this machine.

    res2net benchmark                                  # Res2Net50_vd, CPU, engines vs Paddle and timm, bs 1/4/8
    res2net benchmark --models seed --engines openvino paddle --precisions fp32 int8 --plot
    res2net benchmark --device cuda --engines cudagraph compile pt2 --precisions fp32 fp16 bf16 --no-e2e

Writes ``benchmark.md`` (seed-layout tables, ratios to PaddleClas's engine and to timm, end-to-end images/s),
``latency.csv``, ``e2e.csv``, ``benchmark.json`` and with ``--plot`` the four charts into ``--output-dir``,
and prints the markdown. Benchmarks on a busy machine are noisy: runners are timed alternately, so
ratios hold up better than absolute numbers; state the load with the results.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from res2net.accuracy import PRECISIONS as ENGINE_PRECISIONS
from res2net.benchmark.core import Settings, run_benchmark
from res2net.benchmark.plot import plot_charts
from res2net.benchmark.report import load_json, markdown, write_all
from res2net.benchmark.runners import CPU_ENGINES, ENGINES, PRECISIONS
from res2net.benchmark.seed import SEED_BENCHMARK_MODELS
from res2net.errors import Res2NetError
from res2net.weights.hub import is_official

log = logging.getLogger("res2net.benchmark")

CPU_PRECISIONS = list(ENGINE_PRECISIONS)
GPU_ENGINES = ["torch", "cudagraph", "timm"]  # add compile / pt2 explicitly: they compile for minutes
GPU_PRECISIONS = ["fp32", "fp16", "bf16"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", nargs="+", default=["Res2Net50_vd_26w_4s"], help="model names, or 'seed' for the seed's five"
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument(
        "--engines", nargs="+", choices=ENGINES, help=f"default: CPU {list(CPU_ENGINES)}, CUDA {GPU_ENGINES}"
    )
    parser.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS, help=f"default: CPU {CPU_PRECISIONS}, CUDA {GPU_PRECISIONS}"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for every engine, Paddle's included (0: default)"
    )
    parser.add_argument("--weights", help="'official' or a weights file (one model); default seeded random weights")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per runner and batch size")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per runner and batch size (>= 30)")
    parser.add_argument("--rounds", type=int, default=5, help="alternation rounds the repeats are split into")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the engines' accuracy checks")
    parser.add_argument("--no-e2e", dest="e2e", action="store_false", help="skip the end-to-end JPEG -> top-5 run")
    parser.add_argument("--images", nargs="+", help="end-to-end images (default: the packaged photos, repeated)")
    parser.add_argument("--e2e-count", type=int, default=64, help="images per pass when using the packaged photos")
    parser.add_argument("--e2e-batch-size", type=int, default=8)
    parser.add_argument("--e2e-passes", type=int, default=3)
    parser.add_argument("--compile-mode", help="torch.compile mode (default: reduce-overhead on CUDA, default on CPU)")
    parser.add_argument(
        "--paddle-program",
        choices=("pir", "pdmodel"),
        default="pir",
        help="Paddle anchor's program format (pir: Paddle 3 default; pdmodel: as the released *_infer models)",
    )
    parser.add_argument(
        "--in-process",
        dest="isolate",
        action="store_false",
        help="run every engine in this process (default: one worker process each, so thread pools cannot collide)",
    )
    parser.add_argument("--output-dir", default="benchmark-results", help="where the tables / CSV / JSON / charts go")
    parser.add_argument("--plot", action="store_true", help="draw the seed's four charts (needs matplotlib)")
    parser.add_argument("--plot-only", metavar="JSON", help="redraw the charts from an earlier benchmark.json")
    parser.add_argument("--allow-few-repeats", action="store_true", help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    if args.plot_only:
        for p in plot_charts(load_json(args.plot_only), args.output_dir):
            print(f"wrote {p}")
        return 0
    if args.repeats < 30 and not args.allow_few_repeats:
        raise Res2NetError(
            f"--repeats {args.repeats}: use at least 30 timed calls for a median and p90 worth reporting"
        )
    cuda = args.device.startswith("cuda")
    models = [m for name in args.models for m in (SEED_BENCHMARK_MODELS if name == "seed" else [name])]
    if args.weights and not is_official(args.weights) and len(models) > 1:
        raise Res2NetError("--weights FILE fits one model; use --weights official for several")
    settings = Settings(
        models=models,
        batch_sizes=args.batch_sizes,
        engines=args.engines or list(GPU_ENGINES if cuda else CPU_ENGINES),
        precisions=args.precisions or (GPU_PRECISIONS if cuda else CPU_PRECISIONS),
        device=args.device,
        threads=args.threads or None,
        input_size=args.input_size,
        weights=args.weights,
        num_classes=args.num_classes,
        warmup=args.warmup,
        repeats=args.repeats,
        rounds=args.rounds,
        check=args.check,
        e2e=args.e2e,
        e2e_images=args.images,
        e2e_count=args.e2e_count,
        e2e_batch_size=args.e2e_batch_size,
        e2e_passes=args.e2e_passes,
        compile_mode=args.compile_mode,
        paddle_program=args.paddle_program,
        isolate=args.isolate,
    )
    result = run_benchmark(settings, command="res2net " + shlex.join(sys.argv[1:]))
    paths = write_all(result, args.output_dir)
    print(markdown(result))
    if args.plot:
        for p in plot_charts(result, args.output_dir):
            paths[p.stem] = p
    for p in paths.values():
        print(f"wrote {p}", file=sys.stderr)
    return 0
