"""The seed page's published latencies, kept as data for side-by-side tables.

The seed is PaddleClas's Res2Net model page (docs/zh_CN/models/ImageNet1k/Res2Net.md), section 1.3.

Paddle Inference + TensorRT, 224x224, milliseconds. ``_ssld`` models share their base model's
graph; the V100 table lists them separately (their numbers differ only by run noise).
"""

from __future__ import annotations

# §1.3.1 V100, FP32, TensorRT: bs 1 / 4 / 8
V100_FP32 = {
    "Res2Net50_26w_4s": (3.52, 6.23, 9.30),
    "Res2Net50_vd_26w_4s": (3.59, 6.35, 9.50),
    "Res2Net50_14w_8s": (4.39, 7.21, 10.38),
    "Res2Net101_vd_26w_4s": (6.34, 11.02, 16.13),
    "Res2Net200_vd_26w_4s": (11.45, 19.77, 28.81),
    "Res2Net50_vd_26w_4s_ssld": (3.58, 6.35, 9.52),
    "Res2Net101_vd_26w_4s_ssld": (6.33, 11.02, 16.11),
    "Res2Net200_vd_26w_4s_ssld": (11.47, 19.75, 28.83),
}

# §1.3.2 T4, TensorRT: bs 1 / 4 / 8
T4_FP16 = {
    "Res2Net50_26w_4s": (3.56067, 6.61827, 11.41566),
    "Res2Net50_vd_26w_4s": (3.69221, 6.94419, 11.92441),
    "Res2Net50_14w_8s": (4.45745, 7.69847, 12.30935),
    "Res2Net101_vd_26w_4s": (6.53122, 10.81895, 18.94395),
    "Res2Net200_vd_26w_4s": (11.66671, 18.93953, 33.19188),
}
T4_FP32 = {
    "Res2Net50_26w_4s": (4.47188, 9.65722, 17.54535),
    "Res2Net50_vd_26w_4s": (4.52712, 9.93247, 18.16928),
    "Res2Net50_14w_8s": (5.4026, 10.60273, 18.01234),
    "Res2Net101_vd_26w_4s": (8.08729, 17.31208, 31.95762),
    "Res2Net200_vd_26w_4s": (14.67806, 32.35032, 63.65899),
}

SEED_TABLES = {
    "V100 FP32 TensorRT": V100_FP32,
    "T4 FP32 TensorRT": T4_FP32,
    "T4 FP16 TensorRT": T4_FP16,
}
SEED_BATCH_SIZES = (1, 4, 8)
# The five architectures the seed benchmarks (its _ssld rows repeat the base models).
SEED_BENCHMARK_MODELS = tuple(T4_FP32)


def seed_latency(table: str, model: str, batch_size: int) -> float | None:
    """The seed's latency (ms) for ``model`` at ``batch_size`` in ``table``, or ``None``."""
    row = SEED_TABLES[table].get(model) or SEED_TABLES[table].get(model.removesuffix("_ssld"))
    if row is None or batch_size not in SEED_BATCH_SIZES:
        return None
    return row[SEED_BATCH_SIZES.index(batch_size)]
