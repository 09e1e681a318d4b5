"""PaddleClas key maps: the computed shape table must be exactly what the model builds."""

import pytest
import torch

from res2net.models.res2net import Res2Net
from res2net.models.zoo import _REGISTRY
from res2net.weights.paddle import state_shapes

# Every registered config, plus head/input/grouping variants on a plain and a vd (deep stem, avg-down) one.
VARIANTS = [{"num_classes": 0}, {"num_classes": 7, "in_chans": 1}, {"cardinality": 4, "base_width": 4}]
CASES = [(name, {}) for name in sorted(_REGISTRY)] + [
    (name, v) for name in ("res2net_tiny", "Res2Net50_vd_26w_4s") for v in VARIANTS
]


@pytest.mark.parametrize("name, overrides", CASES)
def test_state_shapes_match_the_built_model(name, overrides):
    cfg = _REGISTRY[name].config.with_overrides(**overrides)
    with torch.device("meta"):
        built = {k: tuple(v.shape) for k, v in Res2Net(cfg).state_dict().items() if "num_batches_tracked" not in k}
    assert dict(state_shapes(cfg)) == built
