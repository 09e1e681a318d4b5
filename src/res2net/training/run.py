"""Building a training run (steps 1-5 of :mod:`res2net.training.train`): process setup, data, model,
teacher, optimizer and schedule, resume from ``last.pt``, DDP / ``torch.compile`` wrapping.

The order of these steps is part of the run's identity: seeds are set before any weights are
initialised, so a resumed or repeated run builds the very same model.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net.data.augment import TrainTransform
from res2net.data.datasets import (
    EpochBatchSampler,
    ImageDataset,
    collate,
    read_list_file,
    scan_image_folder,
    scan_unlabeled,
)
from res2net.factory import create_model
from res2net.training import checkpoint as ckpt_io
from res2net.training.checkpoint import CheckpointError, atomic_write_bytes
from res2net.training.config import ConfigError, dump_config
from res2net.training.distill import DistillationLoss, build_teacher
from res2net.training.distributed import (
    broadcast_object,
    convert_sync_batchnorm,
    gather_objects,
)
from res2net.training.ema import ModelEma
from res2net.training.evaluate import build_eval_loader
from res2net.training.loop import EpochContext, RunState
from res2net.training.optim import build_optimizer, lr_schedule

log = logging.getLogger("res2net.train")


@dataclass
class Run:
    """One training run, built by :func:`build_run` and driven epoch by epoch by :func:`fit`."""

    cfg: dict
    info: object
    out: Path
    ctx: EpochContext  # model, optimizer, scaler, EMA, loader, schedule, checkpoint writer
    state: RunState  # what crosses epochs (and checkpoints)
    eval_loader: object | None
    micro_per_epoch: int
    epochs: int


@dataclass(frozen=True)
class _Sizes:
    accum: int
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    global_batch: int
    base_lr: float


def build_run(cfg: dict, info) -> Run:
    """Steps 1-5: process setup, data, model / teacher / optimizer / schedule, resume, wrapping."""
    g, arch = cfg["Global"], cfg["Arch"]
    device = info.device
    out = Path(g["output_dir"])
    _setup_process(cfg, info, out)

    train_set, sampler, train_loader = build_train_data(cfg, info)
    eval_loader = None
    if g["eval_interval"]:
        eval_loader = build_eval_loader(cfg["DataLoader"]["Eval"], info, pin_memory=device.type == "cuda")
    num_classes = int(arch["num_classes"])
    max_label = max(s.label for s in train_set.samples)
    if max_label >= num_classes:
        raise ConfigError(f"training data has label {max_label} but Arch.num_classes={num_classes}")
    sizes = _sizes(cfg, sampler, info, len(train_set))

    resume_path = None
    if info.is_main:
        resume_path = ckpt_io.find_resume_checkpoint(out, g["resume"])
    resume_path = broadcast_object(str(resume_path) if resume_path else None)
    model, teacher, criterion = _build_models(cfg, info, num_classes, resume_path)
    optimizer = build_optimizer(model, cfg["Optimizer"], sizes.base_lr, device)
    lr_at = _lr_at(cfg["Optimizer"], sizes)
    scaler = torch.amp.GradScaler(device.type, enabled=g["amp"] == "fp16")
    ema = None
    if cfg["EMA"]["enabled"]:
        ema = ModelEma(model, decay=float(cfg["EMA"]["decay"]))

    state = RunState()
    if resume_path:
        state = _resume(cfg, info, out, resume_path, sizes, model, optimizer, scaler, ema)

    raw_model = model
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if g["compile"]:
        model = torch.compile(model)
    tb = _tensorboard(out / "tensorboard") if (info.is_main and g["tensorboard"]) else None
    parts = dict(raw_model=raw_model, optimizer=optimizer, scaler=scaler, ema=ema)
    save = _checkpoint_writer(cfg, info, out, state, num_classes, sizes.global_batch, **parts)
    ctx = EpochContext(
        cfg=cfg,
        info=info,
        model=model,
        teacher=teacher,
        criterion=criterion,
        loader=train_loader,
        sampler=sampler,
        lr_at=lr_at,
        accum=sizes.accum,
        steps_per_epoch=sizes.steps_per_epoch,
        total_steps=min(sizes.total_steps, g["max_steps"] or sizes.total_steps),
        num_classes=num_classes,
        save=save,
        tb=tb,
        **parts,
    )
    return Run(cfg, info, out, ctx, state, eval_loader, sizes.micro_per_epoch, int(g["epochs"]))


def _setup_process(cfg: dict, info, out: Path) -> None:
    """1. Threads, seeds, determinism, the output folder (rank 0) and quieter logs elsewhere."""
    g = cfg["Global"]
    if g["threads"]:
        torch.set_num_threads(int(g["threads"]))
    seed = int(g["seed"])
    _seed_everything(seed + info.rank)
    _set_determinism(bool(g["deterministic"]), info.device)
    if g["amp"] == "fp16" and info.device.type != "cuda":
        raise ConfigError("Global.amp=fp16 needs CUDA; on CPU use Global.amp=bf16")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_io.remove_stale_temporaries(out)
        (out / "config.yaml").write_text(dump_config(cfg))
    else:
        logging.getLogger("res2net").setLevel(logging.WARNING)


def _sizes(cfg: dict, sampler, info, images: int) -> _Sizes:
    """Steps per epoch, the global batch and the learning rate scaled to it (PaddleClas: lr x batch / 256)."""
    opt_cfg = cfg["Optimizer"]
    micro_per_epoch = sampler.batches_per_epoch()
    accum = int(opt_cfg["accum_steps"])
    steps_per_epoch = math.ceil(micro_per_epoch / accum)
    total_steps = int(cfg["Global"]["epochs"]) * steps_per_epoch
    global_batch = sampler.batch_size * info.world_size * accum
    base_lr = float(opt_cfg["lr"]) * global_batch / float(opt_cfg["lr_batch_size"])
    log.info(
        "%d training images, %d steps/epoch, global batch %d (%d x %d processes x %d accumulation), lr %.4g",
        images,
        steps_per_epoch,
        global_batch,
        sampler.batch_size,
        info.world_size,
        accum,
        base_lr,
    )
    return _Sizes(accum, micro_per_epoch, steps_per_epoch, total_steps, global_batch, base_lr)


def _build_models(cfg: dict, info, num_classes: int, resume_path: str | None):
    """3. The model (weights unless resuming, SyncBN, device, memory format) and the distillation teacher."""
    g, arch = cfg["Global"], cfg["Arch"]
    model = build_model(cfg, pretrained=None if resume_path else arch["pretrained"])
    if arch["sync_bn"] and info.enabled:
        model = convert_sync_batchnorm(model, info.device)
    memory_format = torch.channels_last if g["channels_last"] else torch.contiguous_format
    model.to(device=info.device, memory_format=memory_format)
    teacher, criterion = None, None
    if cfg["Distillation"]["enabled"]:
        d = cfg["Distillation"]
        teacher = build_teacher(d, num_classes, info.device, bool(g["channels_last"]))
        criterion = DistillationLoss(d["loss"], float(d["temperature"]), d["distill_weight"], d["label_weight"])
    return model, teacher, criterion


def _lr_at(opt_cfg: dict, sizes: _Sizes):
    """The learning rate as a function of the optimizer step (so a resumed run gets the same rates)."""
    warmup_steps = int(round(float(opt_cfg["warmup_epochs"]) * sizes.steps_per_epoch))

    def lr_at(step: int) -> float:
        return lr_schedule(
            step,
            base_lr=sizes.base_lr,
            total_steps=sizes.total_steps,
            warmup_steps=warmup_steps,
            warmup_start_lr=float(opt_cfg["warmup_start_lr"]),
            min_lr=float(opt_cfg["min_lr"]),
            kind=opt_cfg["scheduler"],
        )

    return lr_at


def _resume(cfg: dict, info, out: Path, resume_path, sizes: _Sizes, model, optimizer, scaler, ema) -> RunState:
    """4. Everything ``last.pt`` holds back in place; the run continues where it stopped."""
    ck = ckpt_io.load_checkpoint(resume_path)
    _check_compatible(ck, cfg, sizes.global_batch, resume_path)
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scaler.load_state_dict(ck["scaler"])
    if ema is not None and ck.get("ema") is not None:
        ema.load_state_dict(ck["ema"])
    state = RunState.from_dict(ck["state"])
    ckpt_io.set_rng_state(ck["rng"][min(info.rank, len(ck["rng"]) - 1)])
    log.info("resumed from %s: epoch %d, batch %d, step %d", resume_path, state.epoch + 1, state.batch, state.step)
    if info.is_main:
        _truncate_metrics(out / "metrics.jsonl", state.epoch)
    return state


def _checkpoint_writer(
    cfg, info, out: Path, state: RunState, num_classes, global_batch, *, raw_model, optimizer, scaler, ema
):
    """``save(next_epoch, next_batch)``: ``last.pt`` (everything needed to continue from there), atomically."""

    def save(next_epoch: int, next_batch: int) -> None:
        rngs = gather_objects(ckpt_io.rng_state())  # every rank's drop-path RNG continues exactly
        state.epoch, state.batch = next_epoch, next_batch
        if not info.is_main:
            return
        ckpt_io.atomic_torch_save(
            {
                "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "state": state.to_dict(),
                "rng": rngs,
                "next_epoch": next_epoch,
                "arch": {"name": cfg["Arch"]["name"], "num_classes": num_classes},
                "global_batch": global_batch,
                "config": dump_config(cfg),
            },
            out / ckpt_io.LAST,
        )

    return save


def build_train_data(cfg: dict, info):
    """Dataset (+ unlabeled images for distillation), resumable sampler and DataLoader."""
    tr = cfg["DataLoader"]["Train"]
    transform = TrainTransform(
        crop_size=tr["crop_size"],
        scale=tuple(tr["scale"]),
        ratio=tuple(tr["ratio"]),
        hflip=float(tr["hflip"]),
        interpolation=tr["interpolation"],
        mean=tuple(tr["mean"]),
        std=tuple(tr["std"]),
    )
    if tr.get("list"):
        samples, classes = read_list_file(tr["list"], tr["root"]), None
    else:
        samples, classes = scan_image_folder(tr["root"])
    unlabeled = cfg["Distillation"]["unlabeled_root"]
    if unlabeled:
        if not cfg["Distillation"]["enabled"]:
            raise ConfigError("Distillation.unlabeled_root needs Distillation.enabled: only a teacher can label them")
        samples = samples + scan_unlabeled(unlabeled)
    dataset = ImageDataset(samples, transform, classes=classes, random_transform=True, on_error="substitute")
    sampler = EpochBatchSampler(
        len(dataset),
        tr["batch_size"],
        shuffle=True,
        seed=int(cfg["Global"]["seed"]),
        world_size=info.world_size,
        rank=info.rank,
        drop_last=bool(tr["drop_last"]),
    )
    workers = int(tr["num_workers"])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=info.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init,
        generator=torch.Generator(),  # keeps the global RNG (checkpointed) untouched by loader start-up
    )
    return dataset, sampler, loader


def build_model(cfg: dict, pretrained) -> nn.Module:
    """``create_model`` with the config's head size, regularisation and (optionally) frozen backbone."""
    arch = cfg["Arch"]
    model = create_model(
        arch["name"],
        pretrained=pretrained or False,
        num_classes=int(arch["num_classes"]),
        drop_path_rate=float(arch["drop_path_rate"]),
        drop_rate=float(arch["drop_rate"]),
        zero_init_last=bool(arch["zero_init_last"]),
    )
    if arch["freeze_backbone"]:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("fc."))
    return model


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _set_determinism(on: bool, device: torch.device) -> None:
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # workers are the parallelism; OpenCV's own threads would oversubscribe


def _check_compatible(ck: dict, cfg: dict, global_batch: int, path) -> None:
    want = {"name": cfg["Arch"]["name"], "num_classes": int(cfg["Arch"]["num_classes"])}
    if ck.get("arch") != want:
        raise CheckpointError(
            f"{path}: is a checkpoint of {ck.get('arch')}, but the config trains {want}; "
            "use another Global.output_dir or Global.resume=never"
        )
    if ck.get("global_batch") != global_batch:
        log.warning(
            "%s was written with a global batch of %s, this run uses %d: the epoch's sample order differs",
            path,
            ck.get("global_batch"),
            global_batch,
        )


def _truncate_metrics(path: Path, next_epoch: int) -> None:
    """Drop lines of epochs the resumed run will redo (written after the checkpoint it resumes from),
    and a line torn by the crash that interrupted the run."""
    rows, torn = ckpt_io.read_jsonl(path)
    keep = [r for r in rows if r.get("epoch", 0) <= next_epoch]
    if torn or len(keep) != len(rows):
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install 'res2net[train]'); no TensorBoard logs")
        return None
    return SummaryWriter(str(folder))


def read_metrics(path: Path) -> list[dict]:
    """The records of ``metrics.jsonl`` (a torn last line dropped: :func:`~res2net.training.checkpoint.read_jsonl`)."""
    return ckpt_io.read_jsonl(path)[0]
