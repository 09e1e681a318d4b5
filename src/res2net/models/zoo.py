"""The model zoo: every named Res2Net as data — its graph config and its card.

Two families live here:

* **PaddleClas names** (``Res2Net50_vd_26w_4s`` ...) run with PaddleClas semantics
  (``stage_rule="stride"``, pools exclude padding), so PaddleClas ``.pdparams`` reproduce
  PaddleClas's logits. Their cards carry the seed page's accuracy and the official URLs.
* **timm / authors' names** (``res2net50d`` ...) run with timm semantics (``stage_rule="downsample"``,
  pools count padding), so timm and original checkpoints reproduce timm's logits.

Parameter and FLOP counts on the cards are *ours* (computed by ``res2net stats``, tested exactly);
the seed's own figures are kept alongside because two of its rows are swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from res2net.data.preprocess import Preprocess
from res2net.errors import Res2NetError
from res2net.models.res2net import Res2NetConfig

PADDLE_BASE_URL = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/"
TIMM_BASE_URL = "https://huggingface.co/timm/"


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to know about a named model, kept as data beside its config."""

    name: str
    config: Res2NetConfig
    family: str  # "paddleclas" or "timm"
    description: str
    top1: float | None = None  # ImageNet-1k val, as published by the weights' source
    top5: float | None = None
    seed_flops_g: float | None = None  # the seed page's column, verbatim (see module docstring)
    seed_params_m: float | None = None
    url: str | None = None
    weights_origin: str | None = None  # "paddle" | "timm" | "original"
    sha256: str | None = None  # published digest when the source gives one; else recorded on first download
    preprocess: Preprocess = field(default_factory=Preprocess)
    license: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def has_weights(self) -> bool:
        return self.url is not None


_PADDLE_LICENSE = (
    "PaddleClas code is Apache-2.0; PaddleClas states no separate licence for its weights. "
    "Converted from the official PaddleClas release."
)
_TIMM_LICENSE = "timm lists these weights as licence 'unknown'; trained by the Res2Net authors (CC BY-NC-SA 4.0 code)."

# The forward semantics each ecosystem's weights were trained with (res2net.models.res2net docstring):
# the one table the zoo's configs, the weights loader's warning and the timm anchor read.
SEMANTICS: dict[str, dict] = {
    "paddle": dict(stage_rule="stride", pool_count_include_pad=False),
    "timm": dict(stage_rule="downsample", pool_count_include_pad=True),
}
_PADDLE = SEMANTICS["paddle"]
_TIMM = SEMANTICS["timm"]
_VD = dict(deep_stem=True, stem_width=32, avg_down=True)

_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 12, 48, 3)}

_REGISTRY: dict[str, ModelCard] = {}


def _register(card: ModelCard) -> None:
    if card.name in _REGISTRY:
        raise ValueError(f"duplicate model name {card.name}")
    _REGISTRY[card.name] = card


def _paddle(name: str, depth: int, width: int, scale: int, vd: bool, top1, top5, flops, params, ref=None, ssld=False):
    cfg = Res2NetConfig(
        layers=_DEPTHS[depth],
        base_width=width,
        scale=scale,
        paddle_family="vd" if vd else "plain",
        **_PADDLE,
        **(_VD if vd else {}),
    )
    file = f"{name.removesuffix('_ssld')}_ssld_pretrained.pdparams" if ssld else f"{name}_pretrained.pdparams"
    desc = f"Res2Net-{depth}{'-vd' if vd else ''} {width}w x {scale}s, PaddleClas semantics"
    if ssld:
        desc += ", SSLD-distilled weights"
    if ref:
        desc += f" (paper/authors: top-1 {ref[0]}, top-5 {ref[1]})"
    _register(
        ModelCard(
            name=name,
            config=cfg,
            family="paddleclas",
            description=desc,
            top1=top1,
            top5=top5,
            seed_flops_g=flops,
            seed_params_m=params,
            url=PADDLE_BASE_URL + file if top1 is not None else None,
            weights_origin="paddle" if top1 is not None else None,
            license=_PADDLE_LICENSE,
        )
    )


# Seed table (shared/seed/Res2Net.en.md §1.2). FLOPs/params verbatim, rows 2/3 and 4 swapped there.
_paddle("Res2Net50_26w_4s", 50, 26, 4, False, 0.793, 0.946, 8.520, 25.700, ref=(0.780, 0.936))
_paddle("Res2Net50_vd_26w_4s", 50, 26, 4, True, 0.798, 0.949, 8.370, 25.060)
_paddle("Res2Net50_vd_26w_4s_ssld", 50, 26, 4, True, 0.831, 0.966, 8.370, 25.060, ssld=True)
_paddle("Res2Net50_14w_8s", 50, 14, 8, False, 0.795, 0.947, 9.010, 25.720, ref=(0.781, 0.939))
_paddle("Res2Net101_vd_26w_4s", 101, 26, 4, True, 0.806, 0.952, 16.670, 45.220)
_paddle("Res2Net101_vd_26w_4s_ssld", 101, 26, 4, True, 0.839, 0.971, 16.670, 45.220, ssld=True)
_paddle("Res2Net152_vd_26w_4s", 152, 26, 4, True, None, None, None, None)
_paddle("Res2Net200_vd_26w_4s", 200, 26, 4, True, 0.812, 0.957, 31.490, 76.210)
_paddle("Res2Net200_vd_26w_4s_ssld", 200, 26, 4, True, 0.851, 0.974, 31.490, 76.210, ssld=True)


def _timm(name: str, depth: int, width: int, scale: int, top1: float, top5: float, *, vd=False, card=1, alias=()):
    cfg = Res2NetConfig(
        layers=_DEPTHS[depth], base_width=width, scale=scale, cardinality=card, **_TIMM, **(_VD if vd else {})
    )
    _register(
        ModelCard(
            name=name,
            config=cfg,
            family="timm",
            description=f"Res2Net-{depth}{'-d (v1b)' if vd else ''} {width}w x {scale}s"
            f"{f' x {card}c' if card > 1 else ''}, timm/authors semantics",
            top1=top1,
            top5=top5,
            url=f"{TIMM_BASE_URL}{name}.in1k/resolve/main/model.safetensors",
            weights_origin="timm",
            license=_TIMM_LICENSE,
            aliases=alias,
            preprocess=Preprocess(),  # timm: crop_pct 0.875 -> resize 256, crop 224, bilinear
        )
    )


# timm results-imagenet.csv (shared/reference/peers.md §1.2), in percent there; fractions here.
_timm("res2net50_26w_4s", 50, 26, 4, 0.77994, 0.93860)
_timm("res2net50_48w_2s", 50, 48, 2, 0.77528, 0.93562)
_timm("res2net50_14w_8s", 50, 14, 8, 0.78142, 0.93852)
_timm("res2net50_26w_6s", 50, 26, 6, 0.78586, 0.94120)
_timm("res2net50_26w_8s", 50, 26, 8, 0.78950, 0.94280)
_timm("res2net101_26w_4s", 101, 26, 4, 0.79192, 0.94466)
_timm("res2next50", 50, 4, 4, 0.78238, 0.93904, card=8)
_timm("res2net50d", 50, 26, 4, 0.80280, 0.95028, vd=True, alias=("res2net50_v1b_26w_4s",))
_timm("res2net101d", 101, 26, 4, 0.81236, 0.95346, vd=True, alias=("res2net101_v1b_26w_4s",))

# Small member for tests, CI and the digits demo: a real Res2Net (same blocks), 1 block per stage.
_register(
    ModelCard(
        name="res2net_tiny",
        config=Res2NetConfig(layers=(1, 1, 1, 1), base_width=8, scale=4, **_PADDLE),
        family="paddleclas",
        description="Res2Net-14 8w x 4s: a small member for tests and quick experiments",
    )
)


class UnknownModelError(Res2NetError, ValueError):
    """A model name that is not registered."""


def _lookup_table() -> dict[str, str]:
    """Exact names and aliases first; lowercase forms only where they do not collide."""
    table: dict[str, str] = {}
    for card in _REGISTRY.values():
        for n in (card.name, *card.aliases):
            table[n] = card.name
    lowered: dict[str, set[str]] = {}
    for n, target in list(table.items()):
        lowered.setdefault(n.lower(), set()).add(target)
    for low, targets in lowered.items():
        if low not in table and len(targets) == 1:
            table[low] = next(iter(targets))
    return table


_LOOKUP = _lookup_table()


def list_models(pattern: str | None = None, family: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names, optionally filtered by a glob ``pattern``, family or weight availability."""
    import fnmatch

    names = [
        c.name
        for c in _REGISTRY.values()
        if (family is None or c.family == family) and (not pretrained or c.has_weights)
    ]
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    return names


def get_card(name: str) -> ModelCard:
    """Resolve a name (exact, alias, or unambiguous lowercase) to its card.

    ``res2net50_26w_4s`` and ``res2net50_14w_8s`` are timm names; the lowercase forms of the
    PaddleClas names that collide with them therefore mean the timm models. Use the exact
    PaddleClas capitalisation for those two.
    """
    key = _LOOKUP.get(name) or _LOOKUP.get(name.lower())
    if key is None:
        import difflib

        close = difflib.get_close_matches(name, list(_LOOKUP), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} See res2net.list_models().")
    return _REGISTRY[key]
