"""``res2net train``: PaddleClas's ImageNet recipe for Res2Net, on one process or many nodes.

    res2net train -c Res2Net50_vd_26w_4s -o DataLoader.Train.root=/data/ILSVRC2012 ...
    torchrun --nproc_per_node 8 -m res2net train -c Res2Net50_vd_26w_4s
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \
             --rdzv_endpoint HOST:29500 -m res2net train -c Res2Net50_vd_26w_4s

Read top to bottom, like torchvision's ``references/classification/train.py``:

1. set up the process (distributed group, seeds, determinism, output folder, logs);
2. build the data (datasets, resumable sampler, loaders);
3. build the model (pretrained weights / new head, frozen backbone, SyncBN, channels_last), the
   teacher for distillation, the optimizer, the learning-rate schedule, the GradScaler and the EMA;
4. resume from the last complete checkpoint if there is one;
5. wrap for DDP / ``torch.compile``;
6. train epoch by epoch: ``train_one_epoch`` -> evaluate -> ``metrics.jsonl`` / TensorBoard ->
   checkpoint (``last.pt`` every epoch and every ``save_interval_steps`` steps, ``best.safetensors``).

What makes a resumed run *identical* to an uninterrupted one (``Global.deterministic``): the sample
order and every augmentation are functions of ``(seed, epoch, index)`` (see ``res2net.data.datasets``),
mixup draws from a generator seeded by ``(seed, epoch, batch)``, the learning rate is a function of the
step, and the checkpoint carries the global RNG states (drop-path), optimizer, scaler and EMA.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
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
from res2net.models import get_card
from res2net.training import checkpoint as ckpt_io
from res2net.training.checkpoint import CheckpointError, atomic_write_bytes
from res2net.training.config import ConfigError, dump_config
from res2net.training.distill import DistillationLoss, build_teacher
from res2net.training.distributed import (
    broadcast_object,
    cleanup,
    convert_sync_batchnorm,
    gather_objects,
    init_distributed,
)
from res2net.training.ema import ModelEma
from res2net.training.evaluate import build_eval_loader, evaluate
from res2net.training.loop import EpochContext, NonFiniteLossError, RunState, train_one_epoch
from res2net.training.optim import build_optimizer, lr_schedule

log = logging.getLogger("res2net.train")

# NonFiniteLossError lives with the loop that raises it; this module is where callers of train() meet it.
__all__ = ["NonFiniteLossError", "TrainResult", "build_model", "build_train_data", "lr_schedule", "train"]


@dataclass
class TrainResult:
    """What a finished (or already complete) run produced."""

    output_dir: Path
    best_weights: Path | None
    last_weights: Path
    best_top1: float | None
    global_step: int
    metrics: list[dict] = field(default_factory=list)


# ============================================================================================ entry points


def train(cfg: dict) -> TrainResult:
    """Run (or resume) the training described by a config from :func:`res2net.training.config.load_config`."""
    info = init_distributed(cfg["Global"]["device"])
    threads = torch.get_num_threads()
    handler = _log_to_file(Path(cfg["Global"]["output_dir"]) / "train.log") if info.is_main else None
    try:
        return _train(cfg, info)
    finally:
        if handler is not None:
            logging.getLogger("res2net").removeHandler(handler)
            handler.close()
        torch.set_num_threads(threads)  # Global.threads must not outlive the run (in-process callers)
        cleanup()


# ============================================================================================ the run
def _train(cfg: dict, info) -> TrainResult:
    g, arch, opt_cfg = cfg["Global"], cfg["Arch"], cfg["Optimizer"]
    device = info.device
    out = Path(g["output_dir"])

    # ---------------------------------------------------------------- 1. process setup
    if g["threads"]:
        torch.set_num_threads(int(g["threads"]))
    seed = int(g["seed"])
    _seed_everything(seed + info.rank)
    _set_determinism(bool(g["deterministic"]), device)
    if g["amp"] == "fp16" and device.type != "cuda":
        raise ConfigError("Global.amp=fp16 needs CUDA; on CPU use Global.amp=bf16")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_io.remove_stale_temporaries(out)
        (out / "config.yaml").write_text(dump_config(cfg))
    else:
        logging.getLogger("res2net").setLevel(logging.WARNING)

    # ---------------------------------------------------------------- 2. data
    train_set, sampler, train_loader = build_train_data(cfg, info)
    eval_loader = None
    if g["eval_interval"]:
        eval_loader = build_eval_loader(cfg["DataLoader"]["Eval"], info, pin_memory=device.type == "cuda")
    num_classes = int(arch["num_classes"])
    max_label = max(s.label for s in train_set.samples)
    if max_label >= num_classes:
        raise ConfigError(f"training data has label {max_label} but Arch.num_classes={num_classes}")

    micro_per_epoch = sampler.batches_per_epoch()
    accum = int(opt_cfg["accum_steps"])
    steps_per_epoch = math.ceil(micro_per_epoch / accum)
    epochs = int(g["epochs"])
    total_steps = epochs * steps_per_epoch
    global_batch = sampler.batch_size * info.world_size * accum
    base_lr = float(opt_cfg["lr"]) * global_batch / float(opt_cfg["lr_batch_size"])
    log.info(
        "%d training images, %d steps/epoch, global batch %d (%d x %d processes x %d accumulation), lr %.4g",
        len(train_set),
        steps_per_epoch,
        global_batch,
        sampler.batch_size,
        info.world_size,
        accum,
        base_lr,
    )

    # ---------------------------------------------------------------- 3. model, teacher, optimizer, schedule
    resume_path = None
    if info.is_main:
        resume_path = ckpt_io.find_resume_checkpoint(out, g["resume"])
    resume_path = broadcast_object(str(resume_path) if resume_path else None)
    model = build_model(cfg, pretrained=None if resume_path else arch["pretrained"])
    if arch["sync_bn"] and info.enabled:
        model = convert_sync_batchnorm(model, device)
    memory_format = torch.channels_last if g["channels_last"] else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)

    teacher, criterion = None, None
    if cfg["Distillation"]["enabled"]:
        d = cfg["Distillation"]
        teacher = build_teacher(d, num_classes, device, bool(g["channels_last"]))
        criterion = DistillationLoss(d["loss"], float(d["temperature"]), d["distill_weight"], d["label_weight"])

    optimizer = build_optimizer(model, opt_cfg, base_lr, device)
    warmup_steps = int(round(float(opt_cfg["warmup_epochs"]) * steps_per_epoch))

    def lr_at(step: int) -> float:
        return lr_schedule(
            step,
            base_lr=base_lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            warmup_start_lr=float(opt_cfg["warmup_start_lr"]),
            min_lr=float(opt_cfg["min_lr"]),
            kind=opt_cfg["scheduler"],
        )

    scaler = torch.amp.GradScaler(device.type, enabled=g["amp"] == "fp16")
    ema = None
    if cfg["EMA"]["enabled"]:
        ema = ModelEma(model, decay=float(cfg["EMA"]["decay"]))

    # ---------------------------------------------------------------- 4. resume
    state = RunState()
    if resume_path:
        ck = ckpt_io.load_checkpoint(resume_path)
        _check_compatible(ck, cfg, global_batch, resume_path)
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

    # ---------------------------------------------------------------- 5. wrap
    raw_model = model
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if g["compile"]:
        model = torch.compile(model)
    tb = _tensorboard(out / "tensorboard") if (info.is_main and g["tensorboard"]) else None

    def save(next_epoch: int, next_batch: int) -> None:
        """``last.pt`` (everything needed to continue from ``next_epoch``/``next_batch``), atomically."""
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
                "arch": {"name": arch["name"], "num_classes": num_classes},
                "global_batch": global_batch,
                "config": dump_config(cfg),
            },
            out / ckpt_io.LAST,
        )

    # ---------------------------------------------------------------- 6. epochs
    ctx = EpochContext(
        cfg=cfg,
        info=info,
        model=model,
        raw_model=raw_model,
        teacher=teacher,
        criterion=criterion,
        optimizer=optimizer,
        scaler=scaler,
        ema=ema,
        loader=train_loader,
        sampler=sampler,
        lr_at=lr_at,
        accum=accum,
        steps_per_epoch=steps_per_epoch,
        total_steps=min(total_steps, g["max_steps"] or total_steps),
        num_classes=num_classes,
        save=save,
        tb=tb,
    )
    metrics: list[dict] = _read_metrics(out / "metrics.jsonl") if info.is_main else []
    max_steps = g["max_steps"]
    while state.epoch < epochs and not (max_steps and state.step >= max_steps):
        epoch = state.epoch
        t0 = time.perf_counter()
        stats = train_one_epoch(ctx, state)
        finished_epoch = state.batch >= micro_per_epoch
        record = {
            "epoch": epoch + 1,
            "step": state.step,
            "train_loss": stats["loss"],
            "val_top1": None,
            "val_top5": None,
            "lr": stats["lr"],
            "img_per_s": stats["img_per_s"],
            "seconds": None,
            "train_seconds": stats["seconds"],
            "skipped_images": stats["skipped"],
            "nonfinite_steps": stats["nonfinite"],
        }
        last_epoch = epoch + 1 == epochs or (max_steps and state.step >= max_steps)
        if eval_loader is not None and (((epoch + 1) % g["eval_interval"] == 0) or last_epoch):
            cl = bool(g["channels_last"])
            res = evaluate(raw_model, eval_loader, device, amp=g["amp"], channels_last=cl)
            record.update(val_top1=res["top1"], val_top5=res["top5"], val_loss=res["loss"])
            record["val_skipped_images"] = res["skipped"]
            candidates = [("model", res["top1"], raw_model)]
            if ema is not None:
                er = evaluate(ema.module, eval_loader, device, amp=g["amp"], channels_last=cl)
                record.update(ema_val_top1=er["top1"], ema_val_top5=er["top5"])
                candidates.append(("ema", er["top1"], ema.module))
            which, top1, best_model = max(candidates, key=lambda c: c[1])
            if info.is_main and (state.best_top1 is None or top1 > state.best_top1):
                state.best_top1, state.best_epoch = top1, epoch + 1
                ckpt_io.save_safetensors(
                    best_model.state_dict(),
                    out / ckpt_io.BEST_WEIGHTS,
                    _weights_metadata(cfg, epoch + 1, state.step, top1, which),
                )
        record["best_top1"] = state.best_top1
        record["seconds"] = time.perf_counter() - t0
        next_epoch, next_batch = (epoch + 1, 0) if finished_epoch else (epoch, state.batch)
        if info.is_main:
            final_model = ema.module if ema is not None else raw_model
            ckpt_io.save_safetensors(
                final_model.state_dict(),
                out / ckpt_io.LAST_WEIGHTS,
                _weights_metadata(
                    cfg,
                    epoch + 1,
                    state.step,
                    record.get("ema_val_top1") if ema is not None else record["val_top1"],
                    "ema" if ema is not None else "model",
                ),
            )
            if finished_epoch:  # a partial epoch (max_steps) gets its line when it is completed
                metrics.append(record)
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            _log_epoch(record, epochs, tb)
        if finished_epoch:
            state.epoch_stats = {}
        save(next_epoch, next_batch)
    if tb is not None:
        tb.close()
    best = out / ckpt_io.BEST_WEIGHTS
    return TrainResult(
        output_dir=out,
        best_weights=best if best.is_file() else None,
        last_weights=out / ckpt_io.LAST_WEIGHTS,
        best_top1=state.best_top1,
        global_step=state.step,
        metrics=metrics,
    )


# ============================================================================================ one epoch


# ============================================================================================ builders


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


# ============================================================================================ helpers
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


def _weights_metadata(cfg: dict, epoch: int, step: int, top1, which: str) -> dict:
    mc = get_card(cfg["Arch"]["name"]).config
    paddle_semantics = mc.stage_rule == "stride" and not mc.pool_count_include_pad
    return {
        "model": get_card(cfg["Arch"]["name"]).name,
        "origin": "paddle" if paddle_semantics else "timm",  # forward semantics the weights were trained with
        "num_classes": cfg["Arch"]["num_classes"],
        "epoch": epoch,
        "step": step,
        "val_top1": "" if top1 is None else f"{top1:.6f}",
        "weights": which,
        "format": "res2net",
    }


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_metrics(path: Path, next_epoch: int) -> None:
    """Drop lines of epochs the resumed run will redo (written after the checkpoint it resumes from)."""
    rows = _read_metrics(path)
    keep = [r for r in rows if r.get("epoch", 0) <= next_epoch]
    if len(keep) != len(rows):
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())


def _log_epoch(record: dict, epochs: int, tb) -> None:
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    log.info(
        "epoch %d/%d: train_loss %s val_top1 %s val_top5 %s lr %.4g %.1f img/s %.1f s",
        record["epoch"],
        epochs,
        fmt(record["train_loss"]),
        fmt(record["val_top1"]),
        fmt(record["val_top5"]),
        record["lr"],
        record["img_per_s"],
        record["seconds"],
    )
    if tb is not None:
        for k in ("train_loss", "val_top1", "val_top5", "ema_val_top1", "img_per_s"):
            if record.get(k) is not None:
                tb.add_scalar(f"epoch/{k}", record[k], record["epoch"])
        tb.flush()


def _log_to_file(path: Path) -> logging.Handler:
    """Mirror the ``res2net`` loggers into ``output_dir/train.log`` (rank 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("res2net")
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(h)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return h


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install 'res2net[train]'); no TensorBoard logs")
        return None
    return SummaryWriter(str(folder))
