#!/usr/bin/env bash
# Device check for the per-level builds of c3._core: builds the generic (x86-64-v2), avx2 (x86-64-v3) and avx512
# (x86-64-v4 + AVX512-BF16) modules in one CMake tree and runs benchmarks/isa_levels.py (decode/prefill on a
# SmolLM2-135M-shaped model, training steps on d128/d256) at each level, all threads. Run from the repository
# root; writes isa_levels.txt, isa_levels.json, build.log and cpu.txt to $OUT. About 2-3 minutes on 16 cores (the benchmark stops at 150 s; each finished level is printed as it ends).
set -euo pipefail
OUT=${OUT:-$PWD/out/isa}
mkdir -p "$OUT"
started=$SECONDS

# Header libraries: .devcarry/prefix on the device machine; elsewhere the system's (no extra arguments).
prefix=$PWD/.devcarry/prefix
config_dir() { dirname "$(find "$prefix" -name "$1" -print -quit)"; }
if [ -z "${CMAKE_ARGS:-}" ] && [ -d "$prefix" ]; then
  CMAKE_ARGS="-DEigen3_DIR=$(config_dir Eigen3Config.cmake) -Dxtensor_DIR=$(config_dir xtensorConfig.cmake)"
  CMAKE_ARGS+=" -Dxtl_DIR=$(config_dir xtlConfig.cmake) -Dnlohmann_json_DIR=$(config_dir nlohmann_jsonConfig.cmake)"
fi
CMAKE_ARGS="${CMAKE_ARGS:-} -Dpybind11_DIR=$(python3 -m pybind11 --cmakedir)"

{ lscpu; grep -m1 '^flags' /proc/cpuinfo; } > "$OUT/cpu.txt" 2>&1 || true
# shellcheck disable=SC2086
cmake -S . -B build/isa -G Ninja -DCMAKE_BUILD_TYPE=Release -DC3_BUILD_PYTHON=ON -DC3_BUILD_TESTS=OFF \
  -DC3_INSTALL=OFF -DC3_ISA_LEVELS="generic;avx2;avx512" $CMAKE_ARGS > "$OUT/build.log" 2>&1
cmake --build build/isa -j "$(nproc)" >> "$OUT/build.log" 2>&1
echo "three levels built in $((SECONDS - started)) s" | tee -a "$OUT/build.log"

# import c3 needs numpy and tqdm; tqdm only for progress bars, which the benchmark does not show.
shim=""
if ! python3 -c "import tqdm" 2>/dev/null; then
  shim=$(mktemp -d)
  mkdir -p "$shim/tqdm"
  printf 'def tqdm(iterable=None, *args, **kwargs):\n    return iterable\n' > "$shim/tqdm/auto.py"
  touch "$shim/tqdm/__init__.py"
fi
export C3_CORE_DIR=$PWD/build/isa/python PYTHONPATH=$PWD/python${shim:+:$shim}
python3 -c "import c3; print(c3.build_info()['cpu_levels'])" | tee -a "$OUT/build.log"
cd benchmarks
timeout 150 python3 isa_levels.py --threads "$(nproc)" --quick --json "$OUT/isa_levels.json" 2>&1 | tee "$OUT/isa_levels.txt" || echo "benchmark stopped: status $?" | tee -a "$OUT/isa_levels.txt"
echo "total $((SECONDS - started)) s" | tee -a "$OUT/isa_levels.txt"
