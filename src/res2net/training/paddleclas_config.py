"""PaddleClas training YAML -> our config: each supported op and option mapped, the rest refused by name.

A PaddleClas ``ppcls/configs/ImageNet/Res2Net/*.yaml`` trains here as it trains there; an op or
option without a faithful equivalent raises :class:`ConfigError` naming it rather than silently
training something else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from res2net.training.keys import ConfigError, get_path

log = logging.getLogger("res2net.training.config")

_IGNORED_OPS = {"DecodeImage", "ToCHWImage"}


# ---------------------------------------------------------------------------------------------- PaddleClas
def is_paddleclas_config(raw: dict) -> bool:
    """PaddleClas configs have a ``Loss.Train`` list and ``DataLoader.*.dataset`` blocks."""
    return isinstance(get_path(raw, "Loss.Train"), list) or isinstance(get_path(raw, "DataLoader.Train.dataset"), dict)


def _ops(items: list | None) -> list[tuple[str, dict]]:
    out = []
    for item in items or []:
        if isinstance(item, dict) and len(item) == 1:
            name, args = next(iter(item.items()))
            out.append((name, args or {}))
        else:
            raise ConfigError(f"PaddleClas op list entry {item!r} is not a one-key mapping")
    return out


def _translate_transforms(ops: list[tuple[str, dict]], section: str, out: dict) -> None:
    for name, args in ops:
        if name in _IGNORED_OPS:
            continue
        if name == "RandCropImage":
            out["crop_size"] = int(args.get("size", 224))
            if args.get("scale") is not None:
                out["scale"] = list(args["scale"])
            if args.get("ratio") is not None:
                out["ratio"] = list(args["ratio"])
            if args.get("interpolation"):
                out["interpolation"] = str(args["interpolation"]).lower()
        elif name == "RandFlipImage":
            if args.get("flip_code", 1) != 1:
                raise ConfigError(f"{section}: RandFlipImage flip_code={args['flip_code']} is not supported (only 1)")
            out["hflip"] = 0.5
        elif name == "ResizeImage":
            if args.get("resize_short") is None:
                raise ConfigError(f"{section}: ResizeImage without resize_short is not supported")
            out["resize_short"] = int(args["resize_short"])
            if args.get("interpolation"):
                out["interpolation"] = str(args["interpolation"]).lower()
        elif name == "CropImage":
            out["crop_size"] = int(args["size"])
        elif name == "NormalizeImage":
            if args.get("mean") is not None:
                out["mean"] = list(args["mean"])
            if args.get("std") is not None:
                out["std"] = list(args["std"])
            if str(args.get("order", "")) not in ("", "hwc"):
                raise ConfigError(f"{section}: NormalizeImage order={args['order']!r} is not supported")
        else:
            raise ConfigError(
                f"{section}: PaddleClas transform {name!r} has no equivalent here "
                f"(supported: RandCropImage, RandFlipImage, ResizeImage, CropImage, NormalizeImage)"
            )


def _translate_loader(raw: dict, split: str, out: dict) -> None:
    sec = get_path(raw, f"DataLoader.{split}")
    if not isinstance(sec, dict):
        return
    where = f"DataLoader.{split}"
    ds = sec.get("dataset") or {}
    name = ds.get("name", "ImageNetDataset")
    if name == "ImageNetDataset":
        if ds.get("image_root") is not None:
            out["root"] = ds["image_root"]
        if ds.get("cls_label_path") is not None:
            out["list"] = ds["cls_label_path"]
    elif name in ("ImageFolder", "ImageFolderDataset"):
        out["root"] = ds.get("image_root") or ds.get("root")
        out["list"] = None
    else:
        raise ConfigError(f"{where}.dataset: PaddleClas dataset {name!r} is not supported (ImageNetDataset only)")
    _translate_transforms(_ops(ds.get("transform_ops")), f"{where}.dataset.transform_ops", out)
    for op, args in _ops(ds.get("batch_transform_ops")):
        if op == "MixupOperator":
            out["mixup_alpha"] = float(args.get("alpha", 0.2))
        else:
            raise ConfigError(f"{where}.dataset.batch_transform_ops: {op!r} is not supported (MixupOperator only)")
    if split == "Train" and not ds.get("batch_transform_ops"):
        out["mixup_alpha"] = 0.0
    sampler = sec.get("sampler") or {}
    if "batch_size" in sampler:
        out["batch_size"] = int(sampler["batch_size"])
    if split == "Train" and "drop_last" in sampler:
        out["drop_last"] = bool(sampler["drop_last"])
    loader = sec.get("loader") or {}
    if "num_workers" in loader:
        out["num_workers"] = int(loader["num_workers"])


def _translate_arch_and_global(raw: dict, out: dict) -> None:
    """``Arch`` (name, classes, pretrained weights) and ``Global`` (output, epochs, seed, resume, device, AMP, EMA)."""
    g = raw.get("Global") or {}
    arch = raw.get("Arch") or {}
    if "name" not in arch:
        raise ConfigError("PaddleClas config has no Arch.name")
    if arch["name"] in ("DistillationModel",):
        raise ConfigError("PaddleClas DistillationModel configs are not translated; use our Distillation section")
    out["Arch"]["name"] = arch["name"]
    num_classes = arch.get("class_num", g.get("class_num"))
    if num_classes is not None:
        out["Arch"]["num_classes"] = int(num_classes)
    pretrained = g.get("pretrained_model") or arch.get("pretrained")
    if pretrained:
        if isinstance(pretrained, str) and not Path(pretrained).suffix:
            pretrained += ".pdparams"  # PaddleClas passes a path prefix
        out["Arch"]["pretrained"] = pretrained
    if g.get("output_dir") is not None:
        out["Global"]["output_dir"] = str(Path(g["output_dir"]) / arch["name"])  # PaddleClas appends the name
    for src, dst in (("epochs", "epochs"), ("eval_interval", "eval_interval"), ("print_batch_step", "log_interval")):
        if g.get(src) is not None:
            out["Global"][dst] = g[src]
    if g.get("seed") is not None:
        out["Global"]["seed"] = int(g["seed"])
    if g.get("eval_during_train") is False:
        out["Global"]["eval_interval"] = 0
    if g.get("checkpoints"):
        ck = str(g["checkpoints"])
        out["Global"]["resume"] = ck if ck.endswith(".pt") else "auto"
        if out["Global"]["resume"] == "auto":
            log.warning("Global.checkpoints=%s is a PaddleClas checkpoint prefix; resuming from output_dir instead", ck)
    if g.get("device"):
        out["Global"]["device"] = {"gpu": "cuda", "cpu": "cpu"}.get(str(g["device"]).lower(), "auto")
    if "use_visualdl" in g:
        out["Global"]["tensorboard"] = bool(g["use_visualdl"])
    if raw.get("AMP"):
        out["Global"]["amp"] = "fp16" if out["Global"].get("device") == "cuda" else "bf16"
    if raw.get("EMA"):
        out["EMA"] = {"enabled": True, "decay": float(raw["EMA"].get("decay", 0.9999))}


def _translate_loss(raw: dict, out: dict) -> None:
    """``Loss.Train``: (Mix)CELoss with its label-smoothing epsilon; any other loss is refused."""
    for name, args in _ops(get_path(raw, "Loss.Train")):
        if name in ("CELoss", "MixCELoss"):
            out["Loss"]["label_smoothing"] = float(args.get("epsilon") or 0.0)
        else:
            raise ConfigError(f"Loss.Train: PaddleClas loss {name!r} is not supported (CELoss only)")
    if get_path(raw, "Loss.Train") is not None and "label_smoothing" not in out["Loss"]:
        out["Loss"]["label_smoothing"] = 0.0


def _translate_optimizer(raw: dict, out: dict) -> None:
    """``Optimizer``: Momentum / AdamW, Cosine / Constant schedules with warmup, L2 decay, and the lr's batch size."""
    opt = raw.get("Optimizer") or {}
    if opt:
        name = str(opt.get("name", "Momentum")).lower()
        if name not in ("momentum", "adamw"):
            raise ConfigError(f"Optimizer.name: PaddleClas optimizer {opt['name']!r} is not supported")
        out["Optimizer"]["name"] = "nesterov" if name == "momentum" and opt.get("use_nesterov") else name
        if "momentum" in opt:
            out["Optimizer"]["momentum"] = float(opt["momentum"])
        lr = opt.get("lr") or {}
        lr_name = str(lr.get("name", "Cosine"))
        if lr_name == "Cosine":
            out["Optimizer"]["scheduler"] = "cosine"
        elif lr_name == "Constant":
            out["Optimizer"]["scheduler"] = "constant"
        else:
            raise ConfigError(f"Optimizer.lr: PaddleClas schedule {lr_name!r} is not supported (Cosine, Constant)")
        if "learning_rate" in lr:
            out["Optimizer"]["lr"] = float(lr["learning_rate"])
        if lr.get("warmup_epoch"):
            out["Optimizer"]["warmup_epochs"] = float(lr["warmup_epoch"])
        if lr.get("warmup_start_lr") is not None:
            out["Optimizer"]["warmup_start_lr"] = float(lr["warmup_start_lr"])
        if lr.get("eta_min") is not None:
            out["Optimizer"]["min_lr"] = float(lr["eta_min"])
        reg = opt.get("regularizer") or {}
        if reg:
            if str(reg.get("name", "L2")).upper() != "L2":
                raise ConfigError(f"Optimizer.regularizer: {reg['name']!r} is not supported (L2 only)")
            out["Optimizer"]["weight_decay"] = float(reg.get("coeff", 0.0))
        elif "weight_decay" in opt:
            out["Optimizer"]["weight_decay"] = float(opt["weight_decay"])
        if opt.get("no_weight_decay_name"):
            out["Optimizer"]["norm_weight_decay"] = 0.0
        # PaddleClas's lr is for its documented launch: 4 GPUs x batch per GPU.
        per_gpu = get_path(raw, "DataLoader.Train.sampler.batch_size")
        if per_gpu:
            out["Optimizer"]["lr_batch_size"] = 4 * int(per_gpu)


def translate_paddleclas(raw: dict) -> dict:
    """A PaddleClas training YAML (as a dict) -> our config dict (not yet merged with defaults).

    Covers what PaddleClas's classification configs use for Res2Net-style recipes; anything with no
    faithful equivalent raises :class:`ConfigError` naming it rather than training something else.
    """
    out: dict[str, Any] = {
        "Global": {},
        "Arch": {},
        "Loss": {},
        "Optimizer": {},
        "DataLoader": {"Train": {}, "Eval": {}},
    }
    _translate_arch_and_global(raw, out)
    _translate_loss(raw, out)
    _translate_optimizer(raw, out)
    for split in ("Train", "Eval"):
        _translate_loader(raw, split, out["DataLoader"][split])
    return out
