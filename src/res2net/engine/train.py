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

import argparse
import contextlib
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

from res2net.errors import Res2NetError

log = logging.getLogger("res2net.train")


class NonFiniteLossError(Res2NetError, FloatingPointError):
    """The loss became NaN/inf; training stops instead of learning from garbage."""


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
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="config YAML (ours or PaddleClas's) or a bundled name")
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="e.g. -o Global.epochs=10"
    )
    parser.add_argument("--output-dir", help="same as -o Global.output_dir=...")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", metavar="CHECKPOINT", help="resume from this last.pt (default: auto from output dir)"
    )
    group.add_argument(
        "--no-resume", action="store_true", help="start from scratch even if output dir has a checkpoint"
    )


def main(args: argparse.Namespace) -> int:
    from res2net.engine.config import load_config

    overrides = list(args.override)
    if args.output_dir:
        overrides.append(f"Global.output_dir={args.output_dir}")
    if args.resume:
        overrides.append(f"Global.resume={args.resume}")
    if args.no_resume:
        overrides.append("Global.resume=never")
    train(load_config(args.config, overrides))
    return 0


def train(cfg: dict) -> TrainResult:
    """Run (or resume) the training described by a config from :func:`res2net.engine.config.load_config`."""
    from res2net.engine.distributed import cleanup, init_distributed

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
    from res2net.engine import checkpoint as ckpt_io
    from res2net.engine.config import ConfigError, dump_config
    from res2net.engine.distributed import broadcast_object

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
        from res2net.engine.evaluate import build_eval_loader

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
        from res2net.engine.distributed import convert_sync_batchnorm

        model = convert_sync_batchnorm(model, device)
    memory_format = torch.channels_last if g["channels_last"] else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)

    teacher, criterion = None, None
    if cfg["Distillation"]["enabled"]:
        from res2net.engine.distill import DistillationLoss, build_teacher

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
        from res2net.engine.ema import ModelEma

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
        from res2net.engine.distributed import gather_objects

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
            from res2net.engine.evaluate import evaluate

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
                ckpt_io.append_jsonl(out / "metrics.jsonl", record)
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
@dataclass
class RunState:
    """Position of the run; saved in every checkpoint."""

    epoch: int = 0  # current (0-based) epoch
    batch: int = 0  # next micro-batch of that epoch
    step: int = 0  # optimizer steps done in total
    best_top1: float | None = None
    best_epoch: int | None = None
    epoch_stats: dict = field(default_factory=dict)  # running sums of the current epoch

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> RunState:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class EpochContext:
    cfg: dict
    info: object
    model: nn.Module  # possibly DDP-wrapped / compiled
    raw_model: nn.Module
    teacher: nn.Module | None
    criterion: nn.Module | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: object | None
    loader: object
    sampler: object
    lr_at: object
    accum: int
    steps_per_epoch: int
    total_steps: int
    num_classes: int
    save: object
    tb: object | None


def train_one_epoch(ctx: EpochContext, state: RunState) -> dict:
    """Train from ``state.batch`` to the end of ``state.epoch`` (or ``max_steps``); return epoch statistics."""
    from res2net.data.augment import mixup, one_hot_targets, smooth_targets, soft_cross_entropy
    from res2net.engine.distributed import all_reduce_sum
    from res2net.engine.evaluate import autocast

    cfg, info, model, optimizer, scaler = ctx.cfg, ctx.info, ctx.model, ctx.optimizer, ctx.scaler
    g, tr = cfg["Global"], cfg["DataLoader"]["Train"]
    device, seed, epoch = info.device, int(g["seed"]), state.epoch
    channels_last = bool(g["channels_last"])
    skip_nonfinite = g["on_nonfinite"] == "skip"
    clip = cfg["Optimizer"]["clip_grad_norm"]
    ema_every = int(cfg["EMA"]["every_steps"])
    label_smoothing = float(cfg["Loss"]["label_smoothing"])
    save_every = int(g["save_interval_steps"])
    max_steps = g["max_steps"]
    accum = ctx.accum

    micro_total = ctx.sampler.batches_per_epoch()
    ctx.sampler.set_epoch(epoch, start_batch=state.batch)
    # running sums (restored from the checkpoint when resuming mid-epoch)
    sums = {"loss": 0.0, "images": 0.0, "skipped": 0.0, "nonfinite": 0.0, "seconds": 0.0, **state.epoch_stats}

    model.train()
    _freeze_bn_if_needed(ctx.raw_model, cfg)
    optimizer.zero_grad(set_to_none=True)
    progress = _progress(ctx, state, micro_total)
    lr = ctx.lr_at(state.step)
    _set_lr(optimizer, lr)
    group_bad = False
    buffers_snapshot = _snapshot_buffers(ctx.raw_model) if skip_nonfinite else None
    t_last = t_start = time.perf_counter()
    steps_here = 0
    for b, batch in zip(range(state.batch, micro_total), ctx.loader, strict=False):
        last_of_group = (b + 1) % accum == 0 or b + 1 == micro_total
        group_len = accum if (b - b % accum) + accum <= micro_total else micro_total - (b - b % accum)

        images = batch.images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(device, non_blocking=True)
        targets = one_hot_targets(labels, ctx.num_classes)
        rng = np.random.default_rng([seed, epoch, b])
        images, targets, _ = mixup(images, targets, float(tr["mixup_alpha"]), rng)
        targets = smooth_targets(targets, label_smoothing)

        sync = contextlib.nullcontext()
        if info.enabled and not last_of_group:
            sync = model.no_sync()
        with sync:
            with autocast(device, g["amp"]):
                logits = model(images)
                if ctx.teacher is not None:
                    with torch.no_grad():
                        teacher_logits = ctx.teacher(images)
            if ctx.teacher is not None:
                loss = ctx.criterion(logits, teacher_logits, targets)
            else:
                loss = soft_cross_entropy(logits, targets)
            loss_value = loss.detach()
            finite = torch.isfinite(loss_value).to(torch.float32)
            if info.enabled:
                finite = all_reduce_sum(finite) / info.world_size
            if float(finite) < 1.0:
                if not skip_nonfinite:
                    raise NonFiniteLossError(
                        f"loss is {float(loss_value)} at epoch {epoch + 1}, batch {b + 1}, step {state.step + 1} "
                        f"(lr {lr:.4g}); stopped so that nothing is learned from garbage. The last good checkpoint "
                        f"is {Path(g['output_dir']) / 'last.pt'}. Lower Optimizer.lr, set Optimizer.clip_grad_norm, "
                        "use Global.amp=bf16 instead of fp16, or set Global.on_nonfinite=skip to skip such steps."
                    )
                group_bad = True
            scaler.scale(loss / group_len).backward()

        n_img = labels.numel() * info.world_size
        sums["images"] += n_img
        sums["skipped"] += batch.skipped
        if torch.isfinite(loss_value):
            sums["loss"] += float(loss_value) * labels.numel()
        state.batch = b + 1
        if not last_of_group:
            continue

        # ---- optimizer step (or a skipped one)
        if group_bad:
            optimizer.zero_grad(set_to_none=True)
            _restore_buffers(ctx.raw_model, buffers_snapshot)
            sums["nonfinite"] += 1
            log.warning("non-finite loss at epoch %d step %d: step skipped", epoch + 1, state.step + 1)
            group_bad = False
        else:
            if clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(ctx.raw_model.parameters(), float(clip))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ctx.ema is not None and (state.step + 1) % ema_every == 0:
                ctx.ema.update(ctx.raw_model)
            if buffers_snapshot is not None:
                buffers_snapshot = _snapshot_buffers(ctx.raw_model)
        state.step += 1
        used_lr = lr
        lr = ctx.lr_at(state.step)
        _set_lr(optimizer, lr)

        now = time.perf_counter()
        sums["seconds"] += now - t_last
        t_last = now
        steps_here += 1
        if progress is not None:
            progress.update(1)
            rate = sums["images"] / max(sums["seconds"], 1e-9)
            left = (ctx.total_steps - state.step) * (now - t_start) / steps_here
            progress.set_postfix_str(
                f"loss {float(loss_value):.4f} lr {used_lr:.4g} {rate:.1f} img/s eta {_hms(left)}", refresh=False
            )
        if ctx.tb is not None and state.step % int(g["log_interval"]) == 0:
            ctx.tb.add_scalar("train/loss", float(loss_value), state.step)
            ctx.tb.add_scalar("train/lr", used_lr, state.step)
            ctx.tb.add_scalar("train/img_per_s", sums["images"] / max(sums["seconds"], 1e-9), state.step)
        if max_steps and state.step >= max_steps:
            break
        if save_every and state.step % save_every == 0 and state.batch < micro_total:
            state.epoch_stats = dict(sums)
            ctx.save(epoch, state.batch)
    if progress is not None:
        progress.close()
    state.epoch_stats = dict(sums)

    totals = torch.tensor([sums["loss"], sums["images"] / info.world_size, sums["skipped"]], dtype=torch.float64)
    totals = all_reduce_sum(totals.to(device)).cpu() if device.type == "cuda" else all_reduce_sum(totals)
    seconds = sums["seconds"]
    return {
        "loss": totals[0].item() / max(totals[1].item(), 1.0),
        "skipped": int(totals[2].item()),
        "nonfinite": int(sums["nonfinite"]),
        "img_per_s": sums["images"] / max(seconds, 1e-9),
        "seconds": seconds,
        "lr": ctx.lr_at(max(0, state.step - 1)),  # the last learning rate used
    }


# ============================================================================================ builders
def lr_schedule(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
    kind: str = "cosine",
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): PaddleClas's ``Cosine`` (+ ``LinearWarmup``).

    Linear warm-up from ``warmup_start_lr`` over ``warmup_steps``, then
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2`` with ``t`` and ``T`` counted in
    iterations after the warm-up (decay per iteration, not per epoch). A pure function of the step,
    so a resumed run continues the schedule exactly.
    """
    if step < warmup_steps:
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / warmup_steps
    if kind == "constant":
        return base_lr
    t, span = step - warmup_steps, max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * min(t, span) / span))


def build_train_data(cfg: dict, info):
    """Dataset (+ unlabeled images for distillation), resumable sampler and DataLoader."""
    from res2net.data.augment import TrainTransform
    from res2net.data.datasets import (
        EpochBatchSampler,
        ImageDataset,
        collate,
        read_list_file,
        scan_image_folder,
        scan_unlabeled,
    )
    from res2net.engine.config import ConfigError

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
    import res2net

    arch = cfg["Arch"]
    model = res2net.create_model(
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


def build_optimizer(model: nn.Module, opt_cfg: dict, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """SGD with momentum (PaddleClas ``Momentum`` + coupled L2) or AdamW; optional no-decay group for norms/biases."""
    wd = float(opt_cfg["weight_decay"])
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if opt_cfg["norm_weight_decay"] is None:
        groups = [{"params": [p for _, p in params], "weight_decay": wd}]
    else:
        norm = [p for n, p in params if p.ndim <= 1]
        other = [p for n, p in params if p.ndim > 1]
        groups = [
            {"params": other, "weight_decay": wd},
            {"params": norm, "weight_decay": float(opt_cfg["norm_weight_decay"])},
        ]
    fused = opt_cfg["fused"]
    kw = {"fused": True} if fused else ({"foreach": True} if fused is None else {"foreach": False})
    name = opt_cfg["name"]
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=float(opt_cfg["momentum"]), nesterov=name == "nesterov", **kw)
    return torch.optim.AdamW(groups, lr=lr, **kw)


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


def _freeze_bn_if_needed(model: nn.Module, cfg: dict) -> None:
    """A frozen backbone keeps its BN statistics too (eval mode), only the head trains."""
    if cfg["Arch"]["freeze_backbone"]:
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not name.startswith("fc"):
                m.eval()


def _snapshot_buffers(model: nn.Module) -> list[torch.Tensor]:
    return [b.detach().clone() for b in model.buffers()]


def _restore_buffers(model: nn.Module, snapshot: list[torch.Tensor] | None) -> None:
    if snapshot is not None:
        with torch.no_grad():
            for b, s in zip(model.buffers(), snapshot, strict=True):
                b.copy_(s)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _progress(ctx: EpochContext, state: RunState, micro_total: int):
    if not (ctx.info.is_main and ctx.cfg["Global"]["progress"]):
        return None
    from tqdm import tqdm

    return tqdm(
        total=math.ceil(micro_total / ctx.accum),
        initial=state.batch // ctx.accum,
        desc=f"epoch {state.epoch + 1}/{ctx.cfg['Global']['epochs']}",
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
    )


def _check_compatible(ck: dict, cfg: dict, global_batch: int, path) -> None:
    from res2net.engine.checkpoint import CheckpointError

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
    from res2net.models import get_card

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
    from res2net.engine.checkpoint import read_jsonl

    return read_jsonl(path)[0]


def _truncate_metrics(path: Path, next_epoch: int) -> None:
    """Drop lines of epochs the resumed run will redo (written after the checkpoint it resumes from),
    and a line torn by the crash that interrupted the run."""
    from res2net.engine.checkpoint import atomic_write_bytes, read_jsonl

    rows, torn = read_jsonl(path)
    keep = [r for r in rows if r.get("epoch", 0) <= next_epoch]
    if torn or len(keep) != len(rows):
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
