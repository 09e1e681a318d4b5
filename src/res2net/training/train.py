"""``res2net train``: PaddleClas's ImageNet recipe for Res2Net, on one process or many nodes.

    res2net train -c Res2Net50_vd_26w_4s -o DataLoader.Train.root=/data/ILSVRC2012 ...
    torchrun --nproc_per_node 8 -m res2net train -c Res2Net50_vd_26w_4s
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \
             --rdzv_endpoint HOST:29500 -m res2net train -c Res2Net50_vd_26w_4s

The run, in the order torchvision's ``references/classification/train.py`` reads: steps 1-5 are
:func:`res2net.training.run.build_run`, step 6 is :func:`fit` here, one epoch is
:func:`res2net.training.loop.train_one_epoch`:

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

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from res2net.models import get_card
from res2net.training import checkpoint as ckpt_io
from res2net.training.distributed import (
    cleanup,
    init_distributed,
)
from res2net.training.evaluate import evaluate
from res2net.training.loop import NonFiniteLossError, train_one_epoch
from res2net.training.optim import lr_schedule
from res2net.training.run import Run, build_model, build_run, build_train_data, read_metrics

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
    return fit(build_run(cfg, info))


def fit(run: Run) -> TrainResult:
    """6. Epoch by epoch: ``train_one_epoch`` -> evaluate -> weights, ``metrics.jsonl`` / TensorBoard -> ``last.pt``."""
    g, state, ctx, out = run.cfg["Global"], run.state, run.ctx, run.out
    metrics: list[dict] = read_metrics(out / "metrics.jsonl") if run.info.is_main else []
    max_steps = g["max_steps"]
    while state.epoch < run.epochs and not (max_steps and state.step >= max_steps):
        epoch = state.epoch
        t0 = time.perf_counter()
        stats = train_one_epoch(ctx, state)
        finished_epoch = state.batch >= run.micro_per_epoch
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
        last_epoch = epoch + 1 == run.epochs or (max_steps and state.step >= max_steps)
        if run.eval_loader is not None and (((epoch + 1) % g["eval_interval"] == 0) or last_epoch):
            _evaluate_epoch(run, epoch, record)
        record["best_top1"] = state.best_top1
        record["seconds"] = time.perf_counter() - t0
        next_epoch, next_batch = (epoch + 1, 0) if finished_epoch else (epoch, state.batch)
        if run.info.is_main:
            _save_last_weights(run, epoch, record)
            if finished_epoch:  # a partial epoch (max_steps) gets its line when it is completed
                metrics.append(record)
                ckpt_io.append_jsonl(out / "metrics.jsonl", record)
            _log_epoch(record, run.epochs, ctx.tb)
        if finished_epoch:
            state.epoch_stats = {}
        ctx.save(next_epoch, next_batch)
    if ctx.tb is not None:
        ctx.tb.close()
    best = out / ckpt_io.BEST_WEIGHTS
    return TrainResult(
        output_dir=out,
        best_weights=best if best.is_file() else None,
        last_weights=out / ckpt_io.LAST_WEIGHTS,
        best_top1=state.best_top1,
        global_step=state.step,
        metrics=metrics,
    )


def _evaluate_epoch(run: Run, epoch: int, record: dict) -> None:
    """Validation top-1/top-5 of the model (and its EMA) into ``record``; ``best.safetensors`` if it improved."""
    g, ctx, state = run.cfg["Global"], run.ctx, run.state
    device, cl = run.info.device, bool(g["channels_last"])
    res = evaluate(ctx.raw_model, run.eval_loader, device, amp=g["amp"], channels_last=cl)
    record.update(val_top1=res["top1"], val_top5=res["top5"], val_loss=res["loss"])
    record["val_skipped_images"] = res["skipped"]
    candidates = [("model", res["top1"], ctx.raw_model)]
    if ctx.ema is not None:
        er = evaluate(ctx.ema.module, run.eval_loader, device, amp=g["amp"], channels_last=cl)
        record.update(ema_val_top1=er["top1"], ema_val_top5=er["top5"])
        candidates.append(("ema", er["top1"], ctx.ema.module))
    which, top1, best_model = max(candidates, key=lambda c: c[1])
    if run.info.is_main and (state.best_top1 is None or top1 > state.best_top1):
        state.best_top1, state.best_epoch = top1, epoch + 1
        ckpt_io.save_safetensors(
            best_model.state_dict(),
            run.out / ckpt_io.BEST_WEIGHTS,
            _weights_metadata(run.cfg, epoch + 1, state.step, top1, which),
        )


def _save_last_weights(run: Run, epoch: int, record: dict) -> None:
    """``last.safetensors``: the EMA weights when there is an EMA, else the model's (rank 0)."""
    ema = run.ctx.ema
    final_model = ema.module if ema is not None else run.ctx.raw_model
    ckpt_io.save_safetensors(
        final_model.state_dict(),
        run.out / ckpt_io.LAST_WEIGHTS,
        _weights_metadata(
            run.cfg,
            epoch + 1,
            run.state.step,
            record.get("ema_val_top1") if ema is not None else record["val_top1"],
            "ema" if ema is not None else "model",
        ),
    )


# ============================================================================================ one epoch


# ============================================================================================ builders


# ============================================================================================ helpers


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
