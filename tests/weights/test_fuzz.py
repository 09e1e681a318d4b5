"""Bounded fuzzing of every weights reader (issue 11): mutated small files -> only WeightsError, no crash.

Each target starts from a valid file with res2net_tiny's keys (tensors cut to at most 2 per dim so a
mutation often hits structure, not values), applies a few random byte edits (overwrite, insert,
delete, truncate, boundary integers) and loads the result with ``load_weights(res2net_tiny, ...)``
in a child process capped with ``RLIMIT_AS`` (tests/weights/reader_process.py). Every outcome
must be success or a WeightsError naming the file, with peak memory and time bounded; a segfault,
a hang, a MemoryError or any other exception fails the test and prints the edits.

Default: ``RES2NET_FUZZ_EXAMPLES`` (150) examples per target, derandomized so CI is repeatable. For
a long run set ``RES2NET_FUZZ_EXAMPLES=5000`` (then the seed is random each run); see CONTRIBUTING.md.
"""

import io
import os
import pickle
import struct
import time

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import res2net
from res2net.weights.paddle import paddle_key_maps
from tests.weights.test_formats import paddle_state
from tests.weights.test_formats_hostile import lod_tensor

EXAMPLES = int(os.environ.get("RES2NET_FUZZ_EXAMPLES", "150"))
LONG_RUN = "RES2NET_FUZZ_EXAMPLES" in os.environ
INT_FORMATS = ["<I", "<Q", "<i", "B"]
BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]


def _small_model():
    """res2net_tiny's state dict with every tensor cut to <= 2 per dim (a valid file of every format, ~10 KB)."""
    model = res2net.create_model("res2net_tiny")
    with torch.no_grad():
        for p in model.state_dict().values():
            p.copy_(torch.randn_like(p.float()).to(p.dtype)) if p.is_floating_point() else None
    return {k: v[tuple(slice(0, 2) for _ in v.shape)].clone() for k, v in model.state_dict().items()}, model.cfg


def _seeds() -> dict[str, tuple[str, bytes]]:
    sd, cfg = _small_model()

    class _Model:  # paddle_state() reads .state_dict() and .cfg
        def state_dict(self):
            return sd

    fake = _Model()
    fake.cfg = cfg
    paddle = paddle_state(fake)
    big = dict(paddle)  # the fc weight split as PaddleClas does for > 1 GiB arrays
    w = big.pop("out.weight").ravel()
    big["out.weight@@.0"], big["out.weight@@.1"] = w[:2], w[2:]
    big["UnpackBigParamInfor@@"] = {
        "out.weight": {"OriginShape": [2, 2], "slices": ["out.weight@@.0", "out.weight@@.1"]}
    }
    arrays = {m.param_name: sd[m.ours].numpy() for m in paddle_key_maps(cfg)}
    pdiparams = b"".join(lod_tensor(list(a.shape), a.tobytes()) for _, a in sorted(arrays.items()))
    from safetensors.torch import save

    pth, legacy = io.BytesIO(), io.BytesIO()
    torch.save({"state_dict": sd}, pth)
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)  # the pre-1.6 format of the authors' files
    return {
        "pdparams_p2": (".pdparams", pickle.dumps(paddle, protocol=2)),
        "pdparams_p4": (".pdparams", pickle.dumps(paddle, protocol=4)),
        "pdparams_big": (".pdparams", pickle.dumps(big, protocol=4)),
        "pdiparams": (".pdiparams", pdiparams),
        "safetensors": (".safetensors", save({k: v.contiguous() for k, v in sd.items()}, {"origin": "paddle"})),
        "pth": (".pth", pth.getvalue()),
        "pth_legacy": (".pth", legacy.getvalue()),
    }


SEEDS = _seeds()


@st.composite
def edits(draw, size: int) -> list[tuple]:
    edit = st.one_of(
        st.tuples(st.just("set"), st.integers(0, size - 1), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("insert"), st.integers(0, size), st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), st.integers(0, size - 1), st.integers(1, 64)),
        st.tuples(st.just("int"), st.integers(0, size - 1), st.sampled_from(BOUNDARY), st.sampled_from(INT_FORMATS)),
        st.tuples(st.just("truncate"), st.integers(0, size - 1)),
    )
    return draw(st.lists(edit, min_size=1, max_size=4))


def apply(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for kind, pos, *args in ops:
        pos = min(pos, len(buf))
        if kind == "set":
            buf[pos : pos + len(args[0])] = args[0]
        elif kind == "insert":
            buf[pos:pos] = args[0]
        elif kind == "delete":
            del buf[pos : pos + args[0]]
        elif kind == "int":
            value, fmt = args
            packed = struct.pack(fmt, value % (1 << (8 * struct.calcsize(fmt)))) if fmt[-1].isupper() else None
            if packed is None:
                packed = struct.pack(fmt, ((value + 2**31) % 2**32) - 2**31)
            buf[pos : pos + len(packed)] = packed
        else:
            del buf[pos:]
    return bytes(buf)


@pytest.mark.parametrize("target", list(SEEDS))
def test_fuzz_weights_reader(reader, tmp_path, target):
    suffix, seed = SEEDS[target]
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(seed)
    assert reader.load(path)["kind"] in ("ok", "WeightsError")  # the seed itself loads (up to a shape mismatch)
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not LONG_RUN,
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if LONG_RUN else [])],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=edits(len(seed)))
    def one(ops):
        path.write_bytes(apply(seed, ops))
        result = reader.load(path)
        kind = "mismatch" if "does not fit" in result["message"] else result["kind"]  # parsed, wrong shapes
        outcomes[kind] = outcomes.get(kind, 0) + 1
        assert result["kind"] in ("ok", "WeightsError"), f"{ops}: {result['kind']}: {result['message']}"
        if result["kind"] == "WeightsError":
            assert str(path) in result["message"], result["message"]
        assert result["rss_growth_mb"] < 128, f"{ops}: peak RSS grew {result['rss_growth_mb']:.0f} MB"
        assert result["seconds"] < 10, f"{ops}: took {result['seconds']:.1f} s"

    t0 = time.perf_counter()
    one()
    elapsed = time.perf_counter() - t0
    n = sum(outcomes.values())
    print(f"\nfuzz {target}: {n} examples in {elapsed:.1f} s ({n / elapsed:.1f}/s): {outcomes}")
    assert outcomes.get("WeightsError"), "no mutation was refused by a reader: the fuzzer is not reaching them"
