"""From logits to answers: softmax and top-k with one tie rule (class names: :mod:`res2net.data.labels`).

The Predictor and the server both answer with these, so a class list, a score and the order of two
equally likely classes never depend on which one was asked: classes are ranked by their logits (not
the probabilities, which underflow to equal zeros far from the top), and equal logits rank the lower
class id first. Scores are softmax probabilities in float64, as PaddleClas's ``Topk`` postprocess.
"""

from __future__ import annotations

import numpy as np


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
