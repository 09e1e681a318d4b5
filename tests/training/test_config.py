"""Configs: PaddleClas's recipe by default, ``-o`` overrides, PaddleClas YAML files translated."""

from __future__ import annotations

import pytest

import res2net
from res2net.training.config import ConfigError, bundled_configs, load_config

# The shape of PaddleClas's ppcls/configs/ImageNet/Res2Net/*.yaml (all five differ only in Arch.name).
PADDLECLAS_YAML = """
Global:
  checkpoints: null
  pretrained_model: null
  output_dir: ./output/
  device: gpu
  save_interval: 1
  eval_during_train: True
  eval_interval: 1
  epochs: 200
  print_batch_step: 10
  use_visualdl: False
  image_shape: [3, 224, 224]
  save_inference_dir: ./inference
Arch:
  name: {name}
  class_num: 1000
Loss:
  Train:
    - CELoss:
        weight: 1.0
        epsilon: 0.1
  Eval:
    - CELoss:
        weight: 1.0
Optimizer:
  name: Momentum
  momentum: 0.9
  lr:
    name: Cosine
    learning_rate: 0.1
  regularizer:
    name: 'L2'
    coeff: 0.0001
DataLoader:
  Train:
    dataset:
      name: ImageNetDataset
      image_root: ./dataset/ILSVRC2012/
      cls_label_path: ./dataset/ILSVRC2012/train_list.txt
      transform_ops:
        - DecodeImage:
            to_rgb: True
            channel_first: False
        - RandCropImage:
            size: 224
        - RandFlipImage:
            flip_code: 1
        - NormalizeImage:
            scale: 1.0/255.0
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: ''
      batch_transform_ops:
        - MixupOperator:
            alpha: 0.2
    sampler:
      name: DistributedBatchSampler
      batch_size: 64
      drop_last: False
      shuffle: True
    loader:
      num_workers: 4
      use_shared_memory: True
  Eval:
    dataset:
      name: ImageNetDataset
      image_root: ./dataset/ILSVRC2012/
      cls_label_path: ./dataset/ILSVRC2012/val_list.txt
      transform_ops:
        - DecodeImage:
            to_rgb: True
            channel_first: False
        - ResizeImage:
            resize_short: 256
        - CropImage:
            size: 224
        - NormalizeImage:
            scale: 1.0/255.0
            mean: [0.485, 0.456, 0.406]
            std: [0.229, 0.224, 0.225]
            order: ''
    sampler:
      name: DistributedBatchSampler
      batch_size: 64
      drop_last: False
      shuffle: False
    loader:
      num_workers: 4
      use_shared_memory: True
Infer:
  infer_imgs: docs/images/whl/demo.jpg
  batch_size: 10
  PostProcess:
    name: Topk
    topk: 5
Metric:
  Eval:
    - TopkAcc:
        topk: [1, 5]
"""


def _recipe(cfg: dict) -> dict:
    """The parts of a config that make up the training recipe (not paths or logging)."""
    keep = {
        "Global": ["epochs", "eval_interval"],
        "Arch": ["name", "num_classes"],
        "Loss": ["label_smoothing"],
        "Optimizer": [
            "name",
            "lr",
            "lr_batch_size",
            "momentum",
            "weight_decay",
            "scheduler",
            "warmup_epochs",
            "min_lr",
        ],
        "DataLoader": None,
    }
    out = {}
    for sec, keys in keep.items():
        out[sec] = cfg[sec] if keys is None else {k: cfg[sec][k] for k in keys}
    return out


def test_defaults_are_paddleclas_res2net_recipe():
    cfg = load_config("Res2Net50_vd_26w_4s")
    assert cfg["Global"]["epochs"] == 200
    opt = cfg["Optimizer"]
    assert (opt["name"], opt["momentum"], opt["lr"], opt["lr_batch_size"], opt["weight_decay"]) == (
        "momentum",
        0.9,
        0.1,
        256,
        1e-4,
    )
    assert opt["scheduler"] == "cosine" and opt["warmup_epochs"] == 0
    assert cfg["Loss"]["label_smoothing"] == 0.1
    tr, ev = cfg["DataLoader"]["Train"], cfg["DataLoader"]["Eval"]
    assert (tr["crop_size"], tr["scale"], tr["hflip"], tr["mixup_alpha"], tr["batch_size"]) == (
        224,
        [0.08, 1.0],
        0.5,
        0.2,
        64,
    )
    assert (ev["resize_short"], ev["crop_size"], ev["interpolation"]) == (256, 224, "bilinear")


@pytest.mark.parametrize("name", bundled_configs())
def test_every_bundled_config_loads_and_names_a_registered_model(name):
    cfg = load_config(name)
    res2net.get_card(cfg["Arch"]["name"])
    if cfg["Distillation"]["enabled"]:
        assert res2net.get_card(cfg["Distillation"]["teacher"]).has_weights


def test_one_bundled_config_per_seed_model():
    seed = {
        "Res2Net50_26w_4s",
        "Res2Net50_vd_26w_4s",
        "Res2Net50_14w_8s",
        "Res2Net101_vd_26w_4s",
        "Res2Net200_vd_26w_4s",
    }
    assert seed <= {load_config(n)["Arch"]["name"] for n in bundled_configs()}
    distill = load_config("Res2Net50_vd_26w_4s_ssld_distill")
    assert distill["Distillation"]["teacher"] == "Res2Net200_vd_26w_4s_ssld" and distill["Distillation"]["loss"] == "js"
    assert distill["Arch"]["name"] == "Res2Net50_vd_26w_4s"


def test_overrides_parse_as_yaml_and_unknown_keys_are_errors():
    cfg = load_config(
        "Res2Net50_vd_26w_4s",
        ["Global.epochs=3", "Optimizer.weight_decay=5e-5", "DataLoader.Train.scale=[0.5, 1.0]", "Arch.pretrained=null"],
    )
    assert cfg["Global"]["epochs"] == 3 and cfg["Optimizer"]["weight_decay"] == 5e-5
    assert cfg["DataLoader"]["Train"]["scale"] == [0.5, 1.0] and cfg["Arch"]["pretrained"] is None
    with pytest.raises(ConfigError, match=r"unknown config key 'Optimizer.weight_decy'.*Optimizer.weight_decay"):
        load_config("Res2Net50_vd_26w_4s", ["Optimizer.weight_decy=1"])
    with pytest.raises(ConfigError, match="must be a positive integer"):
        load_config("Res2Net50_vd_26w_4s", ["Global.epochs=0"])
    with pytest.raises(ConfigError, match="Section.key=value"):
        load_config("Res2Net50_vd_26w_4s", ["Global.epochs"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config("Res2Net50_vd_26w_4s", ["Global.amp=fp8"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("Res2Net51_vd")


def test_paddleclas_override_keys_work_on_our_configs():
    cfg = load_config(
        "Res2Net50_vd_26w_4s",
        [
            "Arch.class_num=102",
            "Global.pretrained_model=./weights/Res2Net50_vd_26w_4s_pretrained",
            "DataLoader.Train.sampler.batch_size=32",
            "DataLoader.Train.dataset.image_root=/data/flowers",
        ],
    )
    assert cfg["Arch"]["num_classes"] == 102
    assert cfg["Arch"]["pretrained"] == "./weights/Res2Net50_vd_26w_4s_pretrained.pdparams"
    assert cfg["DataLoader"]["Train"]["batch_size"] == 32 and cfg["DataLoader"]["Train"]["root"] == "/data/flowers"


@pytest.mark.parametrize("name", ["Res2Net50_vd_26w_4s", "Res2Net200_vd_26w_4s", "Res2Net50_14w_8s"])
def test_paddleclas_yaml_translates_to_our_recipe(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(PADDLECLAS_YAML.format(name=name))
    ours = load_config(path)
    assert ours["_source"] == "paddleclas"
    assert _recipe(ours) == _recipe(load_config(name))
    assert ours["Global"]["output_dir"] == f"output/{name}"  # PaddleClas appends Arch.name
    assert ours["Global"]["device"] == "cuda"


def test_paddleclas_yaml_overrides_use_paddleclas_keys(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PADDLECLAS_YAML.format(name="Res2Net50_vd_26w_4s"))
    cfg = load_config(
        path,
        [
            "Global.epochs=120",
            "Arch.class_num=10",
            "DataLoader.Train.sampler.batch_size=128",
            "Optimizer.lr.learning_rate=0.4",
            "Global.pretrained_model=/w/Res2Net50_vd_26w_4s_ssld_pretrained",
        ],
    )
    assert cfg["Global"]["epochs"] == 120 and cfg["Arch"]["num_classes"] == 10
    assert cfg["DataLoader"]["Train"]["batch_size"] == 128
    assert cfg["Optimizer"]["lr"] == 0.4 and cfg["Optimizer"]["lr_batch_size"] == 512  # 4 GPUs x 128
    assert cfg["Arch"]["pretrained"] == "/w/Res2Net50_vd_26w_4s_ssld_pretrained.pdparams"


def test_paddleclas_yaml_with_unsupported_parts_fails_loudly(tmp_path):
    text = PADDLECLAS_YAML.format(name="Res2Net50_vd_26w_4s")
    for old, new, what in [
        ("        - RandFlipImage:", "        - AutoAugment:\n        - RandFlipImage:", "AutoAugment"),
        (
            "    - CELoss:\n        weight: 1.0\n        epsilon: 0.1",
            "    - TripletLoss:\n        margin: 0.5",
            "TripletLoss",
        ),
        ("    name: Cosine", "    name: Piecewise", "Piecewise"),
    ]:
        path = tmp_path / f"{what}.yaml"
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(ConfigError, match=what):
            load_config(path)
