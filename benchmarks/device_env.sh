# Sourced by the device scripts (isa_levels.sh, many_cores.sh): builds c3._core into build/$1 with CMake
# option $2 (e.g. -DC3_ISA_LEVELS=generic;avx2;avx512, or nothing for one -march=native module), logging to
# $OUT/build.log, then exports C3_CORE_DIR and PYTHONPATH so that `import c3` loads that build.
# Header libraries come from .devcarry/prefix where the machine has no system copies (copied there from /usr:
# Eigen, xtensor, xtl, nlohmann-json).
device_build() {
  local directory=$1 option=${2:-} started=$SECONDS prefix=$PWD/.devcarry/prefix
  config_dir() { dirname "$(find "$prefix" -name "$1" -print -quit)"; }
  if [ -z "${CMAKE_ARGS:-}" ] && [ -d "$prefix" ]; then
    CMAKE_ARGS="-DEigen3_DIR=$(config_dir Eigen3Config.cmake) -Dxtensor_DIR=$(config_dir xtensorConfig.cmake)"
    CMAKE_ARGS+=" -Dxtl_DIR=$(config_dir xtlConfig.cmake) -Dnlohmann_json_DIR=$(config_dir nlohmann_jsonConfig.cmake)"
  fi
  CMAKE_ARGS="${CMAKE_ARGS:-} -Dpybind11_DIR=$(python3 -m pybind11 --cmakedir)"
  { lscpu; grep -m1 '^flags' /proc/cpuinfo; } > "$OUT/cpu.txt" 2>&1 || true
  # shellcheck disable=SC2086
  cmake -S . -B "build/$directory" -G Ninja -DCMAKE_BUILD_TYPE=Release -DC3_BUILD_PYTHON=ON -DC3_BUILD_TESTS=OFF \
    -DC3_INSTALL=OFF ${option:+"$option"} $CMAKE_ARGS > "$OUT/build.log" 2>&1
  cmake --build "build/$directory" -j "$(nproc)" >> "$OUT/build.log" 2>&1
  echo "built in $((SECONDS - started)) s" | tee -a "$OUT/build.log"

  # import c3 needs numpy and tqdm; tqdm only for progress bars, which the benchmarks do not show.
  local shim=""
  if ! python3 -c "import tqdm" 2>/dev/null; then
    shim=$(mktemp -d)
    mkdir -p "$shim/tqdm"
    printf 'def tqdm(iterable=None, *args, **kwargs):\n    return iterable\n' > "$shim/tqdm/auto.py"
    touch "$shim/tqdm/__init__.py"
  fi
  export C3_CORE_DIR=$PWD/build/$directory/python PYTHONPATH=$PWD/python${shim:+:$shim}
}
