"""Read a weights file of any supported origin into ``{key: Tensor}`` without executing code.

Supported: PaddleClas ``.pdparams`` (pickle, read by :mod:`res2net.weights.safe_pickle`),
Paddle inference parameters (``inference.pdiparams``, a LoDTensor stream), PyTorch ``.pth``/``.pt``
(``torch.load(weights_only=True)``: PyTorch's own restricted unpickler) and ``.safetensors``.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from res2net.errors import Res2NetError
from res2net.weights.safe_pickle import UnsafePickleError, safe_load_pickle


class WeightsError(Res2NetError, ValueError):
    """A weights file is unreadable, unsafe, or does not fit the model."""


@dataclass
class RawWeights:
    """Tensors as found in a file, plus where they came from."""

    tensors: dict[str, torch.Tensor]
    origin: str  # "paddle" | "paddle_inference" | "torch" | "safetensors"
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)


_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_BIG = "UnpackBigParamInfor@@"


def _to_tensor(value: object, key: str, path: Path) -> torch.Tensor:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
        value = value[1]  # Paddle 2.1 non-state-dict saves: (name, ndarray)
    if not isinstance(value, np.ndarray):
        raise WeightsError(f"{path}: entry {key!r} is a {type(value).__name__}, not an array")
    return torch.from_numpy(np.ascontiguousarray(value))


def _read_pdparams(path: Path) -> RawWeights:
    try:
        obj = safe_load_pickle(path)
    except UnsafePickleError as e:
        raise WeightsError(str(e)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise WeightsError(f"{path}: not a readable .pdparams file (truncated or corrupt?): {e}") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    obj = dict(obj)
    obj.pop(_PADDLE_NAME_TABLE, None)
    big = obj.pop(_PADDLE_BIG, None) or {}
    for key, info in big.items():  # arrays > ~1 GiB were split into key@@.0, key@@.1, ...
        parts = [np.asarray(obj.pop(s)).ravel() for s in info["slices"]]
        obj[key] = np.concatenate(parts).reshape(info["OriginShape"])
    tensors = {k: _to_tensor(v, k, path) for k, v in obj.items() if not isinstance(v, (dict, str))}
    return RawWeights(tensors, "paddle", path)


def _read_torch(path: Path) -> RawWeights:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"{path}: refused to load — it needs more than tensors and plain containers to unpickle "
            f"(possibly malicious; nothing was executed). Details: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
    for wrapper in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return RawWeights(tensors, "torch", path)


def _read_safetensors(path: Path) -> RawWeights:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: not a readable .safetensors file (truncated or corrupt?): {e}") from None
    return RawWeights(tensors, "safetensors", path, meta)


# Paddle framework.proto VarType.Type values that can hold weights.
_PADDLE_DTYPES = {5: np.float32, 6: np.float64, 4: np.float16, 22: np.uint16, 2: np.int32, 3: np.int64}


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _parse_tensor_desc(buf: bytes) -> tuple[int, list[int]]:
    """Decode Paddle's ``VarType.TensorDesc`` protobuf: field 1 data_type, field 2 dims (int64)."""
    pos, dtype, dims = 0, None, []
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        fnum, wire = tag >> 3, tag & 7
        if wire == 0:
            val, pos = _read_varint(buf, pos)
            if fnum == 1:
                dtype = val
            elif fnum == 2:
                dims.append(val - (1 << 64) if val >= 1 << 63 else val)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if fnum == 2:  # packed dims
                end = pos + n
                while pos < end:
                    val, pos = _read_varint(buf, pos)
                    dims.append(val - (1 << 64) if val >= 1 << 63 else val)
            else:
                pos += n
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    if dtype is None:
        raise ValueError("TensorDesc without data_type")
    return dtype, dims


def read_pdiparams_arrays(path: Path, data: bytes | None = None) -> list[np.ndarray]:
    """The arrays of a Paddle ``save_combine`` stream, in file order (names are not stored)."""
    data = path.read_bytes() if data is None else data
    pos, arrays = 0, []
    try:
        while pos < len(data):
            (version,) = struct.unpack_from("<I", data, pos)
            if version != 0:
                raise ValueError(f"unsupported LoDTensor version {version} at byte {pos}")
            (lod_levels,) = struct.unpack_from("<Q", data, pos + 4)
            pos += 12
            for _ in range(lod_levels):
                (nbytes,) = struct.unpack_from("<Q", data, pos)
                pos += 8 + nbytes
            (tversion,) = struct.unpack_from("<I", data, pos)
            (desc_len,) = struct.unpack_from("<i", data, pos + 4)
            pos += 8
            if tversion != 0 or desc_len <= 0:
                raise ValueError(f"bad tensor header at byte {pos}")
            dtype_id, dims = _parse_tensor_desc(data[pos : pos + desc_len])
            pos += desc_len
            dtype = _PADDLE_DTYPES.get(dtype_id)
            if dtype is None:
                raise ValueError(f"unsupported Paddle dtype id {dtype_id}")
            count = int(np.prod(dims)) if dims else 1
            nbytes = count * np.dtype(dtype).itemsize
            if pos + nbytes > len(data):
                raise ValueError("file ends inside a tensor")
            arrays.append(np.frombuffer(data, dtype, count, pos).reshape(dims).copy())
            pos += nbytes
    except (struct.error, IndexError, ValueError) as e:
        raise WeightsError(
            f"{path}: not a readable Paddle inference parameter file (truncated or corrupt?): {e}"
        ) from None
    return arrays


def _pdiparams_from_tar(path: Path) -> bytes:
    """``inference.pdiparams`` from a PaddleClas ``*_infer.tar``, read in memory (nothing is extracted)."""
    import tarfile

    try:
        with tarfile.open(path) as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".pdiparams")), None)
            if member is None:
                raise WeightsError(f"{path}: no .pdiparams file inside this tar (expected a PaddleClas *_infer.tar)")
            return tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise WeightsError(f"{path}: not a readable tar archive (truncated or corrupt?): {e}") from None


def read_weights(path: str | Path) -> RawWeights:
    """Read ``path`` by its content/extension. Never executes code from the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix in (".pdiparams", ".tar"):
        data = _pdiparams_from_tar(path) if suffix == ".tar" else None
        arrays = read_pdiparams_arrays(path, data)
        return RawWeights({f"@{i}": torch.from_numpy(a) for i, a in enumerate(arrays)}, "paddle_inference", path)
    if suffix in (".pth", ".pt", ".bin", ".ckpt") or zipfile.is_zipfile(path):
        return _read_torch(path)
    if suffix == ".pdparams" or suffix in ("", ".pkl", ".pickle"):
        return _read_pdparams(path)
    raise WeightsError(
        f"{path}: unknown weights format {suffix!r}; "
        "expected .pdparams, .pdiparams, *_infer.tar, .pth/.pt or .safetensors"
    )
