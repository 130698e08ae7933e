#!/usr/bin/env bash
# Runs every test: installs what is needed, checks the documents (scripts/check_docs.py) and the layering of the
# headers (scripts/check_layers.py), builds and runs the C++ tests (GoogleTest via ctest), checks that a separate
# CMake project can find_package(c3), runs the Python tests (which include the notebooks), builds the
# documentation site (any warning fails) and opens it in headless Chromium, then builds the wheel with every
# instruction-set level and runs the kernel tests against each level.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

jobs=$(nproc)
echo "== documents describe the project as it is"
python3 scripts/check_docs.py
echo "== headers include only their own and lower layers"
python3 scripts/check_layers.py

echo "== C++ tests"
cmake -S . -B build/tests -G Ninja -DC3_BUILD_TESTS=ON -DC3_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/tests -j "$jobs"
# The oneDNN that setup.sh installed (onednn-cpu-gomp): the product tests run against it too.
C3_TEST_ONEDNN=$(python3 -c "from c3._onednn import installed_library; print(installed_library() or '')") \
  ctest --test-dir build/tests --output-on-failure -j "$jobs"

echo "== C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer"
bash scripts/check_sanitizers.sh

echo "== fuzzing (libFuzzer, 30 s per target)"
bash scripts/fuzz.sh 30

echo "== find_package(c3) from a separate project"
cmake --install build/tests --prefix build/install >/dev/null
cmake -S tests/consumer -B build/consumer -G Ninja -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/consumer >/dev/null
./build/consumer/consumer

echo "== Python tests"
python3 -m pytest -q -ra tests/python

echo "== documentation site (warnings are errors), then headless Chromium on its pages"
bash scripts/docs.sh   # reuses the notebooks the Python tests executed (build/notebooks)
python3 -m pytest -q -ra -s tests/docs

echo "== the wheel: c3._core at the generic, avx2 and avx512 levels, tested at each level this CPU runs"
bash scripts/test_wheel.sh
