"""One epoch of training: micro-batches, mixup / label smoothing / distillation losses, AMP, gradient
accumulation, the non-finite-loss policy, EMA and the mid-epoch checkpoint hook.

Apart from :mod:`res2net.training.train` (which builds the run and loops over epochs) so that each
reads in one screen; the state that crosses epochs is :class:`RunState`, the rest :class:`EpochContext`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net.data import augment
from res2net.errors import Res2NetError
from res2net.training.distributed import all_reduce_sum
from res2net.training.evaluate import autocast
from res2net.training.optim import set_lr

log = logging.getLogger("res2net.train")


class NonFiniteLossError(Res2NetError, FloatingPointError):
    """The loss became NaN/inf; training stops instead of learning from garbage."""


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
    cfg, info, optimizer, scaler = ctx.cfg, ctx.info, ctx.optimizer, ctx.scaler
    g = cfg["Global"]
    epoch = state.epoch
    skip_nonfinite = g["on_nonfinite"] == "skip"
    save_every = int(g["save_interval_steps"])
    max_steps = g["max_steps"]
    accum = ctx.accum

    micro_total = ctx.sampler.batches_per_epoch()
    ctx.sampler.set_epoch(epoch, start_batch=state.batch)
    # running sums (restored from the checkpoint when resuming mid-epoch)
    sums = {"loss": 0.0, "images": 0.0, "skipped": 0.0, "nonfinite": 0.0, "seconds": 0.0, **state.epoch_stats}

    ctx.model.train()
    _freeze_bn_if_needed(ctx.raw_model, cfg)
    optimizer.zero_grad(set_to_none=True)
    progress = _progress(ctx, state, micro_total)
    lr = ctx.lr_at(state.step)
    set_lr(optimizer, lr)
    group_bad = False
    buffers_snapshot = _snapshot_buffers(ctx.raw_model) if skip_nonfinite else None
    clock = {"last": time.perf_counter(), "start": time.perf_counter(), "steps": 0}
    for b, batch in zip(range(state.batch, micro_total), ctx.loader, strict=False):
        last_of_group = (b + 1) % accum == 0 or b + 1 == micro_total
        group_len = accum if (b - b % accum) + accum <= micro_total else micro_total - (b - b % accum)
        images, labels, targets = _inputs(ctx, batch, epoch, b)

        sync = contextlib.nullcontext()
        if info.enabled and not last_of_group:
            sync = ctx.model.no_sync()
        with sync:
            loss, loss_value, finite = _loss(ctx, images, targets)
            if not finite:
                if not skip_nonfinite:
                    raise NonFiniteLossError(
                        f"loss is {float(loss_value)} at epoch {epoch + 1}, batch {b + 1}, step {state.step + 1} "
                        f"(lr {lr:.4g}); stopped so that nothing is learned from garbage. The last good checkpoint "
                        f"is {Path(g['output_dir']) / 'last.pt'}. Lower Optimizer.lr, set Optimizer.clip_grad_norm, "
                        "use Global.amp=bf16 instead of fp16, or set Global.on_nonfinite=skip to skip such steps."
                    )
                group_bad = True
            scaler.scale(loss / group_len).backward()

        sums["images"] += labels.numel() * info.world_size
        sums["skipped"] += batch.skipped
        if torch.isfinite(loss_value):
            sums["loss"] += float(loss_value) * labels.numel()
        state.batch = b + 1
        if not last_of_group:
            continue

        buffers_snapshot = _optimizer_step(ctx, state, group_bad, buffers_snapshot, sums)
        group_bad = False
        state.step += 1
        used_lr = lr
        lr = ctx.lr_at(state.step)
        set_lr(optimizer, lr)
        _report_step(ctx, state, progress, sums, clock, float(loss_value), used_lr)
        if max_steps and state.step >= max_steps:
            break
        if save_every and state.step % save_every == 0 and state.batch < micro_total:
            state.epoch_stats = dict(sums)
            ctx.save(epoch, state.batch)
    if progress is not None:
        progress.close()
    state.epoch_stats = dict(sums)
    return _epoch_stats(ctx, state, sums)


def _inputs(ctx: EpochContext, batch, epoch: int, b: int):
    """One micro-batch on the device: images (channels_last if asked), labels, and mixed/smoothed targets.

    Mixup draws from a generator seeded by ``(seed, epoch, batch)``, so a resumed run mixes the same pairs.
    """
    g, tr = ctx.cfg["Global"], ctx.cfg["DataLoader"]["Train"]
    device = ctx.info.device
    images = batch.images.to(device, non_blocking=True)
    if g["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = batch.labels.to(device, non_blocking=True)
    targets = augment.one_hot_targets(labels, ctx.num_classes)
    rng = np.random.default_rng([int(g["seed"]), epoch, b])
    images, targets, _ = augment.mixup(images, targets, float(tr["mixup_alpha"]), rng)
    targets = augment.smooth_targets(targets, float(ctx.cfg["Loss"]["label_smoothing"]))
    return images, labels, targets


def _loss(ctx: EpochContext, images: torch.Tensor, targets: torch.Tensor):
    """The loss (label or distillation), its detached value, and whether it is finite on every rank."""
    info = ctx.info
    with autocast(info.device, ctx.cfg["Global"]["amp"]):
        logits = ctx.model(images)
        if ctx.teacher is not None:
            with torch.no_grad():
                teacher_logits = ctx.teacher(images)
    if ctx.teacher is not None:
        loss = ctx.criterion(logits, teacher_logits, targets)
    else:
        loss = augment.soft_cross_entropy(logits, targets)
    loss_value = loss.detach()
    finite = torch.isfinite(loss_value).to(torch.float32)
    if info.enabled:
        finite = all_reduce_sum(finite) / info.world_size
    return loss, loss_value, float(finite) >= 1.0


def _optimizer_step(ctx: EpochContext, state: RunState, group_bad: bool, buffers_snapshot, sums: dict):
    """The optimizer step of one accumulation group, or a skipped one after a non-finite loss
    (gradients dropped, BN statistics restored). Returns the BN-buffer snapshot to restore next time."""
    optimizer, scaler = ctx.optimizer, ctx.scaler
    if group_bad:
        optimizer.zero_grad(set_to_none=True)
        _restore_buffers(ctx.raw_model, buffers_snapshot)
        sums["nonfinite"] += 1
        log.warning("non-finite loss at epoch %d step %d: step skipped", state.epoch + 1, state.step + 1)
        return buffers_snapshot
    clip = ctx.cfg["Optimizer"]["clip_grad_norm"]
    if clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(ctx.raw_model.parameters(), float(clip))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if ctx.ema is not None and (state.step + 1) % int(ctx.cfg["EMA"]["every_steps"]) == 0:
        ctx.ema.update(ctx.raw_model)
    return _snapshot_buffers(ctx.raw_model) if buffers_snapshot is not None else None


def _report_step(ctx: EpochContext, state: RunState, progress, sums: dict, clock: dict, loss: float, lr: float):
    """Time the step; the progress bar and TensorBoard every ``Global.log_interval`` steps."""
    now = time.perf_counter()
    sums["seconds"] += now - clock["last"]
    clock["last"] = now
    clock["steps"] += 1
    if progress is not None:
        progress.update(1)
        rate = sums["images"] / max(sums["seconds"], 1e-9)
        left = (ctx.total_steps - state.step) * (now - clock["start"]) / clock["steps"]
        progress.set_postfix_str(f"loss {loss:.4f} lr {lr:.4g} {rate:.1f} img/s eta {_hms(left)}", refresh=False)
    if ctx.tb is not None and state.step % int(ctx.cfg["Global"]["log_interval"]) == 0:
        ctx.tb.add_scalar("train/loss", loss, state.step)
        ctx.tb.add_scalar("train/lr", lr, state.step)
        ctx.tb.add_scalar("train/img_per_s", sums["images"] / max(sums["seconds"], 1e-9), state.step)


def _epoch_stats(ctx: EpochContext, state: RunState, sums: dict) -> dict:
    """The epoch's loss (averaged over every rank's images), throughput and the last learning rate used."""
    info, device = ctx.info, ctx.info.device
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
