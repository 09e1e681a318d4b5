"""scikit-learn's bundled digits as a real, offline image-classification dataset on disk.

The 1,797 8x8 grey digits (values 0-16) are scaled to 0-255, upscaled (bilinear) to ``size``
pixels and written as PNG files in *both* layouts our training code reads:

```
ROOT/train/<digit>/<n>.png      ImageFolder tree (class folders "0" ... "9")
ROOT/val/<digit>/<n>.png
ROOT/train_list.txt             PaddleClas list files: "train/3/00012.png 3"
ROOT/val_list.txt
ROOT/label_list.txt             PaddleClas label map: "3 three"
```

The split is stratified and seeded, so every machine builds byte-identical trees. Writing goes to a
temporary sibling folder that is renamed into place at the end, so a crash (or a concurrent writer)
never leaves a half-written tree that later looks complete.

    python -m res2net.data.digits ./data/digits [--size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MARKER = "digits.json"


@dataclass(frozen=True)
class DigitsTree:
    """Where :func:`write_digits` put things."""

    root: Path
    size: int
    num_train: int
    num_val: int

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def val_dir(self) -> Path:
        return self.root / "val"

    @property
    def train_list(self) -> Path:
        return self.root / "train_list.txt"

    @property
    def val_list(self) -> Path:
        return self.root / "val_list.txt"

    @property
    def label_list(self) -> Path:
        return self.root / "label_list.txt"

    def samples(self, split: str = "val") -> list[tuple[Path, int]]:
        """``(absolute image path, label)`` pairs of a split, in list-file order."""
        lines = (self.root / f"{split}_list.txt").read_text().splitlines()
        return [(self.root / rel, int(lab)) for rel, lab in (ln.rsplit(" ", 1) for ln in lines if ln.strip())]


def digits_split(val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, val images, val labels); images uint8 8x8 in 0..255, stratified split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]


def write_digits(root: str | Path, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> DigitsTree:
    """Write (once) the digits tree under ``root`` and describe it; an existing complete tree is reused."""
    import cv2

    root = Path(root)
    params = {"size": size, "val_fraction": val_fraction, "seed": seed, "version": 1}
    marker = root / _MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("params") == params:
            return DigitsTree(root, size, info["num_train"], info["num_val"])
        raise FileExistsError(f"{root}: holds a digits tree written with {info.get('params')}, not {params}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists and is not a digits tree; choose an empty or new folder")

    x_train, y_train, x_val, y_val = digits_split(val_fraction, seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split, xs, ys in (("train", x_train, y_train), ("val", x_val, y_val)):
            lines = []
            for n, (img, label) in enumerate(zip(xs, ys)):
                rel = f"{split}/{label}/{n:05d}.png"
                (tmp / split / str(label)).mkdir(parents=True, exist_ok=True)
                big = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
                if not cv2.imwrite(str(tmp / rel), big):
                    raise OSError(f"could not write {tmp / rel}")
                lines.append(f"{rel} {label}")
            (tmp / f"{split}_list.txt").write_text("\n".join(lines) + "\n")
        (tmp / "label_list.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(NAMES)))
        info = {"params": params, "num_train": len(y_train), "num_val": len(y_val)}
        (tmp / _MARKER).write_text(json.dumps(info, indent=1))
        if root.exists():
            root.rmdir()  # empty (checked above)
        try:
            os.rename(tmp, root)
        except OSError:
            if not marker.is_file():  # not a concurrent writer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return DigitsTree(root, size, len(y_train), len(y_val))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m res2net.data.digits", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="output folder (created)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    tree = write_digits(a.root, a.size, a.val_fraction, a.seed)
    print(f"{tree.root}: {tree.num_train} train / {tree.num_val} val images, {a.size}x{a.size} PNG")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
