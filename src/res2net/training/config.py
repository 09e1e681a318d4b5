"""Training configs: our YAML schema, ``-o Section.key=value`` overrides, and PaddleClas YAML translation.

Our configs use PaddleClas's section names (``Global``, ``Arch``, ``Loss``, ``Optimizer``, ``EMA``,
``DataLoader.Train``/``DataLoader.Eval``, ``Distillation``) with flat keys, so overrides read the way a
PaddleClas user expects (``-o Global.epochs=120 -o Arch.name=Res2Net101_vd_26w_4s``). Every key has a
default in :data:`DEFAULTS`; an unknown key is an error with a suggestion, never silently ignored.

A PaddleClas YAML (``ppcls/configs/ImageNet/Res2Net/*.yaml`` and the like) is recognised by its
``Loss.Train`` list / ``transform_ops`` and translated; its ``-o`` overrides are applied in PaddleClas's
own key space *before* translation, so ``-o DataLoader.Train.sampler.batch_size=32`` works there too.
The common PaddleClas override keys are also accepted on our configs (:data:`PADDLE_ALIASES`).
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from res2net.training.keys import ConfigError, get_path
from res2net.training.paddleclas_config import is_paddleclas_config, translate_paddleclas

log = logging.getLogger(__name__)


# The PaddleClas ImageNet recipe for Res2Net (paddleclas.md §4.1) is the default of every key.
DEFAULTS: dict[str, Any] = {
    "Global": {
        "output_dir": "output",
        "epochs": 200,
        "max_steps": None,  # stop after this many optimizer steps in total (smoke runs, benchmarks)
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "seed": 0,
        "deterministic": False,  # deterministic algorithms + seeded everything: resumes bit-exactly
        "amp": "none",  # none | bf16 | fp16 (fp16: CUDA only, with a GradScaler)
        "channels_last": True,
        "compile": False,  # torch.compile the model
        "eval_interval": 1,  # epochs; 0 disables evaluation during training
        "save_interval_steps": 0,  # also checkpoint every N optimizer steps (0: end of epoch only)
        "log_interval": 10,  # optimizer steps between progress-bar / TensorBoard updates
        "tensorboard": True,
        "progress": True,
        "resume": "auto",  # auto (from output_dir if a checkpoint exists) | never | path to last.pt
        "on_nonfinite": "stop",  # stop | skip: what a NaN/inf loss does
        "threads": None,  # torch intra-op threads (None: torch's default)
    },
    "Arch": {
        "name": "Res2Net50_vd_26w_4s",
        "num_classes": 1000,
        "pretrained": None,  # fine-tune from: true (official weights) or a weights file
        "drop_path_rate": 0.0,  # stochastic depth
        "drop_rate": 0.0,
        "zero_init_last": False,  # PaddleClas does not zero-init the last BN of each block
        "sync_bn": False,
        "freeze_backbone": False,  # train only the (new) classifier
    },
    "Loss": {"label_smoothing": 0.1},
    "Optimizer": {
        "name": "momentum",  # momentum (SGD) | nesterov | adamw
        "lr": 0.1,
        "lr_batch_size": 256,  # ``lr`` is for this global batch; scaled linearly to the actual one
        "momentum": 0.9,
        "weight_decay": 1e-4,  # PaddleClas L2: coupled, on every parameter
        "norm_weight_decay": None,  # weight decay of BN/bias parameters (None: same as weight_decay)
        "scheduler": "cosine",  # cosine (per iteration) | constant
        "min_lr": 0.0,
        "warmup_epochs": 0.0,
        "warmup_start_lr": 0.0,
        "clip_grad_norm": None,
        "accum_steps": 1,  # gradient accumulation: micro-batches per optimizer step
        "fused": None,  # None: fused/foreach implementation where torch has one
    },
    "EMA": {"enabled": False, "decay": 0.9999, "every_steps": 1},
    "DataLoader": {
        "Train": {
            "root": "./dataset/ILSVRC2012/",
            "list": "./dataset/ILSVRC2012/train_list.txt",  # null: ImageFolder at root
            "label_map": None,
            "batch_size": 64,  # per process
            "num_workers": 4,
            "drop_last": False,
            "crop_size": 224,
            "scale": [0.08, 1.0],
            "ratio": [0.75, 1.3333333333333333],
            "hflip": 0.5,
            "interpolation": "bilinear",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "mixup_alpha": 0.2,
        },
        "Eval": {
            "root": "./dataset/ILSVRC2012/",
            "list": "./dataset/ILSVRC2012/val_list.txt",
            "label_map": None,
            "batch_size": 64,
            "num_workers": 4,
            "resize_short": 256,
            "crop_size": 224,
            "interpolation": "bilinear",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
    },
    "Distillation": {
        "enabled": False,
        "teacher": None,  # any create_model name
        "teacher_pretrained": True,  # true (official weights) or a weights file
        "teacher_num_classes": None,  # default: Arch.num_classes
        "loss": "js",  # js (SSLD) | kl
        "temperature": 1.0,  # for kl
        "distill_weight": 1.0,
        "label_weight": 0.0,  # > 0 mixes in the label loss (labeled images only)
        "unlabeled_root": None,  # folder of images only the teacher labels
    },
}

# PaddleClas override keys accepted on our configs.
PADDLE_ALIASES = {
    "Global.class_num": "Arch.num_classes",
    "Arch.class_num": "Arch.num_classes",
    "Global.pretrained_model": "Arch.pretrained",
    "Global.checkpoints": "Global.resume",
    "Global.print_batch_step": "Global.log_interval",
    "Global.use_visualdl": "Global.tensorboard",
    "Optimizer.lr.learning_rate": "Optimizer.lr",
    "Optimizer.lr.warmup_epoch": "Optimizer.warmup_epochs",
    "Optimizer.lr.eta_min": "Optimizer.min_lr",
    "Optimizer.regularizer.coeff": "Optimizer.weight_decay",
    "DataLoader.Train.dataset.image_root": "DataLoader.Train.root",
    "DataLoader.Train.dataset.cls_label_path": "DataLoader.Train.list",
    "DataLoader.Train.sampler.batch_size": "DataLoader.Train.batch_size",
    "DataLoader.Train.sampler.drop_last": "DataLoader.Train.drop_last",
    "DataLoader.Train.loader.num_workers": "DataLoader.Train.num_workers",
    "DataLoader.Eval.dataset.image_root": "DataLoader.Eval.root",
    "DataLoader.Eval.dataset.cls_label_path": "DataLoader.Eval.list",
    "DataLoader.Eval.sampler.batch_size": "DataLoader.Eval.batch_size",
    "DataLoader.Eval.loader.num_workers": "DataLoader.Eval.num_workers",
}


# ---------------------------------------------------------------------------------------------- helpers
def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


_KNOWN_KEYS = set(_flatten(DEFAULTS))


def _suggest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _merge(base: dict, update: dict, path: str = "") -> dict:
    """``update`` into a copy of ``base``; keys must exist in ``base``."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        key = f"{path}{k}"
        if k not in out:
            raise ConfigError(f"unknown config key {key!r}.{_suggest(key, _KNOWN_KEYS)}")
        if isinstance(out[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {key!r} is a section; got {v!r}")
            out[k] = _merge(out[k], v, key + ".")
        else:
            out[k] = v
    return out


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string (it wants ``1.0e-4``); everyone writes ``1e-4``, so accept it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_value(text: str) -> Any:
    """An override's value as YAML (``1e-4``, ``true``, ``[1, 2]``, ``null``); a bare word stays a string."""
    try:
        return _yaml(text)
    except yaml.YAMLError:
        return text


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like Section.key=value")
    return key.strip(), parse_value(value.strip())


def _set_path(d: dict, key: str, value: Any, strict: bool) -> None:
    parts = key.split(".")
    node = d
    for i, p in enumerate(parts[:-1]):
        if p not in node or not isinstance(node[p], dict):
            if strict:
                raise ConfigError(f"unknown config key {key!r}.{_suggest(key, _KNOWN_KEYS)}")
            node[p] = {}
        node = node[p]
        del i
    if strict and parts[-1] not in node:
        raise ConfigError(f"unknown config key {key!r}.{_suggest(key, _KNOWN_KEYS | set(PADDLE_ALIASES))}")
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------------- loading
def bundled_configs() -> list[str]:
    """Names of the YAMLs shipped in ``res2net/configs`` (usable as ``-c NAME``)."""
    root = resources.files("res2net") / "configs"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: str | Path) -> dict:
    path = Path(source)
    if not path.is_file():
        bundled = resources.files("res2net") / "configs" / f"{Path(str(source)).name.removesuffix('.yaml')}.yaml"
        if bundled.is_file():
            text = bundled.read_text(encoding="utf-8")
        else:
            hint = _suggest(str(source), bundled_configs())
            raise ConfigError(
                f"{source}: no such config file, and no bundled config of that name.{hint}"
                f" Bundled: {', '.join(bundled_configs())}"
            )
    else:
        text = path.read_text(encoding="utf-8")
    try:
        raw = _yaml(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def load_config(source: str | Path | dict | None = None, overrides: Iterable[str] = ()) -> dict:
    """Our full config from a YAML path, a bundled config name, a dict or ``None`` (defaults), plus overrides.

    ``overrides`` are ``Section.key=value`` strings, applied last. The result is validated.
    """
    raw = copy.deepcopy(source) if isinstance(source, dict) else ({} if source is None else _read_yaml(source))
    parsed = [_split_override(o) for o in overrides]
    if is_paddleclas_config(raw):
        for key, value in parsed:
            _set_path(raw, key, value, strict=False)
        cfg = _merge(DEFAULTS, translate_paddleclas(raw))
        cfg["_source"] = "paddleclas"
    else:
        cfg = _merge(DEFAULTS, {k: v for k, v in raw.items() if not k.startswith("_")})
        for key, value in parsed:
            key = PADDLE_ALIASES.get(key, key)
            if key == "Arch.pretrained" and isinstance(value, str) and value and not Path(value).suffix:
                value += ".pdparams"
            _set_path(cfg, key, value, strict=True)
        cfg["_source"] = "res2net"
    validate(cfg)
    return cfg


_CHOICES = {
    "Global.amp": ("none", "bf16", "fp16"),
    "Global.on_nonfinite": ("stop", "skip"),
    "Optimizer.name": ("momentum", "nesterov", "adamw"),
    "Optimizer.scheduler": ("cosine", "constant"),
    "Distillation.loss": ("js", "kl"),
    "DataLoader.Train.interpolation": ("bilinear", "bicubic", "nearest"),
    "DataLoader.Eval.interpolation": ("bilinear", "bicubic", "nearest"),
}
_POSITIVE_INT = (
    "Global.epochs",
    "DataLoader.Train.batch_size",
    "DataLoader.Eval.batch_size",
    "DataLoader.Train.crop_size",
    "DataLoader.Eval.crop_size",
    "DataLoader.Eval.resize_short",
    "Optimizer.accum_steps",
    "EMA.every_steps",
    "Global.log_interval",
)
_NON_NEGATIVE = (
    "Optimizer.lr",
    "Optimizer.weight_decay",
    "Optimizer.warmup_epochs",
    "Optimizer.min_lr",
    "Loss.label_smoothing",
    "DataLoader.Train.mixup_alpha",
    "DataLoader.Train.num_workers",
    "DataLoader.Eval.num_workers",
    "Global.save_interval_steps",
    "Global.eval_interval",
    "Arch.drop_path_rate",
    "Distillation.distill_weight",
    "Distillation.label_weight",
)


def validate(cfg: dict) -> None:
    """Type/range checks with messages naming the key."""
    for key, choices in _CHOICES.items():
        v = get_path(cfg, key)
        if isinstance(v, str):
            v = v.lower()
            _set_path(cfg, key, v, strict=True)
        if v not in choices:
            raise ConfigError(f"{key}={v!r}: must be one of {', '.join(choices)}")
    for key in _POSITIVE_INT:
        v = get_path(cfg, key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{key}={v!r}: must be a positive integer")
    for key in _NON_NEGATIVE:
        v = get_path(cfg, key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{key}={v!r}: must be a non-negative number")
    if not 0 <= cfg["Loss"]["label_smoothing"] < 1:
        raise ConfigError(f"Loss.label_smoothing={cfg['Loss']['label_smoothing']}: must be in [0, 1)")
    if not 0 <= cfg["EMA"]["decay"] < 1:
        raise ConfigError(f"EMA.decay={cfg['EMA']['decay']}: must be in [0, 1)")
    ms = cfg["Global"]["max_steps"]
    if ms is not None and (not isinstance(ms, int) or ms <= 0):
        raise ConfigError(f"Global.max_steps={ms!r}: must be a positive integer or null")
    d = cfg["Distillation"]
    if d["enabled"] and not d["teacher"]:
        raise ConfigError("Distillation.enabled is true but Distillation.teacher is not set")
    if d["enabled"] and d["loss"] == "kl" and not d["temperature"] > 0:
        raise ConfigError(f"Distillation.temperature={d['temperature']}: must be > 0")


def dump_config(cfg: dict) -> str:
    """The resolved config as YAML (written next to checkpoints, so a run documents itself)."""
    return yaml.safe_dump({k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=False)
