"""Run an exported file next to PyTorch eager on real images and say, with numbers, whether it agrees.

Exporters fail quietly: a dropped ``ceil_mode``, an fp16-compressed weight file or a wrong softmax
flag produce a model that loads, runs and is subtly wrong (PaddleClas's export issues #471, #3067 are
this). :func:`verify_export` therefore runs the artifact with its own runtime (ONNX Runtime,
OpenVINO, AOTInductor, TorchScript) on real photographs preprocessed as the model expects, and
compares with the eager model it came from:

* **max abs difference** of the outputs (logits, or probabilities for a softmax export) — fp32
  exports must stay within ``atol`` (default 1e-4) for outputs up to 10 in size, scaled with larger
  ones (``atol * max(1, max|ref| / 10)``: float32 rounding is relative, and a trained ImageNet model's
  logits reach 20-30; the same rule as the Predictor's engine check), or :class:`ExportError` is raised;
* **relative error** of the per-image centred outputs, and **top-1 / top-k agreement**.

The loaders here are deliberately minimal (load, run a batch): the tuned runtimes with threads,
precisions and caching are the engines of :class:`res2net.Predictor`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from res2net.accuracy import FP32_ATOL, compare_outputs
from res2net.accuracy import tolerance as accuracy_tolerance
from res2net.data.image import load_image
from res2net.data.preprocess import Preprocess
from res2net.data.transforms import EvalTransform
from res2net.export import onnx as onnx_format
from res2net.export import openvino as openvino_format
from res2net.export._common import ExportError, InferenceModel, eval_mode
from res2net.export.pt2 import load_pt2
from res2net.export.pte import PteModel
from res2net.export.torchscript import load_torchscript

FORMATS = ("onnx", "openvino", "pt2", "torchscript", "triton", "pte")
DEFAULT_ATOL = FP32_ATOL


def tolerance(atol: float, max_abs_ref: float) -> float:
    """:func:`res2net.accuracy.tolerance` with the export API's argument order."""
    return accuracy_tolerance(max_abs_ref, atol)


def detect_format(path: str | Path) -> str:
    """The export format of ``path`` from its name (a Triton model is a directory with ``config.pbtxt``)."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.pbtxt").is_file():
            return "triton"
        raise ExportError(f"{path}: a directory without config.pbtxt is not a Triton model")
    suffix = path.suffix.lower()
    by_suffix = {
        ".onnx": "onnx",
        ".xml": "openvino",
        ".pt2": "pt2",
        ".pt": "torchscript",
        ".ts": "torchscript",
        ".pte": "pte",
    }
    if suffix not in by_suffix:
        raise ExportError(f"{path}: cannot tell the export format from the name; expected one of {sorted(by_suffix)}")
    return by_suffix[suffix]


@dataclass
class Artifact:
    """A loaded export: ``run(float32 NCHW) -> float32 [N, classes]`` plus the metadata it carries."""

    fmt: str
    path: Path
    run_batch: Callable[[np.ndarray], np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def fixed_batch(self) -> int | None:
        shape = json.loads(self.metadata.get("input_shape", "null") or "null")
        return shape[0] if shape and isinstance(shape[0], int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run any number of images, splitting/padding to a static batch size if the file has one."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        b = self.fixed_batch
        if not b or len(x) == b:
            return np.asarray(self.run_batch(x), dtype=np.float32)
        outs = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            outs.append(np.asarray(self.run_batch(chunk), dtype=np.float32)[:n])
        return np.concatenate(outs)


def _input_dtype(meta: dict[str, str]) -> torch.dtype:
    """The dtype a pt2/TorchScript export takes (a bf16/fp16 model was exported with inputs of its dtype)."""
    dtype = getattr(torch, meta.get("dtype", "float32"), None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _triton_onnx(model_dir: Path) -> Path:
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    for v in versions:
        if (model_dir / str(v) / "model.onnx").is_file():
            return model_dir / str(v) / "model.onnx"
    raise ExportError(f"{model_dir}: no <version>/model.onnx in this Triton model")


def load_artifact(
    path: str | Path, fmt: str | None = None, *, device: str = "cpu", threads: int | None = None
) -> Artifact:
    """Load an exported file with its own runtime, in fp32.

    Loading a ``.pt2`` runs the native code inside it and TorchScript runs its own program: load only
    files you (or someone you trust) exported.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    if fmt in ("onnx", "triton"):
        import onnxruntime as ort  # optional dependency (the deploy extra)

        onnx_path = _triton_onnx(path) if fmt == "triton" else path
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        sess = ort.InferenceSession(str(onnx_path), so, providers=providers)
        name = sess.get_inputs()[0].name
        return Artifact(fmt, path, lambda x: sess.run(None, {name: x})[0], onnx_format.read_metadata(onnx_path))
    if fmt == "openvino":
        import openvino as ov  # optional dependency (the deploy extra)

        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(path), "GPU" if device.startswith("gpu") else "CPU", config)
        request = compiled.create_infer_request()
        return Artifact(fmt, path, lambda x: request.infer([x])[0].copy(), openvino_format.read_metadata(path))
    if fmt == "pt2":
        runner = load_pt2(path, device)
        meta = {k: v for k, v in runner.get_metadata().items() if not k.startswith("AOTI_")}
        dev = torch.device("cuda" if runner.get_metadata().get("AOTI_DEVICE_KEY") == "cuda" else "cpu")
        dtype = _input_dtype(meta)

        def run_pt2(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return runner(torch.from_numpy(x).to(dev, dtype)).float().cpu().numpy()

        return Artifact(fmt, path, run_pt2, meta)
    if fmt == "pte":
        program = PteModel(path)  # ExecuTorch's runtime (XNNPACK), as an app runs the file
        return Artifact(fmt, path, lambda x: program(x).numpy(), program.metadata)

    module, meta = load_torchscript(path, device)
    dtype = _input_dtype(meta)

    def run_ts(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()

    return Artifact(fmt, path, run_ts, meta)


def default_images() -> list[Path]:
    """The photographs shipped in the package (skimage's CC0/public-domain samples), if present."""
    from importlib import resources

    try:
        root = Path(str(resources.files("res2net").joinpath("assets/images")))
    except (ModuleNotFoundError, TypeError):
        return []
    return sorted(p for p in root.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if root.is_dir() else []


def preprocess_images(
    images: Sequence, model: nn.Module, h: int, w: int, meta: dict[str, str] | None = None
) -> np.ndarray:
    """Decode and preprocess ``images`` (paths, bytes or arrays) as the export expects them."""
    card = getattr(model, "pretrained_cfg", None)
    pre = card.preprocess if card is not None else Preprocess()
    p = json.loads((meta or {}).get("preprocess", "null") or "null")
    if h != w:
        raise ExportError(f"verification needs a square input, the export is {h}x{w}")
    t = EvalTransform.from_preprocess(pre.at_crop(h).with_sizes(resize_short=p["resize_short"] if p else None))
    return np.stack([t(load_image(im)) for im in images])


@dataclass
class VerifyReport:
    """How an export's outputs compare with PyTorch eager fp32 on the same preprocessed images."""

    format: str
    path: str
    images: int
    output: str  # "logits" or "probabilities"
    max_abs_diff: float
    max_abs_ref: float
    rel_error: float
    top1_agreement: float
    topk_agreement: float
    k: int
    atol: float
    tolerance: float  # atol scaled to the outputs' size (see module docstring)
    passed: bool

    def summary(self) -> str:
        verdict = "OK" if self.passed else f"FAILED (> {self.tolerance:.2g})"
        return (
            f"verify {self.format} {self.path}: {self.images} images, max |{self.output} diff| "
            f"{self.max_abs_diff:.3g} (max |ref| {self.max_abs_ref:.3g}, tolerance {self.tolerance:.2g}), "
            f"rel. error {self.rel_error:.2e}, top-1 agreement {self.top1_agreement:.0%}, "
            f"top-{self.k} agreement {self.topk_agreement:.0%} -> {verdict}"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def verify_export(
    path: str | Path,
    model: nn.Module,
    *,
    fmt: str | None = None,
    images: Sequence | None = None,
    atol: float = DEFAULT_ATOL,
    topk: int = 5,
    device: str = "cpu",
    raise_on_fail: bool = True,
) -> VerifyReport:
    """Compare the export at ``path`` with ``model`` (the eager source, fp32, CPU) on real images.

    ``images`` are paths/bytes/arrays (default: the photographs shipped with the package). The
    softmax flag and input size are read from the export's metadata. Raises :class:`ExportError`
    when the max abs difference exceeds :func:`tolerance` ``(atol, max|ref|)`` (unless
    ``raise_on_fail=False``).
    """
    artifact = load_artifact(path, fmt, device=device)
    meta = artifact.metadata
    shape = json.loads(meta.get("input_shape", "null") or "null")
    if not shape:
        raise ExportError(f"{path}: no res2net metadata (input shape); was it exported by res2net?")
    h, w = int(shape[2]), int(shape[3])
    softmax = meta.get("softmax") == "true"
    images = list(images) if images is not None else default_images()
    if not images:
        raise ExportError("no images to verify with: pass some (e.g. --images DIR)")
    x = preprocess_images(images, model, h, w, meta)
    ours = artifact(x)
    with eval_mode(model), torch.no_grad():
        cpu_model = model if next(model.parameters()).device.type == "cpu" else model.cpu()
        ref = InferenceModel(cpu_model, softmax)(torch.from_numpy(x)).float().numpy()
    try:
        m = compare_outputs(ours, ref, topk)
    except ValueError as e:
        raise ExportError(f"export {e}") from None
    report = VerifyReport(
        format=artifact.fmt,
        path=str(path),
        images=len(x),
        output="probabilities" if softmax else "logits",
        atol=atol,
        tolerance=tolerance(atol, m["max_abs_ref"]),
        passed=m["max_abs_diff"] <= tolerance(atol, m["max_abs_ref"]),
        **m,
    )
    if raise_on_fail and not report.passed:
        raise ExportError(report.summary())
    return report
