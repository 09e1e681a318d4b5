"""The bundled digits demo, as shipped: >= 97% val top-1 in under 5 minutes on 2 CPU cores."""

import pytest

from res2net.training.config import load_config
from res2net.training.train import train
from tests.conftest import digits_overrides
from tests.training.conftest import read_metrics


@pytest.mark.slow
def test_digits_demo_config_reaches_97_percent(digits_tree, tmp_path):
    cfg = load_config("digits_res2net_tiny", digits_overrides(digits_tree, tmp_path))
    result = train(cfg)
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == list(range(1, cfg["Global"]["epochs"] + 1))
    assert {"epoch", "train_loss", "val_top1", "val_top5", "lr", "img_per_s", "seconds"} <= rows[-1].keys()
    tops = [round(r["val_top1"], 4) for r in rows]
    assert max(tops) >= 0.97 and tops[-1] >= 0.96, tops
    assert result.best_top1 == max(r["val_top1"] for r in rows)
    assert sum(r["seconds"] for r in rows) < 300
