"""The shared ``digits_model`` fixture really is a trained model others can rely on."""

import json

import numpy as np
import torch


def test_digits_model_loads_and_reproduces_its_accuracy(digits_model):
    model = digits_model.load()
    x, y = digits_model.val_arrays()
    assert x.shape == (len(y), 3, 32, 32) and x.dtype == np.float32
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    top1 = float((pred == y).mean())
    # the training run measured the same model on the same images with the same preprocessing
    assert abs(top1 - digits_model.val_top1) < 1e-6, (top1, digits_model.val_top1)
    assert top1 >= 0.85
    rows = [json.loads(line) for line in (digits_model.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert max(r["val_top1"] for r in rows) == digits_model.val_top1
