#!/usr/bin/env bash
# Build the C++ predictors against the runtimes inside the pip-installed wheels (no system OpenVINO,
# no libtorch download):
#   deploy/cpp/build/res2net_predict      OpenVINO IR (openvino wheel) and .pt2 packages (torch wheel)
#   deploy/cpp/build/res2net_pte_predict  ExecuTorch .pte programs (executorch wheel; optional)
#
#   bash deploy/cpp/build.sh                 # uses .venv/bin/python of the repository, else python3
#   PYTHON=/path/to/python bash deploy/cpp/build.sh
#   BUILD_DIR=/tmp/b bash deploy/cpp/build.sh
#   REQUIRE="openvino pt2" bash deploy/cpp/build.sh   # fail unless these runtimes are built (CI)
#
# Needs cmake >= 3.18, a C++20 compiler (g++ >= 10) and OpenCV headers (Debian: apt-get install -y
# cmake g++ ninja-build libopencv-dev; scripts/setup.sh installs them), and in the Python
# environment at least one of openvino (pip install 'res2net[deploy]') and torch >= 2.6.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
BUILD_DIR="${BUILD_DIR:-$HERE/build}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
APT_HINT="Debian/Ubuntu: apt-get install -y cmake g++ ninja-build libopencv-dev, or bash scripts/setup.sh"

missing=()
for tool in cmake c++; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ! pkg-config --exists opencv4 2>/dev/null && [[ ! -d /usr/include/opencv4 && ! -d /usr/local/include/opencv4 ]]; then
  missing+=("OpenCV headers")
fi
if ((${#missing[@]})); then
  echo "error: missing ${missing[*]} ($APT_HINT)" >&2
  exit 1
fi
command -v "$PYTHON" >/dev/null || { echo "error: no Python at '$PYTHON' (set PYTHON=...)" >&2; exit 1; }

# One line per runtime: "name|path or empty|why not".
mapfile -t FOUND < <("$PYTHON" - <<'PY'
import glob, os
def find(name, fn):
    try:
        print(f"{name}|{fn()}|")
    except Exception as e:  # ImportError, or a wheel without the C++ parts
        print(f"{name}||{type(e).__name__}: {e}".replace("\n", " "))
def openvino():
    import openvino
    d = os.path.join(os.path.dirname(openvino.__file__), "cmake")
    if not os.path.isfile(os.path.join(d, "OpenVINOConfig.cmake")):
        raise FileNotFoundError(f"{d}/OpenVINOConfig.cmake (this openvino wheel ships no C++ SDK)")
    return d
def torch():
    import torch
    root = os.path.dirname(torch.__file__)
    site = os.path.dirname(root)
    # libtorch_cpu.so of the CUDA wheels needs libcudart / libcupti at link time; they live in nvidia wheels.
    dirs = sorted({os.path.dirname(p) for pat in ("libcudart.so*", "libcupti.so*")
                   for p in glob.glob(os.path.join(site, "nvidia", "**", pat), recursive=True)})
    return f"{root};{int(torch.compiled_with_cxx11_abi())};{':'.join(dirs)}"
def executorch():
    import executorch
    d = os.path.join(list(executorch.__path__)[0], "share", "cmake")
    if not os.path.isfile(os.path.join(d, "executorch-config.cmake")):
        raise FileNotFoundError(f"{d}/executorch-config.cmake")
    return d
find("openvino", openvino); find("pt2", torch); find("pte", executorch)
PY
) || { echo "error: cannot run $PYTHON" >&2; exit 1; }

ARGS=()
declare -A BUILT
for line in "${FOUND[@]}"; do
  IFS='|' read -r name path why <<<"$line"
  if [[ -z "$path" ]]; then
    case "$name" in
      openvino) echo "note: no OpenVINO C++ SDK ($why): res2net_predict will not run OpenVINO IR (pip install 'res2net[deploy]')" >&2
                ARGS+=(-DWITH_OPENVINO=OFF) ;;
      pt2) echo "note: no torch ($why): res2net_predict will not run .pt2 packages (pip install torch)" >&2
           ARGS+=(-DWITH_PT2=OFF) ;;
      pte) echo "note: no ExecuTorch ($why): res2net_pte_predict is not built (pip install 'res2net[edge]')" >&2 ;;
    esac
    continue
  fi
  BUILT[$name]=1
  case "$name" in
    openvino) ARGS+=(-DOpenVINO_DIR="$path") ;;
    pt2) IFS=';' read -r root abi extra <<<"$path"
         ARGS+=(-DTORCH_ROOT="$root" -DTORCH_CXX11_ABI="$([[ $abi == 1 ]] && echo ON || echo OFF)"
                -DTORCH_EXTRA_LIB_DIRS="${extra//:/;}") ;;
    pte) ARGS+=(-Dexecutorch_DIR="$path") ;;
  esac
done
if [[ -z "${BUILT[openvino]:-}" && -z "${BUILT[pt2]:-}" ]]; then
  echo "error: $PYTHON has neither openvino nor torch: res2net_predict needs at least one (pip install 'res2net[deploy]')" >&2
  exit 1
fi
for need in ${REQUIRE:-}; do
  [[ -n "${BUILT[$need]:-}" ]] || { echo "error: REQUIRE=$need, but that runtime was not found (see the notes above)" >&2; exit 1; }
done

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$HERE" -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "${ARGS[@]}"
cmake --build "$BUILD_DIR" --parallel "$JOBS"
runtimes=$(for r in openvino pt2; do [[ -n "${BUILT[$r]:-}" ]] && printf '%s ' "$r"; done)
echo "built $BUILD_DIR/res2net_predict (runtimes: ${runtimes% })"
[[ -x "$BUILD_DIR/res2net_pte_predict" ]] && echo "built $BUILD_DIR/res2net_pte_predict"
exit 0
