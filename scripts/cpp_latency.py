"""The C++ predictor's latency side by side with PaddleClas's engine and our Python predictor (docs/benchmarks.md).

    bash deploy/cpp/build.sh
    .venv/bin/python scripts/cpp_latency.py                      # Res2Net50_vd_26w_4s, 2 threads, bs 1/4/8
    .venv/bin/python scripts/cpp_latency.py --threads 4 --output-dir /tmp/cpp-bench

One run of the ``res2net benchmark`` harness (alternating rounds, one process per runner, the same
seeded weights everywhere) over these runners, fp32 and int8 where they have it:

* ``paddle``: Paddle Inference + oneDNN as PaddleClas's ``ClsPredictor`` runs it, from ``.venv-paddle``;
* ``openvino``: ``res2net.Predictor`` (Python) on OpenVINO;
* ``cpp``: ``deploy/cpp/build/res2net_predict`` on the OpenVINO IR (the int8 IR is the Python
  engine's recipe and calibration); with ``--with-pt2`` also ``cpp-pt2`` (the same binary on the
  ``.pt2`` package, libtorch) and ``torch`` (the Python predictor on PyTorch eager) — slow on a
  shared machine (see docs/deploy.md on OpenMP's spin-waiting), hence not by default.

Model-only latency (batch 1/4/8), end-to-end images/s (JPEG files -> top-5) and, on the same files,
decode + preprocess time per image: the C++ binary's own (OpenCV), and Python's ``load_image`` +
``EvalTransform`` (Pillow + OpenCV), single-threaded (the binary with ``--decode-threads 0``), median
of 3 passes. Writes the harness's
files and ``cpp_latency.md`` into ``--output-dir`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENGINES = ["paddle", "openvino", "cpp"]
PT2_ENGINES = ["cpp-pt2", "torch"]  # --with-pt2: the .pt2 package in C++ and PyTorch eager in Python


def python_preprocess_ms(files: list[Path], size: int, passes: int = 3) -> float:
    """Median over passes of the mean ms/image of ``load_image`` + the card's ``EvalTransform``."""
    from res2net.data.image import load_image
    from res2net.data.transforms import EvalTransform

    t = EvalTransform(resize_short=round(256 * size / 224), crop_size=size)
    per_pass = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for f in files:
            t(load_image(f))
        per_pass.append((time.perf_counter() - t0) * 1000 / len(files))
    return statistics.median(per_pass)


def cpp_preprocess_ms(binary: str, package: str, files: list[Path], threads: int, passes: int = 3) -> float:
    """The binary's own decode + preprocess ms/image over ``files`` (its ``total:`` line), median over passes."""
    pattern = re.compile(r"decode\+preprocess ([\d.]+) ms/image")
    per_pass = []
    for _ in range(passes):
        # --decode-threads 0: decoding in turn with inference, so its time is not shared with it
        cmd = [binary, "--model", package, "--threads", str(threads), "--batch-size", "8", "--topk", "1",
               "--decode-threads", "0"]  # fmt: skip
        out = subprocess.run([*cmd, *[a for f in files for a in ("--image", str(f))]], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        per_pass.append(float(pattern.search(out.splitlines()[-1]).group(1)))
    return statistics.median(per_pass)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="Res2Net50_vd_26w_4s")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--e2e-count", type=int, default=96)
    p.add_argument("--e2e-passes", type=int, default=9, help="alternated end-to-end passes (median reported)")
    p.add_argument("--output-dir", default="benchmark-cpp")
    p.add_argument("--with-pt2", action="store_true", help="also the .pt2 package (C++) and PyTorch eager (Python)")
    args = p.parse_args(argv)

    from res2net.benchmark.core import Settings, e2e_files, run_benchmark
    from res2net.benchmark.report import markdown, write_all

    settings = Settings(
        models=[args.model],
        batch_sizes=args.batch_sizes,
        engines=ENGINES + (PT2_ENGINES if args.with_pt2 else []),
        precisions=["fp32", "int8"],
        threads=args.threads,
        repeats=args.repeats,
        rounds=args.rounds,
        e2e_count=args.e2e_count,
        e2e_passes=args.e2e_passes,
    )
    command = "python scripts/cpp_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = run_benchmark(settings, command=command.strip())
    write_all(result, args.output_dir)
    files = e2e_files(settings)  # all of them: the binary's first decode is cold, as a process's is
    rows = [("Python: res2net load_image + EvalTransform", python_preprocess_ms(files, settings.input_size))]
    cpp = next((r for r in result.runners if r["label"] == "cpp fp32"), None)
    if cpp:
        rows.append(("C++: res2net_predict (OpenCV)", cpp_preprocess_ms(cpp["binary"], cpp["artifact"], files,
                                                                        args.threads)))  # fmt: skip
    table = ["| decode + preprocess (one thread) | ms/image |", "|---|---|"]
    table += [f"| {name} | {ms:.2f} |" for name, ms in rows]
    md = markdown(result) + (
        f"\n#### Decode + preprocess per image (the {len(files)} JPEGs of the end-to-end run, "
        "resize 256, crop 224, normalise; median of 3 passes)\n\n" + "\n".join(table) + "\n"
    )
    out = Path(args.output_dir) / "cpp_latency.md"
    out.write_text(md)
    print(md)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
