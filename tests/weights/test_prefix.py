"""PaddleClas checkpoint prefixes resolve to the files our trainer (or PaddleClas's) wrote."""

import pickle

import pytest
import torch

import res2net
from res2net.training.config import load_config
from res2net.weights import WeightsError
from res2net.weights.prefix import resolve_weights_prefix
from tests.utils import randomize_
from tests.weights.test_formats import paddle_state


@pytest.fixture
def run_dir(tmp_path):
    """What ``res2net train`` leaves in ``output/NAME``: last/best safetensors and last.pt."""
    out = tmp_path / "output" / "res2net_tiny"
    out.mkdir(parents=True)
    model = randomize_(res2net.create_model("res2net_tiny"))
    res2net.save_pretrained(model, tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").rename(out / "best.safetensors")
    (out / "last.safetensors").write_bytes((out / "best.safetensors").read_bytes())
    (out / "last.pt").write_bytes(b"a training checkpoint")
    return out, model


def test_paddleclas_names_find_our_files(run_dir):
    out, _ = run_dir
    assert resolve_weights_prefix(out / "latest") == out / "last.safetensors"  # not last.pt
    assert resolve_weights_prefix(out / "last") == out / "last.safetensors"
    assert resolve_weights_prefix(out / "best_model") == out / "best.safetensors"
    assert resolve_weights_prefix(out / "best_model.pdparams") == out / "best.safetensors"  # PaddleClas appends it
    assert resolve_weights_prefix(out / "best.safetensors") == out / "best.safetensors"


def test_our_names_find_paddleclas_files(tmp_path):
    tiny = randomize_(res2net.create_model("res2net_tiny"))
    for name in ("latest", "best_model", "epoch_3"):
        (tmp_path / f"{name}.pdparams").write_bytes(pickle.dumps(paddle_state(tiny), protocol=2))
    assert resolve_weights_prefix(tmp_path / "last") == tmp_path / "latest.pdparams"
    assert resolve_weights_prefix(tmp_path / "best") == tmp_path / "best_model.pdparams"
    assert resolve_weights_prefix(tmp_path / "epoch_3") == tmp_path / "epoch_3.pdparams"


def test_missing_prefix_says_what_was_tried_and_what_is_there(run_dir):
    out, _ = run_dir
    with pytest.raises(WeightsError) as e:
        resolve_weights_prefix(out / "epoch_7")
    msg = str(e.value)
    assert "epoch_7.pdparams" in msg and "epoch_7.safetensors" in msg and "best.safetensors, last.pt" in msg
    with pytest.raises(WeightsError, match="res2net train writes last/best"):
        resolve_weights_prefix(out.parent / "empty" / "epoch_7")
    with pytest.raises(WeightsError, match="nothing.safetensors: no such weights file"):
        resolve_weights_prefix(out / "nothing.safetensors")


def test_paddleclas_eval_command_loads_our_training_output(run_dir):
    """``-o Global.pretrained_model=output/NAME/latest`` (PaddleClas's habit) on our output folder."""
    out, model = run_dir
    cfg = load_config("digits_res2net_tiny", [f"Global.pretrained_model={out / 'latest'}"])
    loaded = res2net.create_model("res2net_tiny", pretrained=cfg["Arch"]["pretrained"]).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
