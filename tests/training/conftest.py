"""Small, fast training setups on the real digits data for the engine tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import digits_overrides


@pytest.fixture(scope="session")
def small_digits(digits_tree, tmp_path_factory):
    """List files with the first 256 train / 96 val digits (same image root) for runs of a few seconds."""
    folder = tmp_path_factory.mktemp("small_lists")
    for split, n in (("train", 256), ("val", 96)):
        lines = (digits_tree.root / f"{split}_list.txt").read_text().splitlines()[:n]
        (folder / f"{split}_list.txt").write_text("\n".join(lines) + "\n")
    return {"root": digits_tree.root, "train": folder / "train_list.txt", "val": folder / "val_list.txt"}


@pytest.fixture(scope="session")
def photo_tree(tmp_path_factory):
    """64 natural-image tiles in 4 classes (skimage.data photos), ImageFolder + list file.

    Digits have exactly-constant black backgrounds, so max-pool windows hold exact ties that fp32
    rounding (a different summation order, e.g. 2 processes vs 1) breaks differently — gradients then
    legitimately differ by percents. Photos have sensor noise: no ties, so runs can be compared tightly.
    """
    import cv2
    import skimage.data

    root = tmp_path_factory.mktemp("photos")
    lines = []
    for label, name in enumerate(("astronaut", "chelsea", "coffee", "immunohistochemistry")):
        img = getattr(skimage.data, name)()[:, :, :3]
        h, w = img.shape[:2]
        side = min(h, w) // 4
        (root / name).mkdir()
        for i in range(4):
            for j in range(4):
                tile = img[i * side : (i + 1) * side, j * side : (j + 1) * side]
                rel = f"{name}/{i}{j}.png"
                cv2.imwrite(str(root / rel), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
                lines.append(f"{rel} {label}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return {"root": root, "train": root / "list.txt", "val": root / "list.txt"}


def small_overrides(small: dict, out: Path, *extra: str) -> list[str]:
    """A seconds-long run: 256 images, batch 32, 3 epochs, every stateful feature switched on."""

    class _Tree:  # what digits_overrides needs
        root = small["root"]
        train_list = small["train"]
        val_list = small["val"]

    return [
        *digits_overrides(_Tree, out),
        "Global.resume=auto",
        "Global.epochs=3",
        "Global.deterministic=true",
        "Global.save_interval_steps=3",
        "DataLoader.Train.batch_size=16",
        "Optimizer.accum_steps=2",  # 8 steps of 2 micro-batches per epoch
        "Optimizer.lr=0.1",
        "Optimizer.warmup_epochs=1",
        "DataLoader.Train.mixup_alpha=0.2",
        "Arch.drop_path_rate=0.1",
        "EMA.enabled=true",
        "EMA.decay=0.9",
        *extra,
    ]


# A training process that can SIGKILL itself at a chosen moment (used by the kill-and-resume tests).
KILLABLE = r"""
import json, os, signal, sys
import torch
mode, k, overrides = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
count = [0]
if mode == "step":  # die just before the k-th optimizer step
    orig_step = torch.optim.SGD.step
    def step(self, *a, **kw):
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return orig_step(self, *a, **kw)
    torch.optim.SGD.step = step
elif mode == "write":  # die in the k-th write of last.pt: temp file half-written, not yet renamed
    orig_replace = os.replace
    def replace(src, dst, *a, **kw):
        if str(dst).endswith("last.pt"):
            count[0] += 1
            if count[0] == k:
                size = os.path.getsize(src)
                with open(src, "r+b") as f:
                    f.truncate(size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return orig_replace(src, dst, *a, **kw)
    os.replace = replace
from res2net.training.config import load_config
from res2net.training.train import train
train(load_config("digits_res2net_tiny", overrides))
"""


def run_training(overrides: list[str], mode: str = "none", k: int = 0, timeout: float = 300):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", KILLABLE, mode, str(k), json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
