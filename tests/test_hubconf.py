"""torch.hub: the repository's hubconf.py, loaded the way torch.hub loads a clone (source="local")."""

from pathlib import Path

import torch

import res2net

REPO = Path(__file__).resolve().parents[1]


def test_every_model_is_an_entry_point():
    """What ``torch.hub.list`` reports for a clone: the public callables of hubconf.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}
    assert set(res2net.list_models()) <= entries
    assert "res2net50_v1b_26w_4s" in entries  # aliases too
    assert "SSLD" in hubconf.Res2Net50_vd_26w_4s_ssld.__doc__
    assert set(hubconf.dependencies) >= {"torch", "torchvision"}


def test_load_builds_our_model_with_weights(tmp_path):
    tiny = res2net.create_model("res2net_tiny").eval()
    path = tmp_path / "tiny.safetensors"
    res2net.save_pretrained(tiny, tmp_path / "d")
    (tmp_path / "d" / "model.safetensors").rename(path)
    model = torch.hub.load(str(REPO), "res2net_tiny", source="local", pretrained=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), tiny(x))
    vd = torch.hub.load(str(REPO), "Res2Net50_vd_26w_4s_ssld", source="local", num_classes=3)
    assert vd.cfg.stage_rule == "stride" and vd.fc.out_features == 3 and vd.card.name == "Res2Net50_vd_26w_4s_ssld"
