"""Images in, top-k classes out: :class:`Predictor` (engine choice, accuracy gate, batching) and its post-processing."""

from res2net.data.labels import load_labels
from res2net.predict.postprocess import softmax, top_k
from res2net.predict.predictor import DEFAULT_MODEL, Predictor

__all__ = ["DEFAULT_MODEL", "Predictor", "load_labels", "softmax", "top_k"]
