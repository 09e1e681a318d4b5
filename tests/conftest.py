"""Session fixtures shared by every test package.

``digits_model``: a small Res2Net (``res2net_tiny``) *trained* on scikit-learn's digits through the
real training code (``res2net.training.train``), once per test session (~30-40 s on 2 CPU cores). Use it
wherever a check needs a model that has learned something — export / int8 / C++ / serving accuracy
on real images — instead of random weights::

    def test_int8_keeps_accuracy(digits_model):
        model = digits_model.load()                       # res2net.create_model(..., pretrained=weights)
        x, y = digits_model.val_arrays()                  # PaddleClas eval preprocessing, float32 NCHW
        ...                                               # or digits_model.val_samples: (png path, label)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

DIGITS_SIZE = 32


def pytest_report_header(config) -> list[str]:
    """The CPU kind this run ran on: results differ between ISAs (int8 recipe, bf16, auto's choice)."""
    from res2net.cpu import describe_cpu, isa_level
    from res2net.export.quantize import onnx_int8_recipe

    return [f"cpu: {describe_cpu()}", f"isa level: {isa_level()}, onnxruntime int8 recipe: {onnx_int8_recipe()}"]


@dataclass(frozen=True)
class TrainedDigits:
    """A trained digits classifier and its validation data."""

    model_name: str  # "res2net_tiny"
    num_classes: int  # 10
    weights: Path  # best.safetensors, loadable by res2net.create_model(name, pretrained=weights, num_classes=10)
    val_top1: float  # measured by the training run on the val split
    val_dir: Path  # ImageFolder tree: val_dir/<digit>/<n>.png (32x32 grey PNG)
    val_list: Path  # PaddleClas list file "val/3/00012.png 3", paths relative to data_root
    data_root: Path
    label_list: Path  # PaddleClas label map "3 three"
    resize_short: int = DIGITS_SIZE  # eval preprocessing of this model: resize short side, centre crop
    crop_size: int = DIGITS_SIZE
    run_dir: Path | None = None  # the training output folder (metrics.jsonl, last.pt, config.yaml)

    @property
    def val_samples(self) -> list[tuple[Path, int]]:
        """``(absolute png path, label)`` for every val image, in list-file order."""
        lines = self.val_list.read_text().splitlines()
        return [(self.data_root / rel, int(lab)) for rel, lab in (ln.rsplit(" ", 1) for ln in lines if ln.strip())]

    def transform(self):
        """The eval preprocessing (``res2net.data.transforms.EvalTransform``) for this model."""
        from res2net.data.transforms import EvalTransform

        return EvalTransform(resize_short=self.resize_short, crop_size=self.crop_size)

    def val_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All val images preprocessed: ``float32 (N, 3, 32, 32)`` and ``int64 (N,)`` labels."""
        from res2net.data.image import load_image

        tf = self.transform()
        samples = self.val_samples
        x = np.stack([tf(load_image(p)) for p, _ in samples])
        return x, np.array([lab for _, lab in samples], dtype=np.int64)

    def load(self):
        """The trained model (eval mode)."""
        import res2net

        return res2net.create_model(self.model_name, pretrained=self.weights, num_classes=self.num_classes).eval()


@pytest.fixture(scope="session")
def digits_tree(tmp_path_factory):
    """The digits PNG tree + list files (32x32), written once per session."""
    from res2net.data.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("digits") / "data", size=DIGITS_SIZE)


def digits_overrides(tree, output_dir: Path) -> list[str]:
    """Overrides pointing the bundled ``digits_res2net_tiny`` config at ``tree`` and ``output_dir``."""
    return [
        f"DataLoader.Train.root={tree.root}",
        f"DataLoader.Train.list={tree.train_list}",
        f"DataLoader.Eval.root={tree.root}",
        f"DataLoader.Eval.list={tree.val_list}",
        f"Global.output_dir={output_dir}",
        "Global.progress=false",
        "Global.tensorboard=false",
        "Global.resume=never",
        "Global.threads=1",  # on a shared 2-core box one thread beats two contending ones by far
    ]


@pytest.fixture(scope="session")
def digits_model(digits_tree, tmp_path_factory) -> TrainedDigits:
    """``res2net_tiny`` trained 5 epochs on digits through ``res2net.training.train`` (~96% val top-1)."""
    from res2net.training.config import load_config
    from res2net.training.train import train

    out = tmp_path_factory.mktemp("digits_run")
    cfg = load_config(
        "digits_res2net_tiny",
        # the bundled demo in 5 epochs instead of 12: a shorter, hotter schedule (~96%)
        digits_overrides(digits_tree, out) + ["Global.epochs=5", "Optimizer.lr=0.2", "Optimizer.warmup_epochs=0.5"],
    )
    result = train(cfg)
    assert result.best_weights is not None and result.best_top1 is not None
    assert result.best_top1 >= 0.85, f"digits fixture trained to only {result.best_top1:.3f} val top-1"
    return TrainedDigits(
        model_name=cfg["Arch"]["name"],
        num_classes=int(cfg["Arch"]["num_classes"]),
        weights=result.best_weights,
        val_top1=float(result.best_top1),
        val_dir=digits_tree.val_dir,
        val_list=digits_tree.val_list,
        data_root=digits_tree.root,
        label_list=digits_tree.label_list,
        run_dir=out,
    )
