"""Regenerate the Python stubs of ``grpc_predict_v2.proto``: ``python -m res2net.serve.proto.generate``.

Why committed stubs instead of generating at install time: protoc (grpcio-tools) is a build tool
users should not need, and generated code that silently differs per machine is hard to debug.
``tests/serve/test_proto.py`` recompiles the ``.proto`` and fails when these files are stale.

One deliberate edit to protoc's output: the messages live in a **private descriptor pool**.
``tritonclient`` (and any Triton or KServe stub) registers the same ``inference.*`` message names
from its own ``.proto`` file in protobuf's default pool, and protobuf refuses a second file that
defines an existing symbol — so with the default pool, a process could not import both our server
and the standard client (our tests, or a user's gateway). The wire format is unaffected.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO = Path(__file__).with_name("grpc_predict_v2.proto")
SRC_ROOT = Path(__file__).resolve().parents[3]  # .../src, so imports read `from res2net.serve.proto import ...`
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py", "grpc_predict_v2_pb2.pyi")
# Generated code is exempt from the project's lint and format rules.
_HEADER = "# ruff: noqa\n# fmt: off\n"
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = (
    "# res2net: a private pool, so that tritonclient's identical 'inference.*' names can coexist\n"
    "# (edited by res2net/serve/proto/generate.py).\n"
    "_POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = _POOL.AddSerializedFile("
)


def generate(out_dir: Path) -> list[Path]:
    """Compile the proto into ``out_dir`` (flat: the three files only) and return their paths."""
    from grpc_tools import protoc  # grpcio-tools: a development dependency only

    proto_include = Path(protoc.__file__).with_name("_proto")
    rel = PROTO.resolve().relative_to(SRC_ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{SRC_ROOT}",
            f"-I{proto_include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(rel),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            text = (Path(tmp) / rel.parent / name).read_text()
            if name.endswith("_pb2.py"):
                if _DEFAULT_POOL not in text:
                    raise RuntimeError("protoc output changed shape: cannot move the descriptors to a private pool")
                text = text.replace(_DEFAULT_POOL, _PRIVATE_POOL)
            (out_dir / name).write_text(_HEADER + text)
            written.append(out_dir / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO.parent, help="output directory (default: next to the proto)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
