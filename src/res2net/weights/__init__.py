"""Weights: safe readers for every ecosystem's files, PaddleClas key mapping, downloads and cache."""

from res2net.weights.convert import convert_to_safetensors
from res2net.weights.formats import WeightsError, read_weights
from res2net.weights.load import guess_model, load_weights

__all__ = ["WeightsError", "convert_to_safetensors", "guess_model", "load_weights", "read_weights"]
