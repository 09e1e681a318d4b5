"""PaddleClas parity: PaddleClas's own models, saved by Paddle, run by us within 1e-4.

The oracle (tests/oracle/paddle_reference.py, run in .venv-paddle) builds each architecture with
PaddleClas's code, gives every weight and every BN running statistic seeded random values, saves a
real ``.pdparams`` (and the same arrays under legacy parameter names, and a Paddle inference model),
and records Paddle's logits for a seeded input.
"""

import numpy as np
import pytest
import torch

import res2net
from res2net.weights import read_weights
from res2net.weights.paddle import paddle_key_maps
from tests.utils import assert_logits_close

MODELS = ["Res2Net50_26w_4s", "Res2Net50_vd_26w_4s", "Res2Net50_14w_8s", "Res2Net101_vd_26w_4s", "Res2Net200_vd_26w_4s"]
KEY_COUNTS = {  # arrays in PaddleClas's state dict (counted from PaddleClas's own res2net*.py models)
    "Res2Net50_26w_4s": 427,
    "Res2Net50_vd_26w_4s": 437,
    "Res2Net50_14w_8s": 747,
    "Res2Net101_vd_26w_4s": 862,
    "Res2Net200_vd_26w_4s": 1687,
}
ATOL = 1e-4


def run(model: torch.nn.Module, oracle, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.load(oracle / f"{name}.input.npy"))
    with torch.no_grad():
        ours = model.eval()(x)
    return ours, torch.from_numpy(np.load(oracle / f"{name}.logits.npy"))


@pytest.mark.paddle
@pytest.mark.parametrize("name", MODELS)
def test_pdparams_reproduce_paddleclas_logits(paddle_oracle, name):
    raw = read_weights(paddle_oracle / f"{name}.pdparams")
    assert len(raw.tensors) == KEY_COUNTS[name] == len(paddle_key_maps(res2net.get_card(name).config))
    model = res2net.create_model(name, pretrained=paddle_oracle / f"{name}.pdparams")
    assert_logits_close(*run(model, paddle_oracle, name), atol=ATOL)


@pytest.mark.paddle
@pytest.mark.parametrize("name", MODELS)
def test_legacy_parameter_names(paddle_oracle, name):
    model = res2net.create_model(name, pretrained=paddle_oracle / f"{name}.legacy.pdparams")
    assert_logits_close(*run(model, paddle_oracle, name), atol=ATOL)


@pytest.mark.paddle
@pytest.mark.parametrize("packaging", ["pdiparams", "tar"])
def test_inference_model_parameters(paddle_oracle, tmp_path, packaging):
    import tarfile

    name = "Res2Net50_vd_26w_4s"
    infer_dir = paddle_oracle / f"{name}_infer"
    path = infer_dir / "inference.pdiparams"
    if packaging == "tar":  # the layout of PaddleClas's released *_infer.tar bundles
        path = tmp_path / f"{name}_infer.tar"
        with tarfile.open(path, "w") as tar:
            for f in infer_dir.glob("inference.*"):
                tar.add(f, arcname=f"{name}_infer/{f.name}")
    model = res2net.create_model(name, pretrained=path)
    ours, _ = run(model, paddle_oracle, name)
    ref = torch.from_numpy(np.load(infer_dir / "logits.npy"))
    assert_logits_close(ours, ref, atol=ATOL)


@pytest.mark.paddle
def test_timm_semantics_would_not_match(paddle_oracle, caplog):
    """The two semantic switches matter: the same file under timm semantics misses Paddle's logits."""
    name = "Res2Net50_vd_26w_4s"
    with caplog.at_level("WARNING", logger="res2net.weights.load"):
        model = res2net.create_model("res2net50d", pretrained=paddle_oracle / f"{name}.pdparams")
    assert "outputs will differ" in caplog.text
    ours, ref = run(model, paddle_oracle, name)
    assert (ours - ref).abs().max() > 100 * ATOL


@pytest.mark.paddle
def test_convert_cli_keeps_parity_and_provenance(paddle_oracle, tmp_path):
    import subprocess
    import sys

    name = "Res2Net50_26w_4s"
    dst = tmp_path / "converted.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "res2net", "convert", str(paddle_oracle / f"{name}.pdparams"), str(dst)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"model {name}, origin paddle" in proc.stdout
    raw = read_weights(dst)
    assert raw.metadata["model"] == name and raw.metadata["source"] == f"{name}.pdparams"
    model = res2net.create_model(name, pretrained=dst)
    assert_logits_close(*run(model, paddle_oracle, name), atol=ATOL)
