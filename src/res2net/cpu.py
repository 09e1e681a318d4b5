"""What this CPU can do, as far as res2net's choices depend on it.

Two choices differ between x86-64 CPU kinds: which precisions ``engine="auto"`` tries first (int8 pays
most with VNNI/AMX int8 dot products; bf16 is only fast with native bf16 arithmetic) and how ONNX
Runtime int8 is quantized (its u8s8 kernels without VNNI add pairs of u8 x s8 products in 16 bits and
saturate, see :func:`res2net.export.quantize.onnx_int8_recipe`). Both read :func:`cpu_flags`.

``RES2NET_CPU_ISA`` caps what res2net believes the CPU has, for example ``avx2`` on an AVX-512 machine:
to build int8 artifacts for an older deployment CPU, or to test the AVX2 code paths on a newer one
(the libraries' own caps are ``ONEDNN_MAX_CPU_ISA`` for oneDNN in PyTorch and OpenVINO and
``ATEN_CPU_CAPABILITY`` for PyTorch's own kernels; ONNX Runtime has none). The levels, lowest first,
are :data:`ISA_LEVELS`; ``native`` (or unset) means no cap.
"""

from __future__ import annotations

import functools
import os

from res2net.errors import Res2NetError

# Each level adds the flags (Linux /proc/cpuinfo names) that a CPU of that kind has on top of the
# level below: Zen 3 / Haswell..Skylake-client = avx2, Skylake-SP = avx512, Cascade Lake = avx512_vnni,
# Cooper Lake / Zen 4 = avx512_bf16, Sapphire Rapids = amx. avx_vnni (Alder Lake, Zen 5) is VEX VNNI.
ISA_LEVELS: dict[str, frozenset[str]] = {
    "avx2": frozenset({"avx2", "fma"}),
    "avx512": frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}),
    "avx512_vnni": frozenset({"avx512_vnni", "avx_vnni"}),
    "avx512_bf16": frozenset({"avx512_bf16"}),
    "amx": frozenset({"amx_tile", "amx_int8", "amx_bf16"}),
}
_LEVEL_MARKERS = {
    "avx2": {"avx2"},
    "avx512": {"avx512f"},
    "avx512_vnni": {"avx512_vnni", "avx_vnni"},
    "avx512_bf16": {"avx512_bf16"},
    "amx": {"amx_tile"},
}
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_ABOVE: dict[str, frozenset[str]] = {}
for _i, _level in enumerate(ISA_LEVELS):
    _ABOVE[_level] = frozenset().union(*list(ISA_LEVELS.values())[_i + 1 :])


class CpuIsaError(Res2NetError, ValueError):
    """``RES2NET_CPU_ISA`` names no known level."""


@functools.cache
def _proc_cpuinfo_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def isa_cap() -> str | None:
    """The level ``RES2NET_CPU_ISA`` caps the CPU at, or ``None`` (unset or ``native``)."""
    cap = os.environ.get("RES2NET_CPU_ISA", "").strip().lower()
    if cap in ("", "native"):
        return None
    if cap not in ISA_LEVELS:
        raise CpuIsaError(f"RES2NET_CPU_ISA={cap!r}: choose one of native, {', '.join(ISA_LEVELS)}")
    return cap


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``), less those above ``RES2NET_CPU_ISA``; empty where unknown."""
    flags = _proc_cpuinfo_flags()
    cap = isa_cap()
    return flags - _ABOVE[cap] if cap else flags


def has_int8_dot() -> bool:
    """VNNI / AMX: int8 dot products accumulated in 32 bits in one instruction (no 16-bit saturation)."""
    return bool(cpu_flags() & INT8_DOT_FLAGS)


def has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than fp32."""
    return bool(cpu_flags() & BF16_FLAGS)


def isa_level() -> str:
    """The highest of :data:`ISA_LEVELS` this CPU has all the key flags of (``"baseline"`` below AVX2).

    A level counts when one of its marker flags is present, so ``avx_vnni`` without AVX-512 (Alder Lake)
    reports ``avx512_vnni``: what int8 depends on is the 32-bit dot product, not the vector width.
    """
    flags = cpu_flags()
    return next((name for name in reversed(ISA_LEVELS) if flags & _LEVEL_MARKERS[name]), "baseline")


def describe_cpu() -> str:
    """One line naming the CPU model and the features res2net's choices depend on, e.g. for logs and reports."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    flags = cpu_flags()
    named = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
    features = [f for f in named if f in flags]
    cap = isa_cap()
    capped = f", capped at {cap} by RES2NET_CPU_ISA" if cap else ""
    return f"{model}: {' '.join(features) or 'no AVX2'} (int8 dot: {'yes' if has_int8_dot() else 'no'}, " + (
        f"bf16: {'native' if has_bf16() else 'emulated'}{capped})"
    )


__all__ = [
    "BF16_FLAGS",
    "INT8_DOT_FLAGS",
    "ISA_LEVELS",
    "CpuIsaError",
    "cpu_flags",
    "describe_cpu",
    "has_bf16",
    "has_int8_dot",
    "isa_cap",
    "isa_level",
]
