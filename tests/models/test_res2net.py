"""Architecture tests: exact counts, timm parity, and the features other code builds on."""

import pytest
import torch

import res2net
from res2net.models.res2net import Bottle2neck
from res2net.stats import count_flops, count_params
from tests.utils import assert_logits_close, randomize_

# Exact trainable counts and 2 x MACs at 224^2 of PaddleClas's own models (ppcls/arch/backbone/model_zoo/res2net*.py).
EXPECTED = {
    "Res2Net50_26w_4s": (25_699_120, 8.51e9),
    "Res2Net50_vd_26w_4s": (25_718_352, 8.99e9),
    "Res2Net50_14w_8s": (25_059_816, 8.36e9),
    "Res2Net101_vd_26w_4s": (45_225_920, 16.61e9),
    "Res2Net200_vd_26w_4s": (76_215_536, 31.41e9),
}

TIMM_NAMES = [
    "res2net50_26w_4s",
    "res2net50_48w_2s",
    "res2net50_14w_8s",
    "res2net50_26w_6s",
    "res2net50_26w_8s",
    "res2net101_26w_4s",
    "res2next50",
    "res2net50d",
    "res2net101d",
]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_params_exact_and_flops_within_half_percent(name):
    params, flops = EXPECTED[name]
    with torch.device("meta"):
        model = res2net.create_model(name)
    assert count_params(model) == params
    assert count_flops(model) == pytest.approx(flops, rel=5e-3)


def test_ssld_names_share_the_base_graph():
    for base in ("Res2Net50_vd_26w_4s", "Res2Net101_vd_26w_4s", "Res2Net200_vd_26w_4s"):
        assert res2net.get_card(base + "_ssld").config == res2net.get_card(base).config
        assert res2net.get_card(base + "_ssld").url.endswith("_ssld_pretrained.pdparams")


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_parity(name):
    timm = pytest.importorskip("timm")
    theirs = randomize_(timm.create_model(name))
    ours = res2net.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict())  # same keys: timm checkpoints load unchanged
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    assert_logits_close(b, a, atol=1e-5)


def test_semantic_switches_change_the_forward_pass():
    timm_model = randomize_(res2net.create_model("res2net50d"))
    paddle_model = res2net.create_model("Res2Net50_vd_26w_4s").eval()
    paddle_model.load_state_dict(timm_model.state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (timm_model(x) - paddle_model(x)).abs().max() > 1e-3
    # layer1.0 is a stage block only under the timm rule.
    assert timm_model.layer1[0].is_stage and not paddle_model.layer1[0].is_stage
    assert paddle_model.layer2[0].pool.count_include_pad is False
    assert timm_model.layer2[0].pool.count_include_pad is True


def test_drop_path_really_drops():
    model = randomize_(res2net.create_model("res2net_tiny", drop_path_rate=0.5, num_classes=10))
    rates = [getattr(b.drop_path, "p", 0.0) for b in model.modules() if isinstance(b, Bottle2neck)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5)
    x = torch.randn(4, 3, 64, 64)
    model.train()
    torch.manual_seed(0)
    y1 = model.forward_features(x)
    torch.manual_seed(1)
    y2 = model.forward_features(x)
    assert not torch.allclose(y1, y2), "stochastic depth had no effect in training mode"
    model.eval()
    assert torch.equal(model.forward_features(x), model.forward_features(x))


def test_features_head_and_channels_last():
    model = res2net.create_model("res2net_tiny").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_intermediates(x, intermediates_only=True)
        assert [f.shape[1] for f in feats] == [64, 256, 512, 1024, 2048]
        assert [64 // f.shape[-1] for f in feats] == [2, 4, 8, 16, 32]
        logits = model(x)
        assert torch.allclose(model.forward_head(model.forward_features(x)), logits)
        assert model.forward_head(feats[-1], pre_logits=True).shape == (2, 2048)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert torch.allclose(cl, logits, atol=1e-5)
    backbone = res2net.create_model("res2net_tiny", features_only=True, out_indices=(2, 4))
    assert [f.shape[1] for f in backbone(x)] == [512, 2048]
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)


def test_name_lookup():
    assert res2net.get_card("res2net50_vd_26w_4s").name == "Res2Net50_vd_26w_4s"  # lowercase alias
    assert res2net.get_card("res2net50_26w_4s").family == "timm"  # exact timm name wins
    assert res2net.get_card("res2net50_v1b_26w_4s").name == "res2net50d"
    with pytest.raises(ValueError, match="Did you mean"):
        res2net.get_card("Res2Net50_vd_26w4s")
    with pytest.raises(TypeError, match="unknown model option"):
        res2net.create_model("res2net_tiny", widht=3)
    assert set(res2net.list_models("*200*")) == {"Res2Net200_vd_26w_4s", "Res2Net200_vd_26w_4s_ssld"}
