"""Our PaddleClas-semantics models as timm models: ``timm.create_model("Res2Net50_vd_26w_4s_ssld")``.

timm (checked up to 1.0.31) has no plugin entry point, so registration happens in Python: it runs
when ``res2net`` is imported after timm, or right after timm is imported when ``res2net`` came
first (see ``res2net/__init__.py``); ``import res2net.timm`` does it explicitly.

Names (documented in ``docs/ecosystem.md``): each PaddleClas model under its exact PaddleClas name
(``Res2Net50_26w_4s``, ``Res2Net50_vd_26w_4s_ssld``, ...) and the small test model as
``Res2Net_tiny``. Every timm name is lowercase, so these mixed-case names cannot collide with
timm's own ``res2net50_26w_4s``/``res2net50d``...; a name timm already has is never overwritten.

timm's own scripts do not import ``res2net``; run them through this module, unchanged::

    python -m res2net.timm path/to/timm/train.py --model Res2Net50_vd_26w_4s_ssld --pretrained ...
"""

from __future__ import annotations

import importlib
import logging
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from res2net.models.zoo import timm_names

log = logging.getLogger(__name__)

# timm's create_model arguments our factory takes under another name or not at all.
_FEATURE_ARGS = ("features_only", "out_indices", "feature_cls")


def _weights(pretrained: bool, cfg: dict[str, Any]) -> bool | str | Path:
    """What ``pretrained`` means given timm's merged pretrained_cfg: 'file' beats 'hf_hub_id' beats ours."""
    if not pretrained:
        return False
    if cfg.get("file"):
        path = Path(cfg["file"])
        return path / "model.safetensors" if path.is_dir() else path
    if cfg.get("hf_hub_id") and cfg.get("source") == "hf-hub":
        return "hf-hub:" + cfg["hf_hub_id"]
    return True


def _as_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None or isinstance(cfg, str):  # a tag: our names have none
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    return dict(cfg.to_dict()) if hasattr(cfg, "to_dict") else dict(vars(cfg))


def build(
    card_name: str,
    pretrained: bool = False,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Our :func:`res2net.create_model` behind timm's entrypoint signature.

    Takes what timm's ``create_model`` and scripts pass: ``pretrained_cfg`` (tag, dict or
    ``PretrainedCfg``, e.g. from ``hf-hub:``/``local-dir:``) with ``pretrained_cfg_overlay`` (timm's
    ``--pretrained-path`` sets ``file``), ``num_classes``, ``in_chans``, ``drop_rate``,
    ``drop_path_rate``, ``global_pool`` (``avg``/``fast``, the same here), ``features_only``,
    ``out_indices`` (timm's default: all five), ``feature_cls`` (``list``/``dict``) and any
    :class:`Res2NetConfig` field. Anything else raises ``TypeError`` naming it.
    ``cache_dir`` is accepted and ignored (downloads use our cache or the Hugging Face cache).
    """
    from res2net.factory import create_model
    from res2net.models.res2net import Res2NetConfig

    cfg = {**_as_dict(pretrained_cfg), **(pretrained_cfg_overlay or {})}
    if kwargs.get("num_classes") is None and isinstance(cfg.get("num_classes"), int) and cfg["num_classes"] > 0:
        kwargs["num_classes"] = cfg["num_classes"]  # a hf-hub:/local-dir: config's head size, as timm does
    global_pool = kwargs.pop("global_pool", "avg")
    kwargs.pop("pretrained_model_args", None)  # hf-hub config.json model_args, already merged into kwargs
    features = {k: kwargs.pop(k) for k in _FEATURE_ARGS if k in kwargs}
    if features.get("features_only"):
        features.setdefault("out_indices", (0, 1, 2, 3, 4))
    unknown = sorted(set(kwargs) - set(Res2NetConfig.__dataclass_fields__) - {"num_classes"})
    if unknown:
        supported = ["num_classes", "global_pool", *_FEATURE_ARGS, *sorted(Res2NetConfig.__dataclass_fields__)]
        raise TypeError(f"{card_name}: timm option(s) {unknown} are not supported by res2net; supported: {supported}")
    model = create_model(card_name, pretrained=_weights(pretrained, cfg), **features, **kwargs)
    if global_pool not in ("avg", "fast") and not features.get("features_only"):
        model.reset_classifier(model.num_classes, global_pool)
    return model


def _entrypoint(timm_name: str, card_name: str) -> Callable[..., nn.Module]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return build(card_name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"{card_name} with PaddleClas semantics, built by res2net.create_model."
    return entrypoint


default_cfgs: dict[str, dict[str, Any]] = {}  # read by timm's register_model: our cards as timm cfgs


def register() -> list[str]:
    """Register our names with timm (idempotent); returns the names now registered by us."""
    import timm.models
    from timm.models import register_model

    from res2net.models.zoo import get_card

    ours = []
    for timm_name, card_name in timm_names().items():
        existing = timm.models.is_model(timm_name)
        if existing and getattr(timm.models.model_entrypoint(timm_name), "__module__", "") == __name__:
            ours.append(timm_name)
            continue
        if existing:
            log.info("timm already has a model named %s; not registering ours", timm_name)
            continue
        cfg = get_card(card_name).pretrained_cfg()
        cfg["source"] = None  # our entrypoint downloads; timm must not try
        default_cfgs[timm_name] = cfg
        register_model(_entrypoint(timm_name, card_name))
        ours.append(timm_name)
    return ours


def main(argv: list[str] | None = None) -> int:
    """``python -m res2net.timm SCRIPT.py [ARGS...]``: run a timm script with our models registered."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: python -m res2net.timm SCRIPT.py [SCRIPT ARGS...]  (e.g. timm's train.py, validate.py)")
        return 0 if argv else 2
    script = Path(argv[0])
    if not script.is_file():
        print(f"error: {script}: no such script", file=sys.stderr)
        return 2
    importlib.import_module("res2net.timm").register()  # the package's copy, not this __main__ one
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
