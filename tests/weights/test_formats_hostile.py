"""Hostile ``.pdiparams``, ``*_infer.tar``, ``.pth`` and ``.safetensors`` files (issue 11, items 2-3).

Each is made here from a few hand-written bytes (or a valid file with one field changed) and loaded in
a memory-capped child (tests/weights/reader_process.py): one WeightsError naming the file, no
other exception, no crash, peak memory and time bounded.
"""

import gzip
import io
import json
import pickle
import struct
import tarfile
import zipfile

import pytest
import torch

from tests.weights import pickle_ops as op
from tests.weights.reader_process import assert_refused_cleanly


# --------------------------------------------------------------------------- .pdiparams (LoDTensor stream)
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def lod_tensor(
    dims: list[int], payload: bytes, dtype: int = 5, lod: list[int] = (), desc: bytes | None = None
) -> bytes:
    """One ``save_combine`` record: version, LoD levels (sizes), tensor version, TensorDesc, data."""
    if desc is None:
        desc = b"\x08" + _varint(dtype) + b"".join(b"\x10" + _varint(d) for d in dims)
    lod_part = struct.pack("<Q", len(lod)) + b"".join(struct.pack("<Q", n) for n in lod)
    return struct.pack("<I", 0) + lod_part + struct.pack("<Ii", 0, len(desc)) + desc + payload


@pytest.mark.parametrize(
    "name, data, match",
    [
        # dims [-1] made every tensor re-read the rest of the file (204 KB -> +586 MB)
        ("dims_minus_one", lod_tensor([-1], b"\0" * 4096) * 50, "negative dims [-1]"),
        ("huge_dims", lod_tensor([2**62, 2**62], b"\0" * 64), "runs past the end"),
        ("huge_dim_product", lod_tensor([2**31] * 8, b""), "runs past the end"),
        ("huge_lod_size", lod_tensor([1], b"\0" * 4, lod=[2**63]), "LoD level of 9223372036854775808 bytes"),
        ("many_lod_levels", struct.pack("<IQ", 0, 2**64 - 1) + b"\0" * 64, "inside a header"),
        ("negative_desc_len", struct.pack("<IQIi", 0, 0, 0, -5), "bad tensor header"),
        ("huge_desc_len", struct.pack("<IQIi", 0, 0, 0, 2**31 - 1) + b"\x08\x05", "TensorDesc of 2147483647 bytes"),
        ("bad_dtype", lod_tensor([1], b"\0" * 4, dtype=99), "unsupported Paddle dtype id 99"),
        ("unterminated_varint", lod_tensor([], b"", desc=b"\x08" + b"\xff" * 4), "ends inside a number"),
        ("long_varint", lod_tensor([], b"", desc=b"\x08" + b"\xff" * 12 + b"\x01"), "longer than 10 bytes"),
        ("field_past_end", lod_tensor([], b"", desc=b"\x08\x05\x12\x7f"), "field runs past its end"),
        ("wire_type", lod_tensor([], b"", desc=b"\x0b\x05"), "unexpected protobuf wire type 3"),
        ("no_dtype", lod_tensor([], b"", desc=b"\x10\x01"), "TensorDesc without data_type"),
        ("too_many_dims", lod_tensor([1] * 40, b"\0" * 4), "more than 32 dims"),
        ("version", struct.pack("<I", 7) + b"\0" * 32, "unsupported LoDTensor version 7"),
        ("truncated_header", lod_tensor([4], b"\0" * 16)[:10], "inside a header"),
        ("truncated_data", lod_tensor([4], b"\0" * 16)[:-1], "runs past the end"),
    ],
)
def test_hostile_pdiparams(reader, tmp_path, name, data, match):
    path = tmp_path / f"{name}.pdiparams"
    path.write_bytes(data)
    assert_refused_cleanly(reader.load(path), path, match=match)


def test_pdiparams_arrays_are_read_in_order(tmp_path):
    from res2net.weights.formats import read_pdiparams_arrays

    data = bytearray(lod_tensor([2, 2], struct.pack("<4f", 1, 2, 3, 4)) + lod_tensor([0], b""))
    a, empty = read_pdiparams_arrays(tmp_path / "x.pdiparams", data)
    assert a.tolist() == [[1, 2], [3, 4]] and empty.shape == (0,)


# --------------------------------------------------------------------------- *_infer.tar
def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _set_size(tar_bytes: bytes, header_at: int, size: int) -> bytes:
    """Rewrite the size field (base-256 for large values) of the ustar header at ``header_at`` and its checksum."""
    block = bytearray(tar_bytes[header_at : header_at + 512])
    block[124:136] = b"\x80" + size.to_bytes(11, "big")
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return tar_bytes[:header_at] + bytes(block) + tar_bytes[header_at + 512 :]


def test_compressed_infer_tar_is_refused_before_decompression(reader, tmp_path):
    bomb = _tar({"m_infer/inference.pdiparams": lod_tensor([2**18], b"\0" * 2**20) * 64})  # 64 MB of zeros
    path = tmp_path / "m_infer.tar"
    path.write_bytes(gzip.compress(bomb, 9))
    assert path.stat().st_size < 2**20 // 4
    assert_refused_cleanly(reader.load(path), path, match="gzip-compressed archive", max_rss_mb=16)


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("no_params", lambda: _tar({"m_infer/inference.pdmodel": b"x"}), "no .pdiparams file inside"),
        ("member_too_big", lambda: _set_size(_tar({"inference.pdiparams": b"\0" * 64}), 0, 2**40), "more bytes"),
        ("pax_header_too_big", lambda: _set_size(_tar({"é/inference.pdiparams": b"\0" * 64}), 0, 2**40), "tar"),
        ("many_members", lambda: _tar({f"f{i}": b"" for i in range(100)}), "more than 64 files"),
        ("not_a_tar", lambda: b"\0" * 100 + b"garbage" * 200, "not a readable tar archive"),
    ],
)
def test_hostile_infer_tar(reader, tmp_path, name, make, match):
    path = tmp_path / f"{name}_infer.tar"
    path.write_bytes(make())
    assert_refused_cleanly(reader.load(path), path, match=match, max_rss_mb=16)


# --------------------------------------------------------------------------- .pth (torch zip)
def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _with_member(pth: bytes, suffix: str, content: bytes | None = None, compression=zipfile.ZIP_STORED) -> bytes:
    """Rewrite a torch zip, replacing the member ending in ``suffix`` (all members use ``compression``)."""
    src, out = zipfile.ZipFile(io.BytesIO(pth)), io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            keep = content is None or not info.filename.endswith(suffix)
            dst.writestr(info.filename, src.read(info) if keep else content)
    return out.getvalue()


SMALL = {"fc.bias": torch.zeros(4)}
# data.pkl contents that made torch's weights-only unpickler raise KeyError, IndexError, TypeError,
# ValueError, AttributeError, UnicodeDecodeError, struct.error and RuntimeError instead of UnpicklingError.
BAD_DATA_PKL = {
    "truncated": b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01",
    "binget_unset": b"\x80\x02h\x05.",
    "mark_stop": b"\x80\x02(.",
    "setitems_on_int": b"\x80\x02K\x01(K\x02K\x03u.",
    "append_on_none": b"\x80\x02NK\x01a.",
    "reduce_on_none": b"\x80\x02N)R.",
    "bad_utf8": b"\x80\x02X\x02\x00\x00\x00\xff\xfe.",
    "huge_unicode": b"\x80\x02X\xff\xff\xff\x7f.",
    "build_on_int": b"\x80\x02K\x01}b.",
    "empty": b"",
    "bad_persistent": b"\x80\x02(X\x07\x00\x00\x00storageK\x01K\x02tQ.",
    "forbidden_global": b"\x80\x02cos\nsystem\n(X\x02\x00\x00\x00idtR.",
}


@pytest.mark.parametrize("name", list(BAD_DATA_PKL))
def test_malformed_pth_data_pkl(reader, tmp_path, name):
    path = tmp_path / f"{name}.pth"
    path.write_bytes(_with_member(_torch_bytes(SMALL), "data.pkl", BAD_DATA_PKL[name]))
    match = "refused to load" if name == "forbidden_global" else ""
    assert_refused_cleanly(reader.load(path), path, match=match)


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("stride0_fc", lambda: _torch_bytes({"fc.weight": torch.zeros(1).expand(1000, 2048)}), "repeat or skip memory"),
        ("overlapping", lambda: _torch_bytes({"a": torch.zeros(8).as_strided((4, 4), (1, 1))}), "repeat or skip"),
        ("sparse", lambda: _torch_bytes({"fc.weight": torch.zeros(4, 4).to_sparse()}), "sparse_coo"),
        ("complex", lambda: _torch_bytes({"fc.bias": torch.zeros(4, dtype=torch.complex64)}), "complex64"),
        ("int_key", lambda: _torch_bytes({1: torch.zeros(4)}), "weights are named by strings"),
        ("compressed", lambda: _with_member(_torch_bytes(SMALL), "", None, zipfile.ZIP_DEFLATED), "is compressed"),
        ("not_a_dict", lambda: _torch_bytes([torch.zeros(1)]), "expected a state dict, found list"),
        ("truncated", lambda: _torch_bytes(SMALL)[:300], "not a readable PyTorch checkpoint"),
    ],
)
def test_hostile_pth(reader, tmp_path, name, make, match):
    path = tmp_path / f"{name}.pth"
    path.write_bytes(make())
    assert_refused_cleanly(reader.load(path), path, match=match)


def test_deeply_nested_key_never_reaches_torch(reader, tmp_path):
    # torch's weights-only unpickler hashes this key and CPython overflows its C stack (SIGSEGV)
    nested = b"\x80\x02}K\x01" + b"\x85" * 1_000_000 + b"K\x01s."
    path = tmp_path / "nested.pth"
    path.write_bytes(_with_member(_torch_bytes(SMALL), "data.pkl", nested))
    assert_refused_cleanly(reader.load(path), path, match="is not a string, number or flat tuple")


def _legacy(main_pickle: bytes) -> bytes:
    """A pre-1.6 ``torch.save`` layout: magic, protocol and sys-info pickles, the object, storage keys."""
    magic = b"\x80\x02\x8a\x0alP\xfc\x9c\x86\x19\x68\x9c\xfc\x00."  # not checked by the scan
    info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    return magic + pickle.dumps(1001, protocol=2) + info + main_pickle + pickle.dumps(["0"], protocol=2)


def test_legacy_pth_storage_sizes_are_checked_before_torch_allocates(reader, tmp_path):
    pid = op.tup(op.text("storage"), op.glob("torch", "FloatStorage"), op.text("0"), op.text("cpu"))
    pid = pid[:-1] + b"\x8a\x06" + (2**40).to_bytes(6, "little") + op.TUPLE  # numel 2**40 (4 TiB)
    rebuild = op.glob("torch._utils", "_rebuild_tensor_v2") + op.tup(
        pid + b"Q", op.integer(0), op.tup(op.integer(4)), op.tup(op.integer(1)), op.FALSE, op.EMPTY_DICT
    )
    main = op.state_dict((op.text("fc.bias"), rebuild + op.REDUCE))  # fmt: skip
    path = tmp_path / "legacy.pth"
    path.write_bytes(_legacy(main))
    assert_refused_cleanly(reader.load(path), path, match="storages declare 1099511627776 elements", max_rss_mb=16)


def test_zip_of_a_newer_format_version(reader, tmp_path):  # a fuzz find: zipfile raised NotImplementedError
    data = bytearray(_with_member(_torch_bytes(SMALL), "data.pkl", None))
    cd = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    struct.pack_into("<B", data, cd + 6, 64)  # "version needed to extract": 6.4
    path = tmp_path / "v64.pth"
    path.write_bytes(bytes(data))
    assert_refused_cleanly(reader.load(path), path, match="zip file version 6.4")


def test_zip_member_claiming_more_than_the_file(reader, tmp_path):
    data = bytearray(_with_member(_torch_bytes(SMALL), "data.pkl", None))
    end = data.rfind(b"PK\x05\x06")
    cd = struct.unpack_from("<I", data, end + 16)[0]  # central directory offset
    struct.pack_into("<II", data, cd + 20, 2**31, 2**31)  # first member: compressed/uncompressed size
    path = tmp_path / "lying.pth"
    path.write_bytes(bytes(data))
    assert_refused_cleanly(reader.load(path), path, match="claims more bytes than the file has")


# --------------------------------------------------------------------------- .safetensors
def _safetensors(header: dict | bytes, payload: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


@pytest.mark.parametrize(
    "name, data",
    [
        ("huge_header", struct.pack("<Q", 2**60) + b"{}"),
        ("bad_json", _safetensors(b"{not json")),
        ("bad_dtype", _safetensors({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)),
        ("short_data", _safetensors({"a": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}}, b"\0" * 4)),
        (
            "overlap",
            _safetensors(
                {
                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                },
                b"\0" * 4,
            ),
        ),  # fmt: skip
        ("bad_metadata", _safetensors({"__metadata__": {"a": 1}})),
        ("not_dict", _safetensors(b"[1, 2]")),
    ],
)
def test_hostile_safetensors(reader, tmp_path, name, data):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(data)
    assert_refused_cleanly(reader.load(path), path, match="not a readable .safetensors file")
