#!/usr/bin/env bash
# Build deploy/cpp/build/res2net_predict against the libtorch inside the pip-installed torch.
#
#   bash deploy/cpp/build.sh                 # uses .venv/bin/python of the repository, else python3
#   PYTHON=/path/to/python bash deploy/cpp/build.sh
#   BUILD_DIR=/tmp/b bash deploy/cpp/build.sh
#
# Needs: cmake >= 3.18, a C++20 compiler (g++ >= 10), OpenCV headers (Debian: apt-get install -y
# cmake g++ libopencv-dev), and a torch >= 2.6 wheel. CMake's find_package(Torch) is not used (the
# CUDA build of the wheel makes it look for a CUDA toolkit), so the torch paths are passed here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
BUILD_DIR="${BUILD_DIR:-$HERE/build}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (Debian: apt-get install -y cmake g++ libopencv-dev)" >&2; exit 1; }
done

read -r TORCH_ROOT CXX11_ABI EXTRA_DIRS < <("$PYTHON" - <<'PY'
import glob, os, torch
root = os.path.dirname(torch.__file__)
site = os.path.dirname(root)
# libtorch_cpu.so of the CUDA wheels needs libcudart / libcupti at link time; they live in nvidia wheels.
dirs = sorted({os.path.dirname(p) for pat in ("libcudart.so*", "libcupti.so*")
               for p in glob.glob(os.path.join(site, "nvidia", "**", pat), recursive=True)})
print(root, int(torch.compiled_with_cxx11_abi()), ";".join(dirs) or "-")
PY
) || { echo "error: cannot import torch with $PYTHON" >&2; exit 1; }
# ExecuTorch (optional, `pip install 'res2net[edge]'`): its wheel ships the C++ runtime for res2net_pte_predict.
ET_DIR="$("$PYTHON" -c 'import os, executorch; print(os.path.join(list(executorch.__path__)[0], "share", "cmake"))' 2>/dev/null || true)"
ET_ARGS=()
[[ -n "$ET_DIR" && -f "$ET_DIR/executorch-config.cmake" ]] && ET_ARGS=(-Dexecutorch_DIR="$ET_DIR")
[[ "$EXTRA_DIRS" == "-" ]] && EXTRA_DIRS=""
ABI=$([[ "$CXX11_ABI" == 1 ]] && echo ON || echo OFF)

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$HERE" -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DTORCH_ROOT="$TORCH_ROOT" -DTORCH_CXX11_ABI="$ABI" -DTORCH_EXTRA_LIB_DIRS="$EXTRA_DIRS" "${ET_ARGS[@]}"
cmake --build "$BUILD_DIR" --parallel "$JOBS"
echo "built $BUILD_DIR/res2net_predict"
[[ -x "$BUILD_DIR/res2net_pte_predict" ]] && echo "built $BUILD_DIR/res2net_pte_predict"
exit 0
