"""``res2net predict``: classify images with the fastest checked engine; shards inputs under ``torchrun``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict

from tqdm.auto import tqdm

from res2net.cli._args import add_topk
from res2net.cli.paddleclas import DONE_LINE as PADDLECLAS_DONE
from res2net.cli.paddleclas import add_paddleclas_arguments, apply_paddleclas_arguments, format_paddleclas
from res2net.data.image import escape_name, find_images
from res2net.data.transforms import EvalTransform
from res2net.errors import Res2NetError
from res2net.export.calibration import sample_images
from res2net.models.zoo import get_card
from res2net.predict import DEFAULT_MODEL, Predictor
from res2net.runtime import ENGINE_NAMES, PRECISIONS
from res2net.weights.formats import RawWeights, read_weights
from res2net.weights.load import guess_model

log = logging.getLogger("res2net.predict")


# -------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", help="image files, folders (recursive) or globs; none: the sample photos")
    p.add_argument("--model", default=None, help=f"model name (default {DEFAULT_MODEL}; see `res2net list`)")
    p.add_argument(
        "--weights",
        default=None,
        help="weights instead of the official download: a file, a save_pretrained directory, hf-hub:ORG/REPO, "
        "or a PaddleClas prefix such as output/NAME/latest",
    )
    add_topk(p, "classes printed per image (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=("auto", *ENGINE_NAMES),
        help="auto (default): the fastest engine here whose accuracy check against PyTorch passes",
    )
    p.add_argument("--precision", default=None, choices=PRECISIONS, help="default: fp32, or best checked with auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="inference threads per process")
    p.add_argument("--num-classes", type=int, default=None, help="default: read from the weights")
    p.add_argument(
        "--resize-short", type=int, default=None, help="preprocessing resize (default: the model card's, 256)"
    )
    p.add_argument("--crop-size", type=int, default=None, help="preprocessing centre crop (default: the card's, 224)")
    p.add_argument("--labels", default=None, help="class-name file (one per line, or PaddleClas '<id> <name>')")
    p.add_argument("--calibration", default=None, help="int8 calibration images: folder, list file or glob")
    p.add_argument("--check-images", default=None, help="images for the engine accuracy check")
    p.add_argument("--no-check", action="store_true", help="skip the accuracy check (auto then uses fp32 only)")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_paddleclas_arguments(p)


def _format(result: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(result, ensure_ascii=False)
    scores = "[" + ", ".join(f"{s:.2f}" for s in result["scores"]) + "]"
    return (  # the name escaped: a file name holding a newline or tab must not forge a result line
        f"{escape_name(str(result['filename']))}:\tclass id(s): {result['class_ids']}, score(s): {scores}, "
        f"label_name(s): {result['label_names']}"
    )


class _Shards:
    """torchrun sharding: rank r predicts files[r::world]; rank 0 gathers and prints in input order."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo")
            self.dist = dist

    def merged(self, local: Iterator[dict], total: int, step: int) -> Iterator[dict]:
        """All ranks' results in global order (yielded on rank 0 only); ``step`` results per rank per round."""
        if self.world == 1:
            yield from local
            return
        per_rank = math.ceil(total / self.world)
        for _ in range(math.ceil(per_rank / step) if per_rank else 0):
            chunk = [r for _, r in zip(range(step), local)]
            gathered = [None] * self.world if self.rank == 0 else None
            self.dist.gather_object(chunk, gathered, dst=0)
            if self.rank == 0:
                for j in range(step):
                    for lst in gathered:
                        if j < len(lst):
                            yield lst[j]

    def close(self) -> None:
        if self.world > 1 and self.dist.is_initialized():
            self.dist.destroy_process_group()


def main(args: argparse.Namespace) -> int:
    shards = _Shards()
    if shards.rank != 0:
        logging.getLogger("res2net").setLevel(logging.WARNING)
    try:
        return _run(args, shards)
    finally:
        shards.close()


def _run(args: argparse.Namespace, shards: _Shards) -> int:
    apply_paddleclas_arguments(args)
    if args.images:
        files = find_images(args.images)
    else:
        files = sample_images()
        log.info("no images given: classifying the %d sample photos shipped with res2net", len(files))
    model, weights = args.model, args.weights
    if model is None and weights:
        weights = read_weights(weights)  # read once: to tell the model here, to load it in the Predictor
        model = _model_from_weights(weights)
    model = model or DEFAULT_MODEL
    transform = None
    if args.resize_short or args.crop_size:
        base = EvalTransform.from_preprocess(get_card(model).preprocess) if isinstance(model, str) else EvalTransform()
        transform = base.with_sizes(args.resize_short, args.crop_size)
    device = args.device
    if device == "cuda" and shards.world > 1:  # torchrun: one GPU per local rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    predictor = Predictor(
        model,
        transform=transform,
        weights=weights,
        engine=args.engine,
        precision=args.precision,
        device=device,
        num_classes=args.num_classes,
        labels=args.labels,
        topk=args.topk,
        batch_size=args.batch_size,
        threads=args.threads,
        calibration=args.calibration,
        check_images=args.check_images,
        check=not args.no_check,
    )
    mine = files[shards.rank :: shards.world]
    local = predictor.iter_predict(mine, progress=False, on_error="return")
    failed = 0

    bar = tqdm(total=len(files), unit="img", disable=args.no_progress or not sys.stderr.isatty() or shards.rank != 0)
    for result in shards.merged(local, len(files), args.batch_size):
        if "error" in result:
            failed += 1
            print(f"error: {result['error']}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            bar.clear()
            line = format_paddleclas(result) if args.paddleclas_style and not args.json else _format(result, args.json)
            print(line, flush=True)
        bar.update(1)
    bar.close()
    if shards.rank == 0 and args.paddleclas_style and not args.json:
        print(PADDLECLAS_DONE, flush=True)
    if shards.rank == 0:
        if failed:
            log.warning("%d of %d images failed", failed, len(files))
        if predictor.accuracy is not None:
            log.debug("accuracy: %s", json.dumps(asdict(predictor.accuracy)))
    return 1 if failed else 0


def _model_from_weights(raw: RawWeights) -> str:
    """The model a weights file belongs to: its ``res2net convert`` metadata, else a key/shape match."""
    name = raw.metadata.get("model") if isinstance(raw.metadata, dict) else None
    name = name or guess_model(raw)
    if name is None:
        raise Res2NetError(f"{raw.path}: cannot tell which model these weights belong to; pass --model NAME")
    return name
