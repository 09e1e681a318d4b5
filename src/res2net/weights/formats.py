"""Read a weights file of any supported origin into ``{key: Tensor}`` without executing code.

Supported: PaddleClas ``.pdparams`` (pickle, read by :mod:`res2net.weights.safe_pickle`),
Paddle inference parameters (``inference.pdiparams``, a LoDTensor stream, read by
:mod:`res2net.weights.pdiparams`), PyTorch ``.pth``/``.pt`` (``torch.load(weights_only=True)``:
PyTorch's own restricted unpickler) and ``.safetensors``.
"""

from __future__ import annotations

import math
import pickle
import struct
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from res2net._paths import sha256_file
from res2net.weights.pdiparams import pdiparams_from_tar, read_pdiparams_arrays
from res2net.weights.raw import MAX_TENSORS, CappedFile, RawWeights, WeightsError
from res2net.weights.safe_pickle import (
    MAX_NDIM,
    MalformedPickleError,
    PickledArray,
    UnsafePickleError,
    read_file_buffer,
    safe_load_pickle,
    scan_torch_pickles,
    short_repr,
)

_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_BIG = "UnpackBigParamInfor@@"
_TORCH_REAL = {
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
    torch.uint16, torch.uint32, torch.uint64,  # Paddle stores bfloat16 as uint16
}  # fmt: skip


def _array_value(value: object, key: str, path: Path) -> PickledArray:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], PickledArray):
        value = value[1]  # Paddle 2.1 non-state-dict saves: (name, ndarray)
    if not isinstance(value, PickledArray):
        raise WeightsError(f"{path}: entry {short_repr(key)} is a {type(value).__name__}, not an array")
    return value


def _shape_of(value: object, what: str, path: Path) -> tuple[int, ...]:
    if not (isinstance(value, (list, tuple)) and len(value) <= MAX_NDIM):
        raise WeightsError(f"{path}: {what} is not a list of at most {MAX_NDIM} sizes: {type(value).__name__}")
    if not all(type(n) is int and n >= 0 for n in value):
        raise WeightsError(f"{path}: {what} {short_repr(value)} is not made of non-negative integers")
    return tuple(value)


def _join_big_params(obj: dict[str, PickledArray | np.ndarray], big: object, path: Path) -> None:
    """Reassemble arrays PaddleClas split into ``key@@.0``, ``key@@.1``... (arrays over ~1 GiB).

    Each slice must be a distinct array used once, so the result never exceeds the file's own bytes.
    """
    if not isinstance(big, dict):
        raise WeightsError(f"{path}: {_PADDLE_BIG} is a {type(big).__name__}, not a dict")
    for key, info in big.items():
        where = f"{_PADDLE_BIG}[{short_repr(key)}]"
        if not isinstance(key, str) or not isinstance(info, dict):
            raise WeightsError(f"{path}: {where} is not a name -> {{OriginShape, slices}} entry")
        shape = _shape_of(info.get("OriginShape"), f"{where}['OriginShape']", path)
        names = info.get("slices")
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise WeightsError(f"{path}: {where}['slices'] is not a non-empty list of entry names")
        parts = []
        for name in names:
            if name not in obj:
                raise WeightsError(
                    f"{path}: {where} names slice {short_repr(name)}, which is missing (or listed twice)"
                )
            part = obj.pop(name)
            if not isinstance(part, PickledArray):
                raise WeightsError(f"{path}: {where} names slice {short_repr(name)}, which is itself a joined array")
            parts.append(part)
        if len({p.dtype for p in parts}) != 1:
            raise WeightsError(f"{path}: the slices of {short_repr(key)} have different dtypes")
        numel = sum(math.prod(p.shape) for p in parts)
        if numel != math.prod(shape):
            raise WeightsError(
                f"{path}: the slices of {short_repr(key)} hold {numel} values, "
                f"OriginShape {list(shape)} needs {math.prod(shape)}"
            )
        obj[key] = np.concatenate([p.to_numpy().ravel() for p in parts]).reshape(shape)


def _materialise(
    key: str, a: PickledArray | np.ndarray, expected: Mapping[str, tuple[int, ...]] | None
) -> torch.Tensor:
    """The array as a tensor; a shape ``expected`` does not allow stays a meta tensor (shape and dtype, no data)."""
    if expected is not None and isinstance(a, PickledArray) and expected.get(key) != a.shape:
        return torch.empty(a.shape, dtype=torch.from_numpy(np.empty(0, a.dtype.newbyteorder("="))).dtype, device="meta")
    return torch.from_numpy(a if isinstance(a, np.ndarray) else a.to_numpy())


def _read_pdparams(path: Path, expected: Mapping[str, tuple[int, ...]] | None = None) -> RawWeights:
    try:
        obj = safe_load_pickle(path)
    except UnsafePickleError as e:
        raise WeightsError(f"{path}: {e}") from None
    except MalformedPickleError as e:
        raise WeightsError(f"{path}: not a readable .pdparams file (truncated or corrupt?): {e}") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    bad_key = next((k for k in obj if not isinstance(k, str)), None)
    if bad_key is not None:
        raise WeightsError(
            f"{path}: key {short_repr(bad_key)} is a {type(bad_key).__name__}; weights are named by strings"
        )
    obj = dict(obj)
    obj.pop(_PADDLE_NAME_TABLE, None)
    big = obj.pop(_PADDLE_BIG, None)
    # dict/str values are Paddle's bookkeeping tables; everything else must be an array.
    arrays: dict[str, PickledArray | np.ndarray] = {
        k: _array_value(v, k, path) for k, v in obj.items() if not isinstance(v, (dict, str))
    }
    if len({id(a) for a in arrays.values()}) != len(arrays):  # memo references: one array, many names
        raise WeightsError(f"{path}: several entries are the same array; a weights file never shares arrays")
    if big is not None:
        _join_big_params(arrays, big, path)
    return RawWeights({k: _materialise(k, a, expected) for k, a in arrays.items()}, "paddle", path)


def _is_dense(t: torch.Tensor) -> bool:
    """No two elements share memory and none is skipped (rules out stride-0 "broadcast" tensors)."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride()) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _validate_tensors(tensors: dict, path: Path) -> dict[str, torch.Tensor]:
    """Tensors a model can take: string keys, plain real dtypes, dense and backed by their storage."""
    if len(tensors) > MAX_TENSORS:
        raise WeightsError(f"{path}: {len(tensors)} tensors; a Res2Net needs a few thousand at most")
    for key, t in tensors.items():
        if not isinstance(key, str):
            raise WeightsError(f"{path}: key {short_repr(key)} is a {type(key).__name__}; weights are named by strings")
        if t.layout != torch.strided or t.is_quantized or t.dtype not in _TORCH_REAL:
            raise WeightsError(
                f"{path}: {short_repr(key)} is a {t.layout} {t.dtype} tensor; weights are dense real numbers"
            )
        if t.numel() and not _is_dense(t):
            raise WeightsError(
                f"{path}: {short_repr(key)} of shape {tuple(t.shape)} has strides {t.stride()} "
                "that repeat or skip memory"
            )
        storage_bytes = t.untyped_storage().nbytes()
        if (t.storage_offset() + t.numel()) * t.element_size() > storage_bytes:
            raise WeightsError(f"{path}: {short_repr(key)} is larger than the data stored for it")
    return tensors


def _check_torch_zip(path: Path) -> bytes:
    """Every member stored uncompressed (as ``torch.save`` writes) and backed by the file's bytes; the ``data.pkl``."""
    size = path.stat().st_size
    try:
        with CappedFile(path) as f, zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_TENSORS + 16:
                raise WeightsError(f"{path}: {len(infos)} zip members; not a Res2Net checkpoint")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                    raise WeightsError(
                        f"{path}: zip member {short_repr(info.filename)} is compressed; torch.save never compresses"
                    )
                if info.header_offset + info.file_size > size:
                    raise WeightsError(
                        f"{path}: zip member {short_repr(info.filename)} claims more bytes than the file has"
                    )
            pkl = [i for i in infos if i.filename.endswith("data.pkl")]
            if len(pkl) != 1:
                raise WeightsError(f"{path}: a PyTorch zip checkpoint has one data.pkl, this one has {len(pkl)}")
            return zf.read(pkl[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as e:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (corrupt zip): {e}") from None
    except (NotImplementedError, RuntimeError) as e:  # zipfile: "zip file version 6.4", "File is encrypted"
        raise WeightsError(f"{path}: not a PyTorch checkpoint (a zip feature torch.save never uses: {e})") from None


def _prescan_torch(path: Path, is_zip: bool) -> None:
    """Bound the pickles' structure before PyTorch's unpickler runs them (see ``scan_torch_pickles``)."""
    try:
        if is_zip:
            scan_torch_pickles(memoryview(_check_torch_zip(path)), path.stat().st_size)
        else:
            scan_torch_pickles(read_file_buffer(path), path.stat().st_size, count=5)
    except UnsafePickleError as e:
        raise WeightsError(f"{path}: {e}") from None
    except MalformedPickleError as e:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None


def _read_torch(path: Path) -> RawWeights:
    is_zip = zipfile.is_zipfile(path)
    _prescan_torch(path, is_zip)
    try:
        # mmap: tensors are views of the file, so nothing is allocated for them before the model's checks.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"{path}: refused to load — it needs more than tensors and plain containers to unpickle "
            f"(possibly malicious; nothing was executed). Details: {str(e).splitlines()[0] if str(e) else e!r}"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch's unpickler raises ~10 exception types on malformed data
        detail = str(e).splitlines()[0] if str(e) else ""
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {type(e).__name__}: {detail}"
        ) from None
    for wrapper in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return RawWeights(tensors, "torch", path)


def _read_safetensors(path: Path) -> RawWeights:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as e:  # noqa: BLE001 - the Rust reader raises SafetensorError, but also others on odd headers
        raise WeightsError(
            f"{path}: not a readable .safetensors file (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from None
    return RawWeights(tensors, "safetensors", path, meta)


def read_weights(path: str | Path, expected: Mapping[str, tuple[int, ...]] | None = None) -> RawWeights:
    """Read ``path`` by its content/extension. Never executes code from the file.

    Every malformed file raises :class:`WeightsError` naming it; memory stays within a small
    multiple of the file size (see the README's "Weights" section for the reader's limits).
    ``expected`` (the target model's key -> shape, in any naming the file may use) lets a pickled
    array whose shape the model cannot take come back as a meta tensor: it is reported by the strict
    check without its data ever being copied. (``.pth`` tensors are memory-mapped views anyway.)
    The result carries the file's sha256, computed while it was read.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty")
    # The sha256 (the artifact cache's key) is computed on a second thread while the file is parsed:
    # hashlib releases the GIL, so it costs no wall time, and the bytes come off the disk once.
    pool = ThreadPoolExecutor(1, thread_name_prefix="res2net-sha256")
    try:
        digest = pool.submit(sha256_file, path)
        raw = _read_by_format(path, expected)
        _validate_tensors(raw.tensors, path)
        raw.sha256 = digest.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a refused file does not wait for its hash
    return raw


def _read_by_format(path: Path, expected: Mapping[str, tuple[int, ...]] | None) -> RawWeights:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix in (".pdiparams", ".tar"):
        data = pdiparams_from_tar(path) if suffix == ".tar" else None
        arrays = read_pdiparams_arrays(path, data)
        return RawWeights({f"@{i}": torch.from_numpy(a) for i, a in enumerate(arrays)}, "paddle_inference", path)
    if suffix in (".pth", ".pt", ".bin", ".ckpt") or zipfile.is_zipfile(path):
        return _read_torch(path)
    if suffix == ".pdparams" or suffix in ("", ".pkl", ".pickle"):
        return _read_pdparams(path, expected)
    raise WeightsError(
        f"{path}: unknown weights format {suffix!r}; "
        "expected .pdparams, .pdiparams, *_infer.tar, .pth/.pt or .safetensors"
    )


__all__ = ["MAX_TENSORS", "RawWeights", "WeightsError", "read_pdiparams_arrays", "read_weights"]
