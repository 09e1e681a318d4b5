"""Generate PaddleClas Res2Net reference outputs (a test oracle for the PyTorch port).

Why this exists: the `res2net` package claims to reproduce PaddleClas's Res2Net models and to load
their `.pdparams` files.  The only trustworthy check of that claim is PaddleClas itself, but Paddle
must not become a dependency of the package or of its normal test run.  This script is therefore run
*separately*, with the Paddle virtual environment (`.venv-paddle/bin/python`), and writes plain files
that the PyTorch tests can consume without Paddle:

* ``NAME.pdparams``         -- ``paddle.save(model.state_dict())`` of the real PaddleClas model, with
                               seeded random weights *and* BN running statistics (the format users
                               download, including the ``StructuredToParameterName@@`` table);
* ``NAME.legacy.pdparams``  -- the same arrays keyed by Paddle *parameter names* (``res2a_branch2a_weights``,
                               ``bnv1_1_mean``, ``fc_weights``, ...), a plain pickle with protocol 2
                               as written by Paddle 1.x/2.0-era static ``fluid.save``;
* ``NAME.input.npy`` / ``NAME.logits.npy`` -- a seeded [2, 3, 224, 224] input and Paddle's eval-mode
                               logits [2, 1000] (float32);
* ``Res2Net50_vd_26w_4s_infer/`` -- a ``paddle.jit.save`` inference model, its output for the same
                               input, and a README describing the ``.pdiparams`` binary layout (verified
                               here by a small pure-numpy parser);
* ``manifest.json``         -- files, key counts, parameter counts, logit statistics, versions.

The weights are random (no network access is needed, and the point is numerical agreement of the
graphs, not accuracy).  BN running statistics are calibrated on a seeded batch and then perturbed (see
`randomize_`), so that even the 200-layer model neither overflows nor collapses to a
sample-independent output; the script asserts that.

Usage (never with the project's own interpreter -- this file must not import torch or res2net)::

    .venv-paddle/bin/python tests/oracle/paddle_reference.py OUT_DIR [--models NAME ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import struct
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

import paddle  # noqa: E402
from paddle import nn  # noqa: E402
from paddle.static import InputSpec  # noqa: E402
from paddleclas.ppcls.arch.backbone.model_zoo import res2net, res2net_vd  # noqa: E402

CONSTRUCTORS = {
    "Res2Net50_26w_4s": res2net.Res2Net50_26w_4s,
    "Res2Net50_vd_26w_4s": res2net_vd.Res2Net50_vd_26w_4s,
    "Res2Net50_14w_8s": res2net.Res2Net50_14w_8s,
    "Res2Net101_vd_26w_4s": res2net_vd.Res2Net101_vd_26w_4s,
    "Res2Net200_vd_26w_4s": res2net_vd.Res2Net200_vd_26w_4s,
}
INFER_MODEL = "Res2Net50_vd_26w_4s"
PADDLECLAS_VERSION = metadata.version("paddleclas")
NAME_TABLE_KEY = "StructuredToParameterName@@"
INPUT_SHAPE = (2, 3, 224, 224)
NUM_CLASSES = 1000
# Smallest accepted ratio of the between-sample spread of the (per-sample centred) logits to their size.
MIN_RELATIVE_SPREAD = 1e-2

# Paddle framework.proto VarType.Type value for FP32 (BOOL=0, INT16=1, INT32=2, INT64=3, FP16=4, FP32=5).
PADDLE_DTYPE_FP32 = 5

INIT_SCHEME = {
    "conv.weight": "normal(0, sqrt(1/fan_in)), fan_in = Cin*kh*kw",
    "bn.weight (gamma)": "uniform(0.5, 1.0); uniform(0.1, 0.3) for each block's last BN (conv2)",
    "bn.bias (beta)": "normal(0, 0.1)",
    "bn._mean": "m + 0.1*s*normal(0, 1), m/s = per-channel mean/std of the BN input on the calibration batch",
    "bn._variance": "s**2 * uniform(0.8, 1.25)",
    "fc.weight [2048, 1000]": "normal(0, sqrt(1/2048))",
    "fc.bias": "normal(0, 0.1)",
    "rng": "one numpy RandomState(seed) per model: weights in sublayers() order, then BN statistics in forward order",
    "calibration batch": "RandomState(seed + 2).standard_normal([2, 3, 224, 224]), eval mode",
    "input": "RandomState(seed + 1).standard_normal([2, 3, 224, 224])",
}


def randomize_(model: nn.Layer, seed: int) -> None:
    """Give every parameter and BN running statistic of `model` seeded random values (in place).

    Purely random running statistics cannot work here: an eval-mode BN with arbitrary statistics
    does not centre its input, so with a noise input the sample-independent part (ReLU means, betas,
    padding borders) swamps the sample-dependent part, and the logits of the two samples agreed to
    3e-4 relative (Res2Net50_vd, mean ~ N(0, 0.1), var ~ U(0.5, 1.5)); no weight/gamma/beta scaling
    tried got above 4e-3, and He-scaled weights blow up instead. So each
    BN's statistics are the actual statistics of its input on a calibration batch, randomly
    perturbed (mean shifted by 0.1 std, variance scaled by uniform(0.8, 1.25)); one eval-mode pass
    with forward pre-hooks sets them in execution order, so every BN sees already-calibrated inputs.
    """
    rng = np.random.RandomState(seed)
    touched = set()

    def put(param, values):
        assert tuple(param.shape) == values.shape, (param.name, param.shape, values.shape)
        param.set_value(values.astype(np.float32))
        touched.add(param.name)

    def calibrate(layer, inputs):
        x = inputs[0].numpy().astype(np.float64)
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        put(layer._mean, mean + 0.1 * np.sqrt(var) * rng.standard_normal(mean.shape))
        put(layer._variance, var * rng.uniform(0.8, 1.25, var.shape))

    hooks = []
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.Conv2D):
            assert layer.bias is None, "PaddleClas Res2Net convs have no bias"
            shape = tuple(layer.weight.shape)
            fan_in = int(np.prod(shape[1:]))
            put(layer.weight, rng.standard_normal(shape) * np.sqrt(1.0 / fan_in))
        elif isinstance(layer, nn.BatchNorm):
            (c,) = layer.weight.shape
            # A block's last BN (PaddleClas ``conv2``) gets a small gamma so the residual stream stays
            # O(1) through 200 layers; otherwise float32 rounding alone reaches 4e-3 in the logits.
            low, high = (0.1, 0.3) if name.endswith("conv2._batch_norm") else (0.5, 1.0)
            put(layer.weight, rng.uniform(low, high, c))
            put(layer.bias, rng.standard_normal(c) * 0.1)
            hooks.append(layer.register_forward_pre_hook(calibrate))
        elif isinstance(layer, nn.Linear):
            shape = tuple(layer.weight.shape)  # Paddle Linear weight is [in, out]
            put(layer.weight, rng.standard_normal(shape) * np.sqrt(1.0 / shape[0]))
            put(layer.bias, rng.standard_normal(shape[1]) * 0.1)
    calib = np.random.RandomState(seed + 2).standard_normal(INPUT_SHAPE).astype(np.float32)
    run_eager(model, calib)
    for hook in hooks:
        hook.remove()
    all_params = {p.name for p in model.state_dict().values()}
    assert touched == all_params, f"not randomized: {sorted(all_params - touched)[:5]}"


def logits_stats(logits: np.ndarray) -> dict:
    """Summary statistics; `relative_spread` measures how much the output depends on the sample."""
    centred = logits - logits.mean(axis=1, keepdims=True)
    spread = float(centred.std(axis=0).mean())
    size = float(np.sqrt(np.mean(centred**2)))
    return {
        "mean": float(logits.mean()),
        "std": float(logits.std()),
        "min": float(logits.min()),
        "max": float(logits.max()),
        "centred_rms": size,
        "between_sample_std": spread,
        "relative_spread": spread / size if size > 0 else 0.0,
        "argmax": [int(i) for i in logits.argmax(axis=1)],
    }


def check_logits(name: str, logits: np.ndarray) -> dict:
    assert logits.shape == (INPUT_SHAPE[0], NUM_CLASSES) and logits.dtype == np.float32, (logits.shape, logits.dtype)
    assert np.isfinite(logits).all(), f"{name}: non-finite logits"
    stats = logits_stats(logits)
    assert stats["relative_spread"] > MIN_RELATIVE_SPREAD, f"{name}: logits collapse across samples: {stats}"
    return stats


def run_eager(model: nn.Layer, x: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy().astype(np.float32)


def write_legacy(sd_file: Path, path: Path, model: nn.Layer) -> dict:
    """Re-key the saved state dict by parameter name, as a protocol-2 pickle; return the name table."""
    with open(sd_file, "rb") as f:
        saved = pickle.load(f)
    table = saved.pop(NAME_TABLE_KEY)
    live = model.state_dict()
    assert list(table) == list(saved) == list(live), "name table / state dict keys differ"
    for key, pname in table.items():
        assert live[key].name == pname, (key, live[key].name, pname)
    names = list(table.values())
    assert len(set(names)) == len(names), "two structured keys share a parameter name"
    legacy = {table[key]: np.asarray(value) for key, value in saved.items()}
    with open(path, "wb") as f:
        pickle.dump(legacy, f, protocol=2)
    return table


def parse_pdiparams(path, names_in_order, shapes):
    # Pure-numpy reader for a `save_combine` stream of FP32 DenseTensors without LoD (layout: README_LAYOUT).
    data = Path(path).read_bytes()
    pos = 0
    out = {}

    def take(n):
        nonlocal pos
        assert pos + n <= len(data), "truncated .pdiparams"
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    def varint(buf, i):
        value = shift = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, i

    for name, shape in zip(names_in_order, shapes, strict=True):
        (lod_version,) = struct.unpack("<I", take(4))
        (lod_level,) = struct.unpack("<Q", take(8))
        assert lod_version == 0 and lod_level == 0, (name, lod_version, lod_level)
        (tensor_version,) = struct.unpack("<I", take(4))
        (desc_size,) = struct.unpack("<i", take(4))
        assert tensor_version == 0, (name, tensor_version)
        desc = take(desc_size)
        dtype, dims, i = None, [], 0
        while i < len(desc):  # TensorDesc: 1 = data_type (varint), 2 = dims (repeated int64, unpacked)
            tag, i = varint(desc, i)
            value, i = varint(desc, i)
            assert tag & 7 == 0, f"unexpected wire type in TensorDesc of {name}"
            if tag >> 3 == 1:
                dtype = value
            elif tag >> 3 == 2:
                dims.append(value)
        assert dtype == PADDLE_DTYPE_FP32, (name, dtype)
        assert tuple(dims) == tuple(shape), (name, dims, shape)
        count = int(np.prod(dims))
        out[name] = np.frombuffer(take(4 * count), dtype="<f4").reshape(dims)
    assert pos == len(data), f"{len(data) - pos} trailing bytes in {path}"
    return out


def program_param_names(infer_dir: Path) -> list[str] | None:
    """Names of the parameter ops in a PIR `inference.json` (None if the model was saved as .pdmodel)."""
    json_file = infer_dir / "inference.json"
    if not json_file.exists():
        return None
    names = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("#") == "p" and isinstance(node.get("A"), list) and isinstance(node["A"][-1], str):
                names.append(node["A"][-1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(json_file.read_text()))
    return names


def run_inference_model(prefix: Path, x: np.ndarray) -> np.ndarray:
    """Run the exported model through paddle.inference (the deployment predictor), unfused.

    IR passes and oneDNN are off so the output is that of the saved graph itself (with oneDNN the
    fused kernels differ from eager by ~1e-4).
    """
    from paddle import inference

    model_file = next(p for p in (prefix.with_suffix(".json"), prefix.with_suffix(".pdmodel")) if p.exists())
    config = inference.Config(str(model_file), str(prefix.with_suffix(".pdiparams")))
    config.disable_gpu()
    config.switch_ir_optim(False)
    config.disable_mkldnn()
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu().astype(np.float32)


README_LAYOUT = """\
Binary layout of inference.pdiparams (Paddle `save_combine`, as written by paddle.jit.save)
-------------------------------------------------------------------------------------------
The file is a bare concatenation of tensors: no file header, no names, no count, no trailer.
Each tensor is a DenseTensor (formerly LoDTensor) stream, all integers little-endian:

  u32   DenseTensor version            = 0
  u64   LoD level count                = 0 (for each level: u64 byte size + that many bytes of size_t offsets)
  u32   Tensor version                 = 0
  i32   byte size N of the TensorDesc that follows
  N     TensorDesc protobuf (proto2, framework.proto VarType.TensorDesc):
          field 1 `data_type` (tag 0x08, varint) -- VarType.Type enum, FP32 = 5
                                                     (BOOL 0, INT16 1, INT32 2, INT64 3, FP16 4, FP32 5, FP64 6)
          field 2 `dims` (tag 0x10, varint, repeated, NOT packed) -- one tag+varint per dimension
        e.g. [256] -> N = 5: 08 05 10 80 02 ;  [32, 3, 3, 3] -> N = 10: 08 05 10 20 10 03 10 03 10 03
             [2048, 1000] -> N = 8: 08 05 10 80 10 10 e8 07
  numel * 4 bytes  raw float32 data, C order, in the parameter's own shape
                   (fc_weights is stored [in=2048, out=1000], as in the .pdparams)

So each tensor costs 20 + N header bytes; the file size is sum(20 + N_i + 4 * numel_i).

Order: tensors are written sorted by variable name (plain Python string order of the names;
paddle.jit.save sorts `combine_vars` by name, save_vars sorts again). The names are the ParamAttr
parameter names (`bn2a_branch1_mean`, ..., `res5c_branch2c_weights`), not the structured
state-dict keys, and nothing in the .pdiparams itself records them: a reader must get the
names (and shapes) from the program file or from the name table / a built model, then sort them.
The sort is lexicographic, not natural: bn* < conv1* < fc* < res*, and `res4b10` < `res4b2`.
Every persistable variable is included: weights, BN scale/offset AND the BN running mean/variance.

The same holds for the pre-PIR format (FLAGS_enable_pir_api=0, and Paddle 2.x: the released
*_infer.tar files): inference.pdmodel (ProgramDesc protobuf, which names the same parameters) +
the same inference.pdiparams layout and order + inference.pdiparams.info, a protocol-2 pickle
{param_name: {"structured_name": "bb_0_0.short._batch_norm._mean", "stop_gradient": bool,
"trainable": bool}} -- i.e. a ready-made parameter-name -> state-dict-key table.
"""


def export_inference(name: str, model: nn.Layer, x: np.ndarray, eager_logits: np.ndarray, table: dict, out: Path):
    infer_dir = out / f"{name}_infer"
    infer_dir.mkdir(parents=True, exist_ok=True)
    prefix = infer_dir / "inference"
    paddle.jit.save(model, str(prefix), input_spec=[InputSpec([None, *INPUT_SHAPE[1:]], "float32")])
    written = sorted(p.name for p in infer_dir.iterdir() if p.name.startswith("inference"))

    logits = run_inference_model(prefix, x)
    np.save(infer_dir / "logits.npy", logits)
    max_diff = float(np.abs(logits - eager_logits).max())
    assert max_diff <= 1e-4 * float(np.abs(eager_logits).max()), f"inference model differs: {max_diff}"

    live = model.state_dict()
    by_name = {table[key]: live[key].numpy() for key in table}
    order = sorted(by_name)
    parsed = parse_pdiparams(prefix.with_suffix(".pdiparams"), order, [by_name[n].shape for n in order])
    for pname in order:
        assert np.array_equal(parsed[pname], by_name[pname]), pname
    program_names = program_param_names(infer_dir)
    if program_names is not None:
        assert sorted(program_names) == order, "program parameter names differ from the ParamAttr names"

    readme = [
        f"Paddle inference model of PaddleClas {name} (random seeded weights, no softmax), written by",
        "tests/oracle/paddle_reference.py with paddle.jit.save(model, 'inference',",
        "input_spec=[InputSpec([None, 3, 224, 224], 'float32')]).",
        "",
        f"paddle {paddle.__version__}, paddleclas {PADDLECLAS_VERSION}, numpy {np.__version__}",
        "",
        "Files written by paddle.jit.save: " + ", ".join(written),
        "  (with PIR, the default since Paddle 3.0, the program is inference.json and no .pdiparams.info is written)",
        f"logits.npy: paddle.inference predictor output (CPU, IR optim and oneDNN off) for ../{name}.input.npy;",
        f"  max |difference| to the eager logits ../{name}.logits.npy: {max_diff:.3g}",
        "",
        f"{len(order)} tensors in inference.pdiparams ({prefix.with_suffix('.pdiparams').stat().st_size} bytes);",
        f"first: {', '.join(order[:3])}; last: {', '.join(order[-2:])}",
        "Program refers to parameters by ParamAttr name: "
        + ("yes (the 'p' ops of inference.json carry exactly these names)" if program_names else "not checked"),
        "",
        README_LAYOUT,
    ]
    (infer_dir / "README.txt").write_text("\n".join(readme))
    return {
        "files": [f"{infer_dir.name}/{f}" for f in [*written, "logits.npy", "README.txt"]],
        "pdiparams_tensors": len(order),
        "pdiparams_order": "sorted by parameter name",
        "max_abs_diff_vs_eager": max_diff,
    }


def build(name: str, out: Path, seed: int) -> dict:
    start = time.time()
    # PaddleClas hard-codes ParamAttr names, and dygraph refuses to create a parameter name twice per
    # name scope (vd and non-vd models share e.g. `res2a_branch2a_weights`): give each model a fresh one.
    with paddle.utils.unique_name.guard():
        entry = _build(name, out, seed)
    entry["seconds"] = round(time.time() - start, 1)
    return entry


def _build(name: str, out: Path, seed: int) -> dict:
    model = CONSTRUCTORS[name](class_num=NUM_CLASSES)
    model.eval()
    randomize_(model, seed)

    sd = model.state_dict()
    sd_file = out / f"{name}.pdparams"
    paddle.save(sd, str(sd_file))

    x = np.random.RandomState(seed + 1).standard_normal(INPUT_SHAPE).astype(np.float32)
    np.save(out / f"{name}.input.npy", x)
    logits = run_eager(model, x)
    stats = check_logits(name, logits)
    np.save(out / f"{name}.logits.npy", logits)

    table = write_legacy(sd_file, out / f"{name}.legacy.pdparams", model)

    bn_stats = sum(int(np.prod(p.shape)) for p in sd.values() if not p.trainable)
    trainable = sum(int(np.prod(p.shape)) for p in sd.values() if p.trainable)
    entry = {
        "files": [f"{name}.pdparams", f"{name}.legacy.pdparams", f"{name}.input.npy", f"{name}.logits.npy"],
        "state_dict_arrays": len(sd),
        "pdparams_entries": len(sd) + 1,  # + the StructuredToParameterName@@ table
        "trainable_params": trainable,
        "bn_running_stat_params": bn_stats,
        "all_params": trainable + bn_stats,
        "logits": stats,
    }
    if name == INFER_MODEL:
        entry["inference_model"] = export_inference(name, model, x, logits, table, out)
        entry["files"] += entry["inference_model"]["files"]
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--models", nargs="+", choices=list(CONSTRUCTORS), default=list(CONSTRUCTORS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    paddle.set_device("cpu")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "tests/oracle/paddle_reference.py",
        "paddle_version": paddle.__version__,
        "paddleclas_version": PADDLECLAS_VERSION,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "seed": args.seed,
        "input_shape": list(INPUT_SHAPE),
        "init": INIT_SCHEME,
        "legacy_pickle_protocol": 2,
        "models": {},
    }
    for name in args.models:
        entry = build(name, args.out_dir, args.seed)
        manifest["models"][name] = entry
        lg = entry["logits"]
        print(
            f"{name}: {entry['state_dict_arrays']} arrays, {entry['trainable_params']:,} trainable params, "
            f"logits std {lg['std']:.3g} range [{lg['min']:.3g}, {lg['max']:.3g}], "
            f"relative spread {lg['relative_spread']:.3g}, {entry['seconds']} s",
            flush=True,
        )
    (args.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
