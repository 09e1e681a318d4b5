"""Hugging Face Hub: ``hf-hub:ORG/REPO`` weights, and the Hub layout for publishing ours.

Downloads go through ``huggingface_hub`` (the ``hf`` extra), so they share its cache with timm
and honour ``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and tokens
(``HF_TOKEN`` or ``hf auth login``). :func:`save_pretrained` writes what timm's ``push_to_hub``
writes — ``model.safetensors`` and a ``config.json`` (``architecture``, ``num_classes``,
``pretrained_cfg``) — plus a ``README.md`` model card, so a converted PaddleClas checkpoint can be
uploaded with ``hf upload ORG/REPO DIR`` and loaded back with ``pretrained="hf-hub:ORG/REPO"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from res2net.errors import require
from res2net.weights.raw import WeightsError

HF_PREFIX = "hf-hub:"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class HubError(WeightsError):
    """A Hugging Face Hub repository or file could not be had."""


def is_hf_hub(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(HF_PREFIX)


def parse_hf_hub(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:ORG/REPO@REV"`` -> ``("ORG/REPO", "REV")``; the revision is optional."""
    repo = spec.removeprefix(HF_PREFIX)
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise HubError(f"{spec!r}: expected hf-hub:ORG/REPO[@REVISION]")
    return repo, revision or None


def hf_download(repo_id: str, filename: str, revision: str | None = None, *, local_files_only: bool = False) -> Path:
    """One file of a Hub repository, through the Hugging Face cache; errors name the repo and the fix."""
    hub = require("huggingface_hub", "loading from the Hugging Face Hub")
    from huggingface_hub import errors

    try:
        path = hub.hf_hub_download(
            repo_id=repo_id, filename=filename, revision=revision, local_files_only=local_files_only
        )
        return Path(path)
    except errors.LocalEntryNotFoundError:
        raise HubError(
            f"{repo_id}/{filename}: not in the Hugging Face cache and the Hub cannot be reached "
            "(HF_HUB_OFFLINE set, or no network). Download it once online, or pass a local path."
        ) from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such Hugging Face Hub repository (or it is private: set HF_TOKEN)") from None
    except (errors.EntryNotFoundError, errors.RevisionNotFoundError) as e:
        raise HubError(f"{repo_id}: {filename} not found at revision {revision or 'main'}: {e}") from None
    except (errors.HfHubHTTPError, OSError) as e:
        raise HubError(f"{repo_id}/{filename}: download failed: {e}") from None


def weights_from_hf(spec: str) -> Path:
    """Local path of ``model.safetensors`` of ``hf-hub:ORG/REPO[@REV]``."""
    repo, revision = parse_hf_hub(spec)
    return hf_download(repo, WEIGHTS_NAME, revision)


def config_from_hf(spec: str) -> dict[str, Any]:
    """The ``config.json`` of ``hf-hub:ORG/REPO[@REV]`` (must name an ``architecture`` we know)."""
    repo, revision = parse_hf_hub(spec)
    path = hf_download(repo, CONFIG_NAME, revision)
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HubError(f"{spec}: config.json is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("architecture"), str):
        raise HubError(f"{spec}: config.json names no 'architecture'")
    return cfg


def _model_card(card, pretrained_cfg: dict[str, Any], provenance: str, metrics: dict[str, float]) -> str:
    p = card.preprocess
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items()) or "| (none recorded) | |"
    tags = "\n".join(f"- {t}" for t in ("image-classification", "res2net", "timm", "paddleclas"))
    return f"""---
library_name: timm
license: other
tags:
{tags}
---

# {card.name}

{card.description}.

## Use

```python
import res2net  # also registers the PaddleClas-semantics names with timm

model = res2net.create_model("{card.name}", pretrained="hf-hub:ORG/REPO")  # this repository
```

## Metrics (ImageNet-1k val unless stated)

| metric | value |
|---|---|
{rows}

## Preprocessing

Resize the short side to {p.resize_short} ({p.interpolation}), center-crop {p.crop_size}, {p.channel_order},
mean {list(p.mean)}, std {list(p.std)} (`pretrained_cfg` in config.json: crop_pct {pretrained_cfg["crop_pct"]:.4f}).

## Licence

{card.license or "See the source of the weights."}

## Provenance

{provenance}
"""


def timm_architecture(name: str) -> str:
    """The name timm knows the model by: timm's own for its family, our registered name otherwise."""
    from res2net.models.zoo import timm_names

    return {ours: theirs for theirs, ours in timm_names().items()}.get(name, name)


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    *,
    provenance: str | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write ``model`` in the Hugging Face Hub layout: ``model.safetensors``, ``config.json``, ``README.md``.

    ``config.json`` is timm's format; its ``architecture`` is our model name, which timm knows
    once ``res2net`` is imported (timm-family names are timm's own architectures, and our tensor
    names are timm's, so timm alone loads those). ``metrics`` (e.g. your own eval's top-1) go into
    the README beside the source's published ones.
    """
    from safetensors.torch import save_file

    card = getattr(model, "card", None)
    if card is None:
        raise WeightsError("save_pretrained needs a model made by res2net.create_model (it carries a card)")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    from res2net.weights.load import semantics_origin

    origin = semantics_origin(model.cfg)
    meta = {"format": "res2net", "model": card.name, "origin": origin}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME), metadata=meta)
    # The weights are these files, not the official ones: drop what points elsewhere.
    drop = ("url", "hf_hub_id", "source", "architecture", "tag")
    pcfg = {k: v for k, v in model.pretrained_cfg.items() if v is not None and k not in drop}
    config = {
        "architecture": timm_architecture(card.name),
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": "avg",
        "pretrained_cfg": pcfg,
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    published = {f"{k} (published)": v for k, v in (("top1", card.top1), ("top5", card.top5)) if v is not None}
    metrics = {**published, **(metrics or {})}
    provenance = provenance or (
        f"Weights of {card.name} ({card.weights_origin or 'untrained'} origin, {origin} forward semantics), "
        f"converted with res2net; official source: {card.url or 'none'}."
    )
    (out / "README.md").write_text(_model_card(card, pcfg, provenance, metrics))
    return out
