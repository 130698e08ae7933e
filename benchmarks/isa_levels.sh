#!/usr/bin/env bash
# Device check for the per-level builds of c3._core: builds the generic (x86-64-v2), avx2 (x86-64-v3) and avx512
# (x86-64-v4 + AVX512-BF16) modules in one CMake tree and runs benchmarks/isa_levels.py (decode/prefill on a
# SmolLM2-135M-shaped model, training steps on d128/d256) at each level, all threads. Run from the repository
# root; writes isa_levels.txt, isa_levels.json, build.log and cpu.txt to $OUT. About 2-3 minutes on 16 cores (the
# benchmark stops at 150 s; each finished level is printed as it ends).
set -euo pipefail
OUT=${OUT:-$PWD/out/isa}
mkdir -p "$OUT"
started=$SECONDS
source benchmarks/device_env.sh
device_build isa "-DC3_ISA_LEVELS=generic;avx2;avx512"
python3 -c "import c3; print(c3.build_info()['cpu_levels'])" | tee -a "$OUT/build.log"
cd benchmarks
timeout 150 python3 isa_levels.py --threads "$(nproc)" --quick --json "$OUT/isa_levels.json" 2>&1 | tee "$OUT/isa_levels.txt" || echo "benchmark stopped: status $?" | tee -a "$OUT/isa_levels.txt"
echo "total $((SECONDS - started)) s" | tee -a "$OUT/isa_levels.txt"
