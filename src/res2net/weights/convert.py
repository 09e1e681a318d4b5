"""``res2net convert``'s work: any supported weights file -> a ``.safetensors`` with provenance metadata."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from res2net.models.res2net import Res2Net
from res2net.models.zoo import get_card
from res2net.weights.formats import WeightsError, read_weights
from res2net.weights.load import guess_model, load_weights, semantics_origin


def convert_to_safetensors(src: str | Path, dst: str | Path, model_name: str | None = None) -> dict[str, str]:
    """Convert ``src`` (any supported format) to ``dst`` .safetensors with provenance metadata.

    The model is guessed from the file when ``model_name`` is not given. Returns the metadata.
    """
    raw = read_weights(src)
    if model_name is None:
        model_name = guess_model(raw)
        if model_name is None:
            raise WeightsError(f"{src}: could not tell which model these weights belong to; pass --model NAME")
    model = Res2Net(get_card(model_name).config.with_overrides(num_classes=1000))  # as create_model builds it
    origin = load_weights(model, raw)  # the tensors already read: the file is read once
    if origin == "unknown":  # the file does not say; record the semantics of the model it was checked in
        origin = semantics_origin(model.cfg)
    meta = {
        "format": "res2net",
        "model": model_name,
        "origin": origin,
        "source": Path(src).name,
        "source_sha256": raw.sha256,
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst), metadata=meta)
    return meta
