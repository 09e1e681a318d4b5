"""The seed's four charts, redrawn from this machine's measurements and the models' cards.

1. top-1 vs FLOPs, 2. top-1 vs params (both from ``res2net stats``: counted on the models themselves),
3. top-1 vs fp32 latency at bs=4, 4. top-1 vs reduced-precision (fp16 / bf16 / int8) latency at bs=4
— one line per engine through the measured models, as the seed draws one line per family. Top-1 is
the card's (the published ImageNet accuracy of the weights); a ``_ssld`` model shares its base
model's graph and so its latency (as in the seed's tables) and is drawn as a dashed companion line.
The seed's own T4 TensorRT latencies are drawn in grey for reference on the latency charts.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from res2net.benchmark.core import BenchmarkResult
from res2net.benchmark.seed import seed_latency
from res2net.models.zoo import UnknownModelError, get_card
from res2net.stats import SEED_MODELS, model_stats

CHART_BS = 4


def _ssld_sibling(name: str) -> str | None:
    try:
        return get_card(name + "_ssld").name if not name.endswith("_ssld") else None
    except UnknownModelError:
        return None


def _top1(name: str) -> float | None:
    t = get_card(name).top1
    return None if t is None else 100.0 * t


def _latency_points(result: BenchmarkResult, want_fp32: bool) -> dict[str, list[tuple[str, float]]]:
    """label -> [(model, median ms at bs=4)], fp32 runners or reduced-precision ones."""
    series: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in result.latency:
        if r.batch_size != CHART_BS or (r.precision == "fp32") != want_fp32:
            continue
        series[r.label].append((r.model, r.median_ms))
    return series


def _draw_latency(ax, result: BenchmarkResult, want_fp32: bool, seed_table: str) -> int:
    drawn = 0
    for label, pts in _latency_points(result, want_fp32).items():
        pts = [(m, ms) for m, ms in pts if _top1(m) is not None]
        if not pts:
            continue
        pts.sort(key=lambda p: p[1])
        (line,) = ax.plot([ms for _, ms in pts], [_top1(m) for m, _ in pts], "o-", label=label)
        drawn += 1
        ssld = [(s, ms) for m, ms in pts if (s := _ssld_sibling(m)) and _top1(s) is not None]
        if ssld:
            ax.plot([ms for _, ms in ssld], [_top1(s) for s, _ in ssld], "o--", color=line.get_color(),
                    mfc="none", label=f"{label}, SSLD weights")  # fmt: skip
        if drawn == 1:  # name the models once, on the first line
            for m, ms in pts:
                ax.annotate(m.replace("Res2Net", "R2N"), (ms, _top1(m)), fontsize=7, xytext=(4, -10),
                            textcoords="offset points")  # fmt: skip
    models = sorted({r.model for r in result.latency})
    ref = [(seed_latency(seed_table, m, CHART_BS), _top1(m)) for m in models]
    ref = sorted((x, y) for x, y in ref if x is not None and y is not None)
    if ref:
        ax.plot([x for x, _ in ref], [y for _, y in ref], "s:", color="grey", label=f"seed: {seed_table}")
    return drawn


def plot_charts(result: BenchmarkResult, out_dir: str | Path, models: list[str] | None = None) -> list[Path]:
    """Write the four PNG charts into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = result.settings.get("device", "cpu")
    where = result.machine.get("gpu") if device.startswith("cuda") else result.machine.get("cpu", "CPU")
    paths = []

    names = list(dict.fromkeys([*(models or SEED_MODELS), *(r.model for r in result.latency)]))
    stats = [model_stats(n) for n in names]
    stats = [s for s in stats if s.top1 is not None]
    for key, xlabel, fname in (
        ("flops_g", "FLOPs (G, 2 x MACs at 224x224)", "top1_vs_flops.png"),
        ("params", "Params (M, trainable)", "top1_vs_params.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 5))
        groups: dict[str, list] = defaultdict(list)
        for s in stats:
            groups["SSLD weights" if s.name.endswith("_ssld") else "ImageNet-1k weights"].append(s)
        for group, items in groups.items():
            items = sorted(items, key=lambda s: getattr(s, key))
            xs = [getattr(s, key) / (1e6 if key == "params" else 1) for s in items]
            ax.plot(xs, [100 * s.top1 for s in items], "o-", label=group)
            for s, x in zip(items, xs):
                ax.annotate(s.name.replace("Res2Net", "R2N"), (x, 100 * s.top1), fontsize=7, xytext=(4, -10),
                            textcoords="offset points")  # fmt: skip
        ax.margins(x=0.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Top-1 (%)")
        ax.set_title(f"Res2Net: top-1 vs {xlabel.split(' ')[0]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        paths.append(out / fname)

    for want_fp32, seed_table, fname in (
        (True, "T4 FP32 TensorRT", f"top1_vs_fp32_latency_bs{CHART_BS}.png"),
        (False, "T4 FP16 TensorRT", f"top1_vs_reduced_precision_latency_bs{CHART_BS}.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 5))
        drawn = _draw_latency(ax, result, want_fp32, seed_table)
        xs = [x for line in ax.get_lines() for x in line.get_xdata()]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:  # CPU engines next to GPU TensorRT: log scale
            ax.set_xscale("log")
        kind = "FP32" if want_fp32 else "reduced-precision (fp16/bf16/int8)"
        if not drawn:
            ax.text(0.5, 0.5, f"no {kind} latency at bs={CHART_BS} measured", ha="center", transform=ax.transAxes)
        ax.margins(x=0.2)
        ax.set_xlabel(f"{kind} latency at bs={CHART_BS} (ms, median)")
        ax.set_ylabel("Top-1 (%)")
        ax.set_title(f"Res2Net: top-1 vs {kind} latency, bs={CHART_BS} — {where}", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        paths.append(out / fname)
    return paths
