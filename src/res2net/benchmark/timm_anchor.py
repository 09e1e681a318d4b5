"""The second anchor: timm as a timm user runs it, with the same weights as every other runner.

Why: the mission promises an inference path faster than PaddleClas's engine *and* timm. The
Paddle anchor covers the first; this one covers the second, so it is deliberately *not* tuned:
``timm.create_model(name, pretrained=False, num_classes=...)``, ``.eval()``,
``torch.inference_mode()``, default (contiguous NCHW) memory format, no BN folding, no compile;
fp32, or ``torch.autocast`` for bf16 / fp16 where the device has them — as timm's own
``validate.py --amp`` does. End to end it is timm's documented inference recipe:
``resolve_data_config`` + ``create_transform``, PIL decode, softmax, top-5. Two settings are the
run's, not timm's defaults, so the comparison is like for like: ``--threads`` (every runner gets the
same cores) and, on CUDA, fp32 without TF32 (:func:`res2net.benchmark.runner_base.fp32_means_fp32`).

Which timm model: the timm card of the zoo with the same graph (depth, width, scale, cardinality,
stem, shortcut) — the registry already holds timm's Res2Nets as cards, so no second table exists.
PaddleClas's ``Res2Net50_vd_26w_4s`` runs as timm's ``res2net50d``: the same convolutions and
parameters, so our state_dict loads strictly, but timm's *forward semantics* (``layer1.0`` is a
stage block, pools count padding) differ from PaddleClas's, so its logits differ a little. Latency is
what this anchor is for, and the convolutions — nearly all of the time — are identical. For timm's
own names (``res2net50d`` ...) the semantics match and the logits are checked against ours.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net.benchmark.runner_base import TensorRunner, Unsupported, check_torch_precision, random_batch
from res2net.errors import Res2NetError
from res2net.export.verify import default_images, preprocess_images
from res2net.models.zoo import SEMANTICS, get_card, list_models

# Res2NetConfig fields that decide the graph's compute (the rest are forward semantics or training).
_ARCH_FIELDS = ("layers", "base_width", "scale", "cardinality", "deep_stem", "stem_width", "avg_down")


def _arch(cfg) -> tuple:
    return tuple(getattr(cfg, f) for f in _ARCH_FIELDS)


def timm_model_name(model_or_name: nn.Module | str) -> str:
    """timm's architecture with the same compute as ``model_or_name`` (a built model or a zoo name).

    Raises :class:`Unsupported` (a skip with its reason) when timm has no such Res2Net, e.g. the
    PaddleClas-only depths 152/200 or ``res2net_tiny``.
    """
    if isinstance(model_or_name, str):
        card = get_card(model_or_name)
        cfg, name = card.config, card.name
    else:
        card = getattr(model_or_name, "pretrained_cfg", None)
        cfg = getattr(model_or_name, "cfg", None) or getattr(card, "config", None)
        name = getattr(card, "name", type(model_or_name).__name__)
        if cfg is None:
            raise Unsupported(f"timm: {name} is not a res2net model (no config to map to timm)")
    if card is not None and card.family == "timm" and _arch(card.config) == _arch(cfg):
        return card.name
    for timm_name in list_models(family="timm"):
        if _arch(get_card(timm_name).config) == _arch(cfg):
            return timm_name
    depth = 2 + 3 * sum(cfg.layers)
    what = f"Res2Net-{depth}{'-vd' if cfg.avg_down else ''} {cfg.base_width}w x {cfg.scale}s"
    if cfg.cardinality > 1:
        what += f" x {cfg.cardinality}c"
    raise Unsupported(f"timm has no {what} ({name}); its Res2Nets: {', '.join(list_models(family='timm'))}")


def _check_timm_available() -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        raise Unsupported("timm: not installed (pip install timm)") from None


def check_timm(model_name: str | None, precision: str, device: str) -> None:
    """Raise :class:`Unsupported` if the timm anchor cannot run here — before building anything."""
    check_torch_precision("timm", precision, device)
    if device.startswith("cuda") and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise Unsupported("timm bf16: this GPU has no bf16")
    _check_timm_available()
    if model_name is not None:
        timm_model_name(model_name)


class TimmRunner(TensorRunner):
    """timm's Res2Net, as shipped, with ``model``'s weights; model-only and end-to-end."""

    engine = "timm"
    supports_e2e = True

    def __init__(self, model: nn.Module, precision: str, *, device: str, input_size: int, check: bool = True) -> None:
        check_timm(None, precision, device)
        import timm

        super().__init__(device, precision, input_size)
        self.timm_name = timm_model_name(model)
        if not timm.is_model(self.timm_name):
            raise Unsupported(f"timm: timm {timm.__version__} has no {self.timm_name!r}")
        num_classes = model.cfg.num_classes
        m = timm.create_model(self.timm_name, pretrained=False, num_classes=num_classes)
        m.load_state_dict(model.state_dict(), strict=True)  # our keys are timm's: same weights, all of them
        self.model = m.eval().to(device)
        self._amp = precision != "fp32"
        self.fn = self._forward
        self.data_config = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**self.data_config)
        same = all(getattr(model.cfg, k) == v for k, v in SEMANTICS["timm"].items())
        how = f"{device}, {precision}{', torch.autocast' if self._amp else ''}, inference_mode, NCHW"
        semantics = (
            "" if same else "; timm's forward semantics, not PaddleClas's: same convolutions, logits differ a little"
        )
        self.info = {
            "engine": f"timm {timm.__version__} {self.timm_name} eager ({how}){semantics}",
            "timm_model": self.timm_name,
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
        }
        if check and same:
            self._check_same_logits(model)

    @property
    def label(self) -> str:
        return f"timm {self.precision}"

    def _autocast(self):
        if not self._amp:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model(x)

    def _input(self, batch_size: int) -> torch.Tensor:
        """float32, contiguous NCHW on the device: what a timm user feeds (autocast casts inside)."""
        if batch_size not in self._inputs:
            self._inputs[batch_size] = torch.from_numpy(random_batch(batch_size, self.input_size)).to(self.device)
        return self._inputs[batch_size]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """timm's logits for a float32 NCHW batch (on the CPU, as float32)."""
        with torch.inference_mode():
            return self._forward(x.to(self.device)).float().cpu()

    def _check_same_logits(self, model: nn.Module) -> None:
        """Same semantics, same weights: timm must give our logits (recorded as ``parity``; warn if not)."""
        images = default_images()
        if not images:
            return
        x = torch.from_numpy(preprocess_images(images, model, self.input_size, self.input_size))
        theirs = self.run(x).double().numpy()
        with torch.inference_mode():
            ours = model.eval()(x).double().numpy()
        self.info["parity"] = {
            "images": len(x),
            "max_abs_logit_diff": float(np.abs(theirs - ours).max()),
            "top1_agreement": float((theirs.argmax(1) == ours.argmax(1)).mean()),
        }
        p = self.info["parity"]
        if self.precision == "fp32" and (p["max_abs_logit_diff"] > 1e-3 or p["top1_agreement"] < 1.0):
            logging.getLogger("res2net.benchmark").warning(
                "timm's %s differs from ours (max |logit diff| %.3g): it may not run the same weights",
                self.timm_name,
                p["max_abs_logit_diff"],
            )

    def e2e(self, files: list[Path], batch_size: int) -> float:
        """timm's inference recipe on the files: PIL -> RGB -> timm transform -> batch -> softmax -> top-5."""
        from PIL import Image

        k = min(5, self.model.num_classes)
        n = 0
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(files), batch_size):
                batch = []
                for f in files[i : i + batch_size]:
                    with Image.open(f) as img:
                        batch.append(self.transform(img.convert("RGB")))
                with self._autocast():
                    logits = self.model(torch.stack(batch).to(self.device))
                probs, classes = logits.float().softmax(-1).topk(k)
                probs, classes = probs.cpu(), classes.cpu()  # the results in hand (syncs CUDA)
                n += len(classes)
        seconds = time.perf_counter() - t
        if n != len(files):
            raise Res2NetError(f"{self.label}: {n} results for {len(files)} images")
        return seconds
