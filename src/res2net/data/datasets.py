"""Image datasets for training and evaluation: ImageFolder trees and PaddleClas list files.

* **PaddleClas list file** (``ImageNetDataset``): one ``relative/path label`` per line, paths relative
  to an image root; an optional label map ``id name`` per line (split at the first space).
* **ImageFolder**: ``root/<class>/**/<image>``; classes sorted by folder name (torchvision's rule),
  so the label of a class does not depend on the file system's listing order.

Images are decoded and transformed by :func:`res2net.data.image.prepare_image` (robust, RGB). A corrupt
or unreadable image never kills a run: it is logged once with its path and reason, and counted. Training datasets
*substitute* the next readable image (so every batch keeps its size, which DDP and ``torch.compile``
need); evaluation datasets *drop* it (so no image is counted twice). Each item reports how many
images it skipped, and the training loop adds these up into the epoch summary.

Sampling lives here too: :class:`EpochBatchSampler` gives every process of a distributed run its
share of a per-epoch permutation and a per-sample augmentation seed derived from
``(seed, epoch, index)``, and can start mid-epoch — which is what exact resumption needs.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from res2net.data.image import IMAGE_EXTENSIONS, ImageError, prepare_image
from res2net.errors import Res2NetError

log = logging.getLogger(__name__)

UNLABELED = -1  # label of images that only a distillation teacher labels


class DatasetError(Res2NetError, ValueError):
    """A dataset description (folder, list file, label map) is wrong."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


def read_list_file(list_path: str | Path, root: str | Path | None = None, delimiter: str | None = None) -> list[Sample]:
    """Parse a PaddleClas ``relative/path label`` list file; paths are relative to ``root``.

    The label is the last field, so paths containing spaces work; ``root`` defaults to the list
    file's folder. Errors name the file and line.
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise DatasetError(f"{list_path}: list file not found")
    base = Path(root) if root is not None else list_path.parent
    samples = []
    for n, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(delimiter, 1)
        if len(parts) != 2:
            raise DatasetError(f"{list_path}:{n}: expected 'relative/path label', got {line!r}")
        rel, label = parts[0].strip(), parts[1].strip()
        try:
            value = int(label)
        except ValueError:
            raise DatasetError(f"{list_path}:{n}: label {label!r} is not an integer class id") from None
        samples.append(Sample(base / rel, value))
    if not samples:
        raise DatasetError(f"{list_path}: no samples")
    return samples


def read_label_map(path: str | Path) -> dict[int, str]:
    """PaddleClas label map: ``id name`` per line (the name may contain spaces and commas)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: label map not found")
    names: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, name = line.strip().partition(" ")
        try:
            names[int(key)] = name.strip()
        except ValueError:
            raise DatasetError(f"{path}:{n}: expected 'id name', got {line!r}") from None
    return names


def scan_image_folder(root: str | Path) -> tuple[list[Sample], list[str]]:
    """ImageFolder layout -> samples and sorted class names."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    samples = []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames.sort()
            samples += [
                Sample(Path(dirpath) / f, label) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
    if not samples:
        raise DatasetError(f"{root}: no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
    return samples, classes


def scan_unlabeled(root: str | Path) -> list[Sample]:
    """Every image under ``root`` (recursively), labelled :data:`UNLABELED`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: unlabeled image folder not found")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"{root}: no images")
    return [Sample(p, UNLABELED) for p in files]


class ImageDataset(torch.utils.data.Dataset):
    """Samples -> ``(float32 CHW array, label, skipped)`` through ``transform``.

    ``transform(img)`` or, with ``random_transform``, ``transform(img, rng)``; items may be plain indices
    or ``(index, seed)`` pairs from :class:`EpochBatchSampler` (the seed makes the augmentation of
    that sample reproducible). ``on_error``: ``"substitute"`` (train) or ``"drop"`` (eval, returns
    ``None``), see the module docstring.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable,
        *,
        classes: Sequence[str] | None = None,
        random_transform: bool = False,
        on_error: str = "drop",
        max_substitutes: int = 16,
    ) -> None:
        if on_error not in ("substitute", "drop"):
            raise ValueError(f"on_error must be 'substitute' or 'drop', got {on_error!r}")
        self.samples = list(samples)
        self.transform = transform
        self.classes = list(classes) if classes is not None else None
        self.random_transform = random_transform
        self.on_error = on_error
        self.max_substitutes = max_substitutes
        self._reported: set[Path] = set()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return max(s.label for s in self.samples) + 1

    def _load(self, index: int, rng: random.Random | None):
        s = self.samples[index]
        transform = (lambda img: self.transform(img, rng)) if self.random_transform else self.transform
        return prepare_image(s.path, transform), s.label

    def _report(self, path: Path, err: Exception) -> None:
        if path not in self._reported:  # once per worker and file, not once per epoch and batch
            self._reported.add(path)
            log.warning("skipping unreadable image %s", err)

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        rng = random.Random(seed) if self.random_transform else None
        if self.on_error == "drop":
            try:
                arr, label = self._load(index, rng)
            except ImageError as e:
                self._report(self.samples[index].path, e)
                return None
            return arr, label, 0
        for attempt in range(min(self.max_substitutes, len(self.samples))):
            j = (index + attempt) % len(self.samples)
            try:
                arr, label = self._load(j, rng)
                # count only this item's own image: a bad substitute is counted when its own turn comes,
                # so the epoch total is the number of unreadable images, each once
                return arr, label, int(attempt > 0)
            except ImageError as e:
                self._report(self.samples[j].path, e)
        raise DatasetError(
            f"{self.max_substitutes} consecutive unreadable images starting at {self.samples[index].path}; "
            "is the image root right?"
        )


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    skipped: int

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped)


def collate(items: list) -> Batch:
    """Stack ``(array, label, skipped)`` items; a ``None`` (dropped image) counts as one skipped."""
    kept = [it for it in items if it is not None]
    skipped = len(items) - len(kept) + sum(it[2] for it in kept)
    if not kept:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    images = torch.from_numpy(np.stack([it[0] for it in kept]))
    labels = torch.tensor([it[1] for it in kept], dtype=torch.long)
    return Batch(images, labels, skipped)


def sample_seed(seed: int, epoch: int, index: int) -> str:
    """Augmentation seed of one sample in one epoch (``random.Random`` hashes strings with SHA-512)."""
    return f"{seed}/{epoch}/{index}"


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(index, seed)`` for one process of ``world_size``, resumable mid-epoch.

    Every epoch draws one permutation of the dataset from ``seed + epoch`` (shared by all ranks), pads
    it by wrapping to a multiple of ``world_size`` (as ``DistributedSampler`` does) and gives rank ``r``
    the positions ``r, r + W, r + 2W, ...``. Batch ``i`` of all ranks together is therefore exactly
    batch ``i`` of a single process with a ``W`` times larger batch — the property that makes a
    multi-process run match a single-process one. ``start_batch`` skips batches already trained on.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        world_size: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        pad: bool = True,
    ) -> None:
        if num_samples <= 0 or batch_size <= 0:
            raise ValueError(f"need num_samples > 0 and batch_size > 0, got {num_samples}, {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        self.drop_last = drop_last
        self.pad = pad
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def indices(self) -> list[int]:
        """This rank's sample indices for the current epoch (before batching)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        if self.pad and self.world_size > 1:
            total = math.ceil(self.num_samples / self.world_size) * self.world_size
            order += (order * math.ceil(total / len(order)))[: total - len(order)]
        return order[self.rank :: self.world_size]

    def batches_per_epoch(self) -> int:
        n = len(self.indices()) if not self.pad else math.ceil(self.num_samples / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, str]]]:
        idx = self.indices()
        n_batches = self.batches_per_epoch()
        for b in range(self.start_batch, n_batches):
            chunk = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in chunk]
