"""Datasets, samplers, training augmentation and the digits tree."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from res2net.data.augment import (
    TrainTransform,
    mixup,
    one_hot_targets,
    rand_crop_box,
    smooth_targets,
    soft_cross_entropy,
)
from res2net.data.datasets import (
    DatasetError,
    EpochBatchSampler,
    ImageDataset,
    collate,
    read_label_map,
    read_list_file,
    scan_image_folder,
)
from res2net.data.transforms import EvalTransform


# ---------------------------------------------------------------------------------------------- files
def test_list_file_label_map_and_image_folder_agree(digits_tree):
    listed = read_list_file(digits_tree.train_list, digits_tree.root)
    folder, classes = scan_image_folder(digits_tree.train_dir)
    assert classes == [str(i) for i in range(10)]
    assert sorted((s.path, s.label) for s in listed) == sorted((s.path, s.label) for s in folder)
    assert len(listed) == digits_tree.num_train == 1438 and digits_tree.num_val == 359
    assert read_label_map(digits_tree.label_list)[3] == "three"
    assert np.bincount([s.label for s in listed]).min() >= 130  # stratified: every digit well represented


def test_list_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("a/b c.jpg 3\n\nnoLabelHere\n")
    with pytest.raises(DatasetError, match=r"l.txt:3: expected 'relative/path label'"):
        read_list_file(p)
    p.write_text("a.jpg three\n")
    with pytest.raises(DatasetError, match=r"l.txt:1: label 'three' is not an integer"):
        read_list_file(p)
    p.write_text("dir with space/a b.jpg 7\n")
    (s,) = read_list_file(p, "/root")
    assert (str(s.path), s.label) == ("/root/dir with space/a b.jpg", 7)
    with pytest.raises(DatasetError, match="not found"):
        read_list_file(tmp_path / "missing.txt")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        scan_image_folder(tmp_path)


def test_label_map_names_may_contain_spaces_and_commas(tmp_path):
    p = tmp_path / "m.txt"
    p.write_text("0 tench, Tinca tinca\n1 goldfish, Carassius auratus\n")
    assert read_label_map(p) == {0: "tench, Tinca tinca", 1: "goldfish, Carassius auratus"}


def test_digits_tree_is_reused_not_rewritten(digits_tree):
    from res2net.data.digits import write_digits

    before = (digits_tree.root / "train_list.txt").stat().st_mtime_ns
    again = write_digits(digits_tree.root, size=32)
    assert again.num_train == digits_tree.num_train
    assert (digits_tree.root / "train_list.txt").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError):
        write_digits(digits_tree.root, size=16)


# ---------------------------------------------------------------------------------------------- robust decoding
@pytest.mark.parametrize("kind", ["png_signature_only", "tiff_rational_strip_offsets"])
def test_unreadable_images_are_substituted_in_training_and_dropped_in_eval(digits_tree, tmp_path, caplog, kind):
    from tests.data.test_image import tiff_rational_strip_offsets

    good = read_list_file(digits_tree.val_list, digits_tree.root)[:3]
    bad = tmp_path / "broken.png"
    # a PNG signature then nothing (OSError in Pillow); a TIFF on which Pillow raises TypeError
    signature_only = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
    bad.write_bytes(signature_only if kind == "png_signature_only" else tiff_rational_strip_offsets())
    samples = [good[0], type(good[0])(bad, 9), good[1], good[2]]
    train = ImageDataset(samples, TrainTransform(crop_size=32), random_transform=True, on_error="substitute")
    arr, label, skipped = train[(1, "seed")]
    assert (arr.shape, label, skipped) == ((3, 32, 32), good[1].label, 1)
    assert "broken.png" in caplog.text
    ev = ImageDataset(samples, EvalTransform(32, 32), on_error="drop")
    batch = collate([ev[i] for i in range(4)])
    assert batch.images.shape == (3, 3, 32, 32) and batch.skipped == 1
    assert batch.labels.tolist() == [good[0].label, good[1].label, good[2].label]


# ---------------------------------------------------------------------------------------------- sampler
def test_two_ranks_together_see_exactly_the_single_process_batches():
    single = EpochBatchSampler(100, 20, seed=3)
    ranks = [EpochBatchSampler(100, 10, seed=3, world_size=2, rank=r) for r in range(2)]
    for s in (single, *ranks):
        s.set_epoch(4)
    for b_single, *b_ranks in zip(single, *ranks, strict=True):
        assert sorted(b_single) == sorted(b_ranks[0] + b_ranks[1])


def test_sampler_epochs_differ_resume_mid_epoch_and_pads_uneven_ranks():
    s = EpochBatchSampler(50, 8, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    assert [i for b in list(s) for i, _ in b] != [i for b in e0 for i, _ in b]
    s.set_epoch(0, start_batch=3)
    assert list(s) == e0[3:] and len(s) == len(e0) - 3
    assert sorted(i for b in e0 for i, _ in b) == list(range(50))  # each sample once
    ranks = [EpochBatchSampler(51, 4, seed=0, world_size=2, rank=r) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(26 / 4)  # padded: ranks step in lockstep


# ---------------------------------------------------------------------------------------------- augmentation
def test_rand_crop_box_follows_paddleclas_bounds():
    rng = random.Random(0)
    for h, w in [(224, 224), (300, 500), (500, 120), (32, 32)]:
        for _ in range(300):
            top, left, ch, cw = rand_crop_box(h, w, rng)
            assert top >= 0 and top + ch <= h and left >= 0 and left + cw <= w
            assert ch >= 1 and cw >= 1
            # area fraction at most 1 and aspect within sqrt-ratio bounds (before int truncation)
            assert ch * cw <= h * w
    # PaddleClas clamps the scale range to what fits at the drawn aspect ratio (one try, no fallback):
    # on a square image E[area fraction] = (0.08 + E[min(r, 1/r)]) / 2 = 0.474 with r ~ U(3/4, 4/3).
    # torchvision's RandomResizedCrop (10 tries, fallback) gives ~0.54 instead.
    fr = [np.prod(rand_crop_box(1000, 1000, rng)[2:]) / 1e6 for _ in range(4000)]
    r = np.linspace(0.75, 4 / 3, 100001)
    expected = (0.08 + np.minimum(r, 1 / r).mean()) / 2
    assert abs(np.mean(fr) - expected) < 0.012, (np.mean(fr), expected)


def test_train_transform_is_reproducible_per_seed_and_flips():
    img = (np.arange(40 * 50 * 3) % 251).astype(np.uint8).reshape(40, 50, 3)
    t = TrainTransform(crop_size=24, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)
    a, b = t(img, random.Random("x")), t(img, random.Random("x"))
    assert a.shape == (3, 24, 24) and a.dtype == np.float32 and np.array_equal(a, b)
    no_flip = TrainTransform(crop_size=24, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)
    assert np.allclose(a, no_flip(img, random.Random("x"))[:, :, ::-1])


def test_soft_cross_entropy_with_smoothing_equals_torch_label_smoothing():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g)
    ours = soft_cross_entropy(logits, smooth_targets(one_hot_targets(labels, 10), 0.1))
    ref = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)


def test_mixup_mixes_images_and_targets_with_one_lambda():
    x = torch.arange(4.0)[:, None, None, None].expand(4, 3, 2, 2).clone()
    t = one_hot_targets(torch.tensor([0, 1, 2, -1]), 3)  # the last image is unlabeled
    xm, tm, lam = mixup(x, t, 0.2, np.random.default_rng(0))
    assert 0 <= lam <= 1
    perm = np.random.default_rng(0)
    perm.beta(0.2, 0.2)
    perm = torch.from_numpy(perm.permutation(4))
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm])
    assert torch.allclose(tm.sum(1), lam * t.sum(1) + (1 - lam) * t[perm].sum(1))
    sm = smooth_targets(tm, 0.1)
    assert torch.allclose(sm.sum(1), tm.sum(1))  # smoothing keeps each row's (labeled) mass
