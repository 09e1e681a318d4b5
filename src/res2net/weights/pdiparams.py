"""Paddle inference parameters: the ``save_combine`` LoDTensor stream and PaddleClas ``*_infer.tar``.

``inference.pdiparams`` stores arrays in file order with a small protobuf header each and no names;
every size is checked against the bytes left before it is used, and a tar is read in memory, never
extracted.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from res2net.weights.raw import MAX_TENSORS, CappedFile, WeightsError
from res2net.weights.safe_pickle import MAX_NDIM, read_file_buffer

# Paddle framework.proto VarType.Type values that can hold weights.
_PADDLE_DTYPES = {5: np.float32, 6: np.float64, 4: np.float16, 22: np.uint16, 2: np.int32, 3: np.int64}


class _Stream:
    """Bounds-checked little-endian reads from a Paddle LoDTensor stream."""

    def __init__(self, data: bytearray | memoryview) -> None:
        self.data, self.pos = data, 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if size > self.left:
            raise ValueError(f"file ends at byte {len(self.data)} inside a header")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def skip(self, n: int, what: str) -> int:
        if not 0 <= n <= self.left:
            raise ValueError(f"{what} of {n} bytes at byte {self.pos} runs past the end ({self.left} left)")
        start, self.pos = self.pos, self.pos + n
        return start


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        if pos >= len(buf):
            raise ValueError("TensorDesc ends inside a number")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise ValueError("TensorDesc number longer than 10 bytes")


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
            end = pos + n
            if end > len(buf):
                raise ValueError("TensorDesc field runs past its end")
            if fnum == 2:  # packed dims
                while pos < end:
                    val, pos = _read_varint(buf, pos)
                    dims.append(val - (1 << 64) if val >= 1 << 63 else val)
            pos = end
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        if len(dims) > MAX_NDIM:
            raise ValueError(f"more than {MAX_NDIM} dims")
    if dtype is None:
        raise ValueError("TensorDesc without data_type")
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dims {dims} (a saved tensor has concrete sizes)")
    return dtype, dims


def read_pdiparams_arrays(path: Path, data: bytearray | memoryview | None = None) -> list[np.ndarray]:
    """The arrays of a Paddle ``save_combine`` stream, in file order (names are not stored).

    Aligned arrays are views of ``data`` (unaligned ones one copy); every size is checked against the bytes
    left before it is used.
    """
    data = read_file_buffer(path) if data is None else data
    stream, arrays = _Stream(data), []
    try:
        while stream.left:
            if len(arrays) >= MAX_TENSORS:
                raise ValueError(f"more than {MAX_TENSORS} tensors")
            version = stream.unpack("<I")
            if version != 0:
                raise ValueError(f"unsupported LoDTensor version {version} at byte {stream.pos - 4}")
            for _ in range(min(stream.unpack("<Q"), stream.left // 8 + 1)):  # LoD levels, each sized
                stream.skip(stream.unpack("<Q"), "LoD level")
            tversion, desc_len = stream.unpack("<I"), stream.unpack("<i")
            if tversion != 0 or desc_len <= 0:
                raise ValueError(f"bad tensor header at byte {stream.pos - 8}")
            start = stream.skip(desc_len, "TensorDesc")
            dtype_id, dims = _parse_tensor_desc(bytes(data[start : stream.pos]))
            dtype = _PADDLE_DTYPES.get(dtype_id)
            if dtype is None:
                raise ValueError(f"unsupported Paddle dtype id {dtype_id}")
            count = math.prod(dims)
            offset = stream.skip(count * np.dtype(dtype).itemsize, f"tensor of dims {dims}")
            arr = np.frombuffer(data, dtype, count, offset).reshape(dims)
            arrays.append(arr if arr.flags.aligned else arr.copy())
    except ValueError as e:
        raise WeightsError(
            f"{path}: not a readable Paddle inference parameter file (truncated or corrupt?): {e}"
        ) from None
    return arrays


# A PaddleClas *_infer.tar holds 3-4 files (inference.pdmodel, .pdiparams, .pdiparams.info).
_MAX_TAR_MEMBERS = 64
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def pdiparams_from_tar(path: Path) -> bytearray:
    """``inference.pdiparams`` from a PaddleClas ``*_infer.tar``, read in memory (nothing is extracted).

    Only uncompressed tars (as PaddleClas publishes them) are read: the member's bytes are then the
    file's own, so a small file cannot expand into a large one.
    """
    import tarfile

    with path.open("rb") as f:
        head = f.read(8)
    kind = next((name for magic, name in _COMPRESSED_MAGIC.items() if head.startswith(magic)), None)
    if kind:
        raise WeightsError(
            f"{path}: a {kind}-compressed archive; PaddleClas *_infer.tar files are plain tars. "
            "Decompress it and pass the .tar or its inference.pdiparams"
        )
    try:
        with CappedFile(path) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            member = None
            for i, m in enumerate(tar):
                if i >= _MAX_TAR_MEMBERS:
                    raise WeightsError(f"{path}: more than {_MAX_TAR_MEMBERS} files in the tar; not a *_infer.tar")
                if m.isreg() and m.name.endswith(".pdiparams"):
                    member = m
                    break
            if member is None:
                raise WeightsError(f"{path}: no .pdiparams file inside this tar (expected a PaddleClas *_infer.tar)")
            if member.sparse is not None or member.offset_data + member.size > path.stat().st_size:
                raise WeightsError(f"{path}: {member.name} claims more bytes than the tar holds")
            f.seek(member.offset_data)
            buf = bytearray(member.size)
            if f.readinto(buf) != member.size:
                raise WeightsError(f"{path}: the tar ends inside {member.name} (truncated?)")
            return buf
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable tar archive (truncated or corrupt?): {e}") from None


__all__ = ["pdiparams_from_tar", "read_pdiparams_arrays"]
