"""From logits to answers: softmax, top-k with one tie rule, and class names.

The Predictor and the server both answer with these, so a class list, a score and the order of two
equally likely classes never depend on which one was asked: classes are ranked by their logits (not
the probabilities, which underflow to equal zeros far from the top), and equal logits rank the lower
class id first. Scores are softmax probabilities in float64, as PaddleClas's ``Topk`` postprocess.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from res2net.errors import Res2NetError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (``[..., classes]``)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most likely classes per row, most likely first, and their probabilities.

    Ranked by ``logits`` with a stable sort, so equal logits keep the lower class id first.
    """
    logits = np.asarray(logits)
    k = min(k, logits.shape[-1])
    idx = np.argsort(-logits, axis=-1, kind="stable")[..., :k].astype(np.int64)
    return idx, np.take_along_axis(softmax(logits), idx, axis=-1)


def load_labels(path: str | Path | None = None) -> list[str]:
    """Class names, one per line; ``"<id> <name>"`` lines (PaddleClas's format) are accepted.

    ``None`` gives the ImageNet-1k names PaddleClas prints (``res2net/assets/imagenet1k_label_list.txt``).
    """
    if path is None:
        text = (resources.files("res2net") / "assets" / "imagenet1k_label_list.txt").read_text()
        source = "imagenet1k_label_list.txt"
    else:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise Res2NetError(f"{path}: cannot read the label file ({e.strerror})") from None
        source = str(path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    parts = [line.split(maxsplit=1) for line in lines]
    if parts and all(len(p) == 2 and p[0].isdigit() for p in parts):
        ids = [int(p[0]) for p in parts]
        if ids != list(range(len(ids))):
            raise Res2NetError(f"{source}: class ids must run 0..{len(ids) - 1} in order")
        return [p[1] for p in parts]
    return lines
