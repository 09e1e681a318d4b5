"""Model guessing (issue 11, item 5): a file that fits no model is refused in well under a second."""

import pickle
import time

import numpy as np
import pytest
import torch

import res2net
from res2net.models import res2net as res2net_module
from res2net.weights import WeightsError, convert_to_safetensors, guess_model, load_weights, read_weights
from tests.weights.test_formats import paddle_state


def test_guess_builds_no_model_and_is_fast(tmp_path):
    good = tmp_path / "good.pdparams"
    good.write_bytes(pickle.dumps(paddle_state(res2net.create_model("Res2Net50_14w_8s")), protocol=4))
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(pickle.dumps({"conv1._conv.weight": np.zeros((3, 3), np.float32)}, protocol=4))
    raw_good, raw_bad = read_weights(good), read_weights(bad)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(res2net_module.Res2Net, "__init__", lambda self, cfg: pytest.fail("built a model"))
        t0 = time.perf_counter()
        assert guess_model(raw_good) == "Res2Net50_14w_8s"
        assert guess_model(raw_bad) is None
        elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"guessing took {elapsed:.2f} s (shared 2-core machine; tables take ~0.05 s)"


def test_convert_refuses_an_unknown_file_quickly(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3)}, bad)
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="could not tell which model"):
        convert_to_safetensors(bad, tmp_path / "out.safetensors")
    assert time.perf_counter() - t0 < 2.0


def test_arrays_the_model_cannot_take_are_never_materialised(tmp_path):
    from res2net.weights.paddle import file_key_shapes

    model = res2net.create_model("res2net_tiny")
    state = paddle_state(model)
    state["out.weight"] = np.zeros((2048, 7), np.float32)  # a 7-class head
    state["bb_0_0.conv0._conv.weight"] = np.zeros((5, 5, 1, 1), np.float32)
    path = tmp_path / "w.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=4))
    raw = read_weights(path, expected=file_key_shapes(model.cfg))
    assert raw.tensors["out.weight"].is_meta and raw.tensors["bb_0_0.conv0._conv.weight"].is_meta
    assert not raw.tensors["conv1._conv.weight"].is_meta
    with pytest.raises(WeightsError, match=r"layer1.0.conv1.weight: file \(5, 5, 1, 1\) vs model \(32, 64, 1, 1\)"):
        load_weights(model, path)
    del state["bb_0_0.conv0._conv.weight"]  # only the head differs: fine-tuning keeps a fresh head
    path.write_bytes(pickle.dumps(paddle_state(model) | {"out.weight": state["out.weight"]}, protocol=2))
    tuned = res2net.create_model("res2net_tiny", pretrained=path, num_classes=5)
    assert tuned.fc.out_features == 5 and not tuned.conv1.weight.is_meta
