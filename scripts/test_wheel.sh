#!/usr/bin/env bash
# The wheel that runs on any x86-64 machine: builds it with c3._core at the three instruction-set levels
# (generic, avx2, avx512), installs it into a fresh virtual environment that shares this Python's packages
# (torch, transformers), and runs the Python tests against it. The whole suite has already run on the native build
# (scripts/test.sh); here the kernel tests (model, training, cascade against their oracles, determinism, and the
# loader) run at each level this CPU supports, forced with C3_ISA, which keeps CI inside its time budget.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(uname -m)" != x86_64 ]; then
  echo "wheel levels are x86-64 levels: skipped on $(uname -m)"
  exit 0
fi

started=$SECONDS
rm -rf build/wheel/dist build/wheel/venv
# build/wheel/build keeps CMake's tree, so that a second run here only rebuilds what changed.
python3 -m pip wheel . --no-deps --no-build-isolation -q -w build/wheel/dist -Cbuild-dir=build/wheel/build \
  -Ccmake.define.C3_ISA_LEVELS="generic;avx2;avx512"
echo "wheel built in $((SECONDS - started)) s: $(ls build/wheel/dist)"

# Without pip of its own (Debian's python3 has no ensurepip unless python3-venv is installed): this Python's pip
# installs into it.
python3 -m venv --system-site-packages --without-pip build/wheel/venv
python=$PWD/build/wheel/venv/bin/python
python3 -m pip --python "$python" install -q --no-deps --force-reinstall build/wheel/dist/c3-*.whl
# A development C3_CORE_DIR or PYTHONPATH would hide the wheel's c3: run without them, and check.
run() { env -u C3_CORE_DIR -u PYTHONPATH -u C3_ISA PATH="$PWD/build/wheel/venv/bin:$PATH" "$@"; }
run "$python" -c "import c3, sys; assert c3.__file__.startswith(sys.prefix), c3.__file__"
levels=$(run "$python" -c "import c3; print(' '.join(c3.build_info()['cpu_levels']))")
run "$python" -m c3.cli --version

kernel_tests=(tests/python/test_isa.py tests/python/test_model.py tests/python/test_training.py
              tests/python/test_cascade.py tests/python/test_reliability.py tests/python/test_compute_auto.py
              tests/python/test_onednn.py)
for level in $levels; do
  echo "== wheel, C3_ISA=$level ($((SECONDS - started)) s so far)"
  run C3_ISA=$level "$python" -m pytest -q -ra -p no:cacheprovider "${kernel_tests[@]}"
done
echo "wheel: built, installed and tested in $((SECONDS - started)) s"
