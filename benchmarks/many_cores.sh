#!/usr/bin/env bash
# Device check for the many-core figures of docs/BENCHMARKS.md: builds c3._core for the machine (-march=native)
# and runs, each under its own time limit and in order of importance,
#   0. a check that c3 and PyTorch load into one process (docs/RELIABILITY.md, Findings);
#   1. benchmarks/scaling.py (no PyTorch): training at 1, 2, 4, 8 and 16 threads (up to the cores), d128/d256/d512;
#   2. compare_torch.py --only mixed (d512, small) and compare_cascade.py --pretrained-shape --frozen (the
#      SmolLM2-135M cascade's shape, batch 4 and 16 x 64) at all threads and at 2 threads;
#   3. the language-model scaling again with the threads pinned to cores (OMP_PROC_BIND=close).
# Run from the repository root; writes results.txt, the benchmarks' .json files, build.log and cpu.txt to $OUT.
# BUDGET (seconds, default 540) bounds the whole run: a step that would start with under 20 s left is skipped.
# About 6-8 minutes on 16 cores.
set -uo pipefail
OUT=${OUT:-$PWD/out/many_cores}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
started=$SECONDS
source benchmarks/device_env.sh
device_build native "" || { tail -30 "$OUT/build.log"; exit 1; }
cores=$(nproc)
cd benchmarks

# step NAME LIMIT COMMAND...: runs COMMAND under min(LIMIT, time left), output appended to $OUT/results.txt.
step() {
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - (SECONDS - started)))
  if [ "$left" -lt 20 ]; then echo "== $name: skipped, $left s left" | tee -a "$OUT/results.txt"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit $limit s, at $((SECONDS - started)) s): $*" | tee -a "$OUT/results.txt"
  timeout "$limit" "$@" 2>&1 | grep -v -e "Loading weights" -e "Writing model" | tee -a "$OUT/results.txt"
  echo "== $name: status ${PIPESTATUS[0]}, done at $((SECONDS - started)) s" | tee -a "$OUT/results.txt"
}
step coexist_c3_first 30 python3 -c "import c3; c3.build_info(); import torch; print('c3, then PyTorch: works')"
step coexist_torch_first 30 python3 -c "import torch, c3; c3.build_info(); print('PyTorch, then c3: works')"
step scaling 200 python3 scaling.py --json "$OUT/scaling.json"
step mixed_all 90 python3 compare_torch.py --only mixed --models d512,small --threads "$cores" --json "$OUT/mixed_all.json"
step cascade_all 90 python3 compare_cascade.py --pretrained-shape --frozen --threads "$cores" --train-batch 4 --train-context 64 --latents 16
step mixed_2 150 python3 compare_torch.py --only mixed --models d512,small --threads 2 --json "$OUT/mixed_2.json"
step cascade_all_batch16 90 python3 compare_cascade.py --pretrained-shape --frozen --threads "$cores" --train-batch 16 --train-context 64 --latents 16
step cascade_2 120 python3 compare_cascade.py --pretrained-shape --frozen --threads 2 --train-batch 4 --train-context 64 --latents 16
# Threads pinned one per core, to tell scheduling from the kernels where scaling falls short.
OMP_PROC_BIND=close OMP_PLACES=cores step scaling_pinned 60 python3 scaling.py --tasks lm --models d128,d256 --threads 2,4,8,$cores
echo "total $((SECONDS - started)) s"
