"""Benchmark results as the seed's tables (markdown), plus CSV and JSON for anyone re-plotting them."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import asdict, fields
from pathlib import Path

from res2net.benchmark.core import BenchmarkResult, E2ERecord, LatencyRecord
from res2net.benchmark.seed import SEED_TABLES, seed_latency

ANCHOR = "paddle fp32"  # the seed's comparison: PaddleClas's own deployment engine
# Every anchor the mission promises to beat -> (heading of its latency-ratio table, e2e column).
ANCHORS = {
    ANCHOR: (
        "Latency relative to PaddleClas's engine (Paddle Inference + oneDNN, same weights)",
        "vs Paddle predict_cls",
    ),
    "timm fp32": ("Latency relative to timm (timm.create_model, eager fp32, same weights)", "vs timm"),
}


def _ms(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if v < 100 else f"{v:.1f}"


def machine_line(result: BenchmarkResult) -> str:
    m = result.machine
    parts = [m.get("cpu", "?"), f"{m.get('usable_cpus', m.get('logical_cpus'))} usable CPUs"]
    if m.get("cpu_features"):
        parts.append("/".join(m["cpu_features"]))
    if m.get("gpu"):
        parts.append(f"GPU {m['gpu']} (CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')})")
    threads = result.settings.get("threads")
    parts.append(f"{threads} threads" if threads else "default threads")
    versions = ", ".join(f"{k} {m[k]}" for k in ("torch", "onnxruntime", "openvino") if k in m)
    load = m.get("load_average")
    return "; ".join(parts) + f". {versions}" + (f". Load average at start {load}" if load else "")


def latency_tables(result: BenchmarkResult) -> str:
    """One seed-layout table per engine x precision: | Models | Size | Latency bs=1 | bs=4 | bs=8 |."""
    by_label: dict[str, dict[str, dict[int, LatencyRecord]]] = defaultdict(lambda: defaultdict(dict))
    sizes: dict[str, int] = {}
    for r in result.latency:
        by_label[r.label][r.model][r.batch_size] = r
        sizes[r.model] = r.size
    bss = sorted({r.batch_size for r in result.latency})
    out = []
    for label, models in by_label.items():
        out.append(f"#### {label} ({result.settings['device']}) — median ms (p90)\n")
        out.append("| Models | Size | " + " | ".join(f"Latency bs={b}" for b in bss) + " |")
        out.append("|---|---|" + "---|" * len(bss))
        for model, recs in models.items():
            cells = [f"{_ms(recs[b].median_ms)} ({_ms(recs[b].p90_ms)})" if b in recs else "" for b in bss]
            out.append(f"| {model} | {sizes[model]} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def ratio_table(result: BenchmarkResult, anchor: str = ANCHOR) -> str:
    """Median latency of each runner divided by ``anchor``'s (a runner label), same model and batch size."""
    base = {(r.model, r.batch_size): r.median_ms for r in result.latency if r.label == anchor}
    if not base:
        return ""
    bss = sorted({b for _, b in base})
    rows: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in result.latency:
        if (r.model, r.batch_size) in base:
            rows[(r.model, r.label)][r.batch_size] = r.median_ms / base[(r.model, r.batch_size)]
    out = [
        "| Model | Engine | " + " | ".join(f"bs={b}" for b in bss) + " |",
        "|---|---|" + "---|" * len(bss),
    ]
    for (model, label), ratios in rows.items():
        cells = [f"{ratios[b]:.2f}x" if b in ratios else "" for b in bss]
        out.append(f"| {model} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def e2e_table(result: BenchmarkResult) -> str:
    """Images/s per runner, and its speed relative to each anchor's end-to-end loop on the same files.

    The Paddle column is always there (the seed's comparison); an anchor that is not Paddle gets a
    column only when it ran.
    """
    if not result.e2e:
        return ""
    ran = {r.label for r in result.e2e}
    columns = [a for a in ANCHORS if a == ANCHOR or a in ran]
    speed = {a: {r.model: r.images_per_s for r in result.e2e if r.label == a} for a in columns}
    head = "| Model | Engine | Batch | Images | Images/s | " + " | ".join(ANCHORS[a][1] for a in columns) + " |"
    out = [head, "|---|---|---|---|---|" + "---|" * len(columns)]
    for r in result.e2e:
        vs = [f"{r.images_per_s / speed[a][r.model]:.2f}x" if r.model in speed[a] else "" for a in columns]
        row = f"| {r.model} | {r.label} | {r.batch_size} | {r.images} | {r.images_per_s:.1f} | "
        out.append(row + " | ".join(vs) + " |")
    return "\n".join(out) + "\n"


def seed_table(result: BenchmarkResult) -> str:
    """Our best fp32 / fp16 latencies next to the seed's TensorRT numbers (GPU runs)."""
    if not result.settings["device"].startswith("cuda"):
        return ""
    bss = [b for b in (1, 4, 8) if any(r.batch_size == b for r in result.latency)]
    best: dict[tuple[str, str, int], LatencyRecord] = {}
    for r in result.latency:
        if r.label in ANCHORS:  # "ours: best" means ours, not an anchor's
            continue
        key = (r.model, r.precision, r.batch_size)
        if key not in best or r.median_ms < best[key].median_ms:
            best[key] = r
    models = list(dict.fromkeys(r.model for r in result.latency))
    precisions = sorted({r.precision for r in result.latency}, key=["fp32", "fp16", "bf16", "int8"].index)
    head = "| Model | Source | " + " | ".join(f"bs={b}" for b in bss) + " |"
    out = [head, "|---|---|" + "---|" * len(bss)]
    for model in models:
        for p in precisions:
            recs = [best.get((model, p, b)) for b in bss]
            if any(recs):
                label = next(r.label for r in recs if r)
                cells = [_ms(r.median_ms) if r else "" for r in recs]
                out.append(f"| {model} | ours: best {p} ({label}) | " + " | ".join(cells) + " |")
        for table in SEED_TABLES:
            cells = [_ms(seed_latency(table, model, b)) for b in bss]
            if any(cells):
                out.append(f"| {model} | seed: {table} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def markdown(result: BenchmarkResult) -> str:
    s = result.settings
    parts = [
        f"Measured {result.started} in {result.seconds:.0f} s on: {machine_line(result)}.",
        "",
        f"Command: `{result.command}`",
        "",
        f"Model-only: random float32 input [bs, 3, {s['input_size']}, {s['input_size']}], {s['warmup']} warm-up calls, "
        f"{s['repeats']} timed calls in {s['rounds']} alternating rounds, median (p90) in ms"
        + ("; CUDA synchronised around every call." if s["device"].startswith("cuda") else "."),
        "",
        latency_tables(result),
    ]
    for anchor, (heading, _) in ANCHORS.items():
        ratios = ratio_table(result, anchor)
        if ratios:
            parts += [f"#### {heading}", "", ratios]
    seed = seed_table(result)
    if seed:
        parts += ["#### Next to the seed's published TensorRT latencies (ms)", "", seed]
    e2e = e2e_table(result)
    if e2e:
        parts += [
            f"#### End-to-end: JPEG files -> top-5 ({s['e2e_passes']} passes after a warm one, median)",
            "",
            e2e,
        ]
    notes = []
    for r in result.runners:
        extra = []
        if r.get("auto_choice"):
            extra.append(f"auto chose {r['auto_choice']}")
        acc = r.get("accuracy")
        if acc and "passed" not in acc:  # our own runners: numbers only (judged in the tests / docs)
            extra.append(
                f"vs CPU eager fp32 on {acc['images']} photos: max |logit diff| {acc['max_abs_diff']:.2e}, "
                f"rel. error {acc['rel_error']:.2%}, top-1 agreement {acc['top1_agreement']:.0%}"
            )
        elif acc:
            extra.append(
                f"accuracy check: max |logit diff| {acc['max_abs_diff']:.2e}, "
                f"top-1 agreement {acc['top1_agreement']:.0%}"
                + ("" if acc["passed"] else f" (FAILED: {acc['reason']})")
            )
        if r.get("parity"):
            p = r["parity"]
            extra.append(
                f"same weights as ours: max |logit diff| {p['max_abs_logit_diff']:.1e} (per-image centred), "
                f"top-1 agreement {p['top1_agreement']:.0%} on {p['images']} photos"
            )
        if r.get("memory_optim") is False:
            extra.append("enable_memory_optim dropped (fails with Paddle 3.3 PIR programs)")
        notes.append(
            f"- {r['model']} / {r['label']}: {r.get('engine', '')}" + (f"; {'; '.join(extra)}" if extra else "")
        )
    for sk in result.skipped:
        notes.append(f"- skipped {sk['model']} / {sk['engine']} {sk['precision'] or ''}: {sk['reason']}")
    if notes:
        parts += ["Engines:", "", *notes, ""]
    return "\n".join(parts)


def write_csv(path: Path, records: list) -> None:
    if not records:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(records[0])])
        writer.writeheader()
        for r in records:
            writer.writerow(asdict(r))


def write_all(result: BenchmarkResult, out_dir: str | Path) -> dict[str, Path]:
    """``benchmark.md``, ``latency.csv``, ``e2e.csv`` and ``benchmark.json`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "benchmark.md", "json": out / "benchmark.json", "latency_csv": out / "latency.csv"}
    paths["markdown"].write_text(markdown(result))
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    write_csv(paths["latency_csv"], result.latency)
    if result.e2e:
        paths["e2e_csv"] = out / "e2e.csv"
        write_csv(paths["e2e_csv"], result.e2e)
    return paths


def load_json(path: str | Path) -> BenchmarkResult:
    """A result written by :func:`write_all` (for ``--plot`` from an earlier run's numbers)."""
    data = json.loads(Path(path).read_text())
    data["latency"] = [LatencyRecord(**r) for r in data.get("latency", [])]
    data["e2e"] = [E2ERecord(**r) for r in data.get("e2e", [])]
    return BenchmarkResult(**data)
