#!/usr/bin/env bash
# Sets up everything res2net needs, idempotently, from the package registries only:
#   system        (Debian, when run as root) chromium for the web-demo test, OpenCV/CMake/Ninja for the C++ predictor,
#                 qemu-user to test int8 on an emulated AVX2-only CPU (tests/emulated_cpu.py)
#   .venv         the library with all extras (torch from the local wheel cache where present)
#   .venv-paddle  PaddlePaddle + PaddleClas, used only as a test oracle and benchmark anchor
# Usage: bash scripts/setup.sh [--no-paddle]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

APT_PACKAGES=(chromium libopencv-dev cmake g++ ninja-build qemu-user)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "note: install these system packages for the C++ predictor and web-demo tests: ${missing[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# torch 2.14.1 / torchvision 0.29.1 are the newest this workplace serves (see README "Installation").
.venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q -e '.[deploy,serve,train,plot,edge,test]'

if [ "${1:-}" != "--no-paddle" ]; then
  if [ ! -x .venv-paddle/bin/python ]; then
    "$PY" -m venv .venv-paddle
  fi
  .venv-paddle/bin/pip install -q --upgrade pip
  .venv-paddle/bin/pip install -q paddlepaddle==3.3.1 paddleclas==2.6.0
fi
echo "setup complete: activate with 'source .venv/bin/activate'"
