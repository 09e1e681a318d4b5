"""Model guessing (issue 11, item 5): a file that fits no model is refused in well under a second."""

import pickle
import time

import numpy as np
import pytest
import torch

import res2net
from res2net.models import res2net as res2net_module
from res2net.weights import WeightsError, convert_to_safetensors, guess_model, read_weights
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
