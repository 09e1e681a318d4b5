"""Training throughput (images/s) of one fwd + bwd + optimizer step, ours vs timm, side by side.

    .venv/bin/python scripts/train_throughput.py                     # Res2Net50_vd_26w_4s vs timm res2net50d
    .venv/bin/python scripts/train_throughput.py --batch 16 --steps 6 --variants fp32,cl_bf16_fused

Every variant runs in its own fresh process (no shared caches or allocator state), one after the
other, on the same random batch (224x224, batch 16), with the PaddleClas recipe's step: SGD momentum
0.9, weight decay 1e-4, cross-entropy with label smoothing 0.1. The first ``--warmup`` steps are
dropped (one-off kernel selection / compilation); the reported figure is ``batch / median(step
time)``. The anchor is timm's ``res2net50d`` — the same architecture as Res2Net50_vd_26w_4s up to the
two forward-semantics details (see the docstring of res2net/models/res2net.py) — trained in plain
fp32, as timm's ``train.py`` would by default on CPU.

Variants (ours): ``fp32`` (plain, like the anchor), ``cl`` (channels_last), ``cl_bf16`` (+ bf16
autocast), ``cl_bf16_fused`` (+ fused SGD), ``cl_bf16_compile`` (+ ``torch.compile``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "timm_fp32": dict(impl="timm", cl=False, bf16=False, fused=False, compile=False),
    "fp32": dict(impl="ours", cl=False, bf16=False, fused=False, compile=False),
    "cl": dict(impl="ours", cl=True, bf16=False, fused=False, compile=False),
    "cl_bf16": dict(impl="ours", cl=True, bf16=True, fused=False, compile=False),
    "cl_bf16_fused": dict(impl="ours", cl=True, bf16=True, fused=True, compile=False),
    "cl_bf16_compile": dict(impl="ours", cl=True, bf16=True, fused=True, compile=True),
    "timm_cl_bf16": dict(impl="timm", cl=True, bf16=True, fused=True, compile=False),
}


def worker(spec: dict, batch: int, steps: int, warmup: int, threads: int | None) -> dict:
    import contextlib

    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if spec["impl"] == "timm":
        import timm

        model = timm.create_model("res2net50d", num_classes=1000)
    else:
        import res2net

        model = res2net.create_model("Res2Net50_vd_26w_4s", num_classes=1000)
    model.train()
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))
    if spec["cl"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, **({"fused": True} if spec["fused"] else {})
    )
    fwd = torch.compile(model) if spec["compile"] else model
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step() -> float:
        t0 = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if spec["bf16"] else contextlib.nullcontext()
        with ctx:
            out = fwd(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    times = [step() for _ in range(warmup + steps)][warmup:]
    med = statistics.median(times)
    return {"img_per_s": batch / med, "step_s": med, "times": times, "threads": torch.get_num_threads()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variants", default="timm_fp32,fp32,cl,cl_bf16,cl_bf16_fused,cl_bf16_compile")
    p.add_argument("--rounds", type=int, default=1, help="run the whole list this many times, keep each variant's best")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(VARIANTS[a.worker], a.batch, a.steps, a.warmup, a.threads)))
        return 0

    import torch

    names = a.variants.split(",")
    results: dict[str, dict] = {}
    for rnd in range(a.rounds):  # rounds interleave the variants, so a noisy neighbour hurts all alike
        for name in names:
            cmd = [sys.executable, __file__, "--worker", name, "--batch", str(a.batch), "--steps", str(a.steps)]
            cmd += ["--warmup", str(a.warmup)] + (["--threads", str(a.threads)] if a.threads else [])
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"round {rnd + 1} {name:18s} {r['img_per_s']:6.2f} img/s  (median step {r['step_s']:.2f} s, "
                f"{r['threads']} threads)",
                flush=True,
            )
            if name not in results or r["img_per_s"] > results[name]["img_per_s"]:
                results[name] = r
    anchor = results.get("timm_fp32")
    print()
    print(
        f"| variant | img/s | vs timm res2net50d fp32 |  ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, batch {a.batch}, 224x224)"
    )
    print("|---|---|---|")
    for name, r in results.items():
        ratio = f"{r['img_per_s'] / anchor['img_per_s']:.2f}x" if anchor else "-"
        print(f"| {name} | {r['img_per_s']:.2f} | {ratio} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"batch": a.batch, "steps": a.steps, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
