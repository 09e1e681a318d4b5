"""Reading weights safely, and clear errors for every way a file can be wrong."""

import hashlib
import logging
import os
import pickle

import numpy as np
import pytest
import torch

import res2net
from res2net.weights import WeightsError, convert_to_safetensors, guess_model, load_weights, read_weights
from res2net.weights.paddle import paddle_key_maps
from tests.utils import randomize_


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def paddle_state(model, style="structured"):
    """A PaddleClas-style dict for ``model`` built from our own mapping (real Paddle files: test_paddle_parity)."""
    sd = model.state_dict()
    out = {}
    for m in paddle_key_maps(model.cfg):
        arr = sd[m.ours].numpy()
        out[m.structured if style == "structured" else m.param_name] = arr.T.copy() if m.transpose else arr
    if style == "structured":
        out["StructuredToParameterName@@"] = {m.structured: m.param_name for m in paddle_key_maps(model.cfg)}
    return out


@pytest.fixture
def tiny():
    return randomize_(res2net.create_model("res2net_tiny"))


@pytest.mark.parametrize("suffix", [".pdparams", ".pth"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    payload = {"conv1.weight": _Evil(marker)}
    if suffix == ".pth":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match="refused to load"):
        read_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize("style", ["structured", "param_name"])
def test_pdparams_roundtrip_both_key_styles(tmp_path, tiny, protocol, style):
    path = tmp_path / "w.pdparams"
    path.write_bytes(pickle.dumps(paddle_state(tiny, style), protocol=protocol))
    fresh = res2net.create_model("res2net_tiny").eval()
    assert load_weights(fresh, path) == "paddle"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), tiny(x))


def test_big_param_slices_are_reassembled(tmp_path, tiny):
    state = paddle_state(tiny)
    w = state.pop("out.weight")
    flat = w.ravel()
    state["out.weight@@.0"], state["out.weight@@.1"] = flat[:1000], flat[1000:]
    state["UnpackBigParamInfor@@"] = {
        "out.weight": {"OriginShape": list(w.shape), "slices": ["out.weight@@.0", "out.weight@@.1"]}
    }
    path = tmp_path / "big.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=2))
    assert np.array_equal(read_weights(path).tensors["out.weight"].numpy(), w)


def test_truncated_and_empty_files(tmp_path, tiny):
    path = tmp_path / "w.pdparams"
    data = pickle.dumps(paddle_state(tiny), protocol=4)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_weights(path)
    pth = tmp_path / "w.pth"
    torch.save(tiny.state_dict(), pth)
    pth.write_bytes(pth.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_weights(pth)
    empty = tmp_path / "e.safetensors"
    empty.touch()
    with pytest.raises(WeightsError, match="empty"):
        read_weights(empty)
    with pytest.raises(WeightsError, match="not found"):
        read_weights(tmp_path / "missing.pth")


def test_wrong_models_file_names_the_right_model(tmp_path):
    path = tmp_path / "w.pdparams"
    other = res2net.create_model("Res2Net50_14w_8s")
    path.write_bytes(pickle.dumps(paddle_state(other), protocol=4))
    with pytest.raises(WeightsError) as e:
        res2net.create_model("Res2Net50_26w_4s", pretrained=path)
    msg = str(e.value)
    assert "unexpected keys" in msg and "shape mismatches" in msg
    assert "looks like weights for 'Res2Net50_14w_8s'" in msg


def test_extra_and_missing_keys_are_named(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    sd["extra.weight"] = torch.zeros(3)
    del sd["layer1.0.bns.2.running_var"]
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as e:
        load_weights(res2net.create_model("res2net_tiny"), path)
    assert "extra.weight" in str(e.value) and "layer1.0.bns.2.running_var" in str(e.value)


def test_finetune_head_and_headless(tmp_path, tiny):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny.state_dict().items()}}, path)
    model = res2net.create_model("res2net_tiny", pretrained=path, num_classes=5)
    assert model.fc.out_features == 5
    assert torch.equal(model.layer4[0].conv3.weight, tiny.layer4[0].conv3.weight)
    backbone = res2net.create_model("res2net_tiny", pretrained=path, num_classes=0)
    assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 2048)


def test_semantics_mismatch_warns_through_logging(tmp_path, tiny, caplog):
    path = tmp_path / "w.safetensors"  # our own file says which semantics its weights ran under
    convert_to_safetensors(_saved_state(tmp_path, tiny), path, model_name="res2net_tiny")
    timm_semantics = res2net.create_model("res2net_tiny", stage_rule="downsample", pool_count_include_pad=True)
    with caplog.at_level(logging.WARNING, logger="res2net.weights.load"):
        assert load_weights(timm_semantics, path) == "paddle"
    assert "outputs will differ" in caplog.text


def test_state_dict_without_metadata_is_not_called_timm(tmp_path, tiny, caplog, recwarn):
    """A plain ``safetensors.torch.save_file`` of our model: its origin is unknown, so nothing is claimed."""
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    with caplog.at_level(logging.WARNING):
        model = res2net.create_model("res2net_tiny", pretrained=path)
    assert "outputs will differ" not in caplog.text and not recwarn.list
    assert load_weights(model, path) == "unknown"


def _saved_state(tmp_path, tiny):
    path = tmp_path / "state.pth"
    torch.save(tiny.state_dict(), path)
    return path


def test_convert_to_safetensors_keeps_provenance(tmp_path, tiny):
    src = tmp_path / "w.pdparams"
    src.write_bytes(pickle.dumps(paddle_state(tiny), protocol=2))
    dst = tmp_path / "w.safetensors"
    meta = convert_to_safetensors(src, dst)
    assert meta["model"] == "res2net_tiny" and meta["origin"] == "paddle"
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    raw = read_weights(dst)
    assert raw.metadata["origin"] == "paddle" and guess_model(raw) == "res2net_tiny"
    reloaded = res2net.create_model("res2net_tiny", pretrained=dst).eval()  # no semantics warning: origin kept
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(x), tiny(x))


@pytest.mark.parametrize("suffix", [".pdparams", ".pth", ".safetensors"])
def test_one_read_parses_and_hashes(tmp_path, tiny, monkeypatch, suffix):
    """read_weights hands back the file's sha256 with its tensors (the hash runs beside the parse), and
    convert parses the file once and records that hash."""
    import safetensors.torch

    import res2net.weights.formats as formats

    path = tmp_path / f"w{suffix}"
    if suffix == ".pdparams":
        path.write_bytes(pickle.dumps(paddle_state(tiny), protocol=2))
    elif suffix == ".pth":
        torch.save(tiny.state_dict(), path)
    else:
        safetensors.torch.save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(path))
    raw = read_weights(path)
    assert raw.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    reads = []
    real = formats._read_by_format
    monkeypatch.setattr(formats, "_read_by_format", lambda *a: reads.append(a) or real(*a))
    meta = convert_to_safetensors(path, tmp_path / "out.safetensors", "res2net_tiny")
    assert len(reads) == 1 and meta["source_sha256"] == raw.sha256


def test_a_refused_file_does_not_wait_for_its_hash(tmp_path, monkeypatch):
    """The hash runs beside the parse; a file refused early is refused at once, not after hashing it all."""
    import threading
    import time

    import res2net.weights.formats as formats

    release = threading.Event()
    monkeypatch.setattr(formats, "sha256_file", lambda path: release.wait(30) and "")
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"not a pickle at all")
    t = time.monotonic()
    try:
        with pytest.raises(WeightsError, match="bad.pdparams"):
            read_weights(bad)
        assert time.monotonic() - t < 10  # the stuck hash would hold it 30 s
    finally:
        release.set()
