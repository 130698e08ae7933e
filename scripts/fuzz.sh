#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time on a copy of its seed corpus.
# Usage: bash scripts/fuzz.sh [seconds per target, default 30]. A crash is saved under build/fuzz/crashes/ and
# fails the run; keep it as tests/fuzz/regressions/<target>/<name> so that c3_tests replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DC3_BUILD_FUZZERS=ON -DC3_BUILD_TESTS=OFF -DC3_INSTALL=OFF -DC3_NATIVE=OFF >/dev/null
cmake --build build/fuzz -j "$(nproc)"
mkdir -p build/fuzz/crashes
for target in safetensors tokenizer_json bpe_encode hf_config c3_config latents; do
  work="build/fuzz/corpus-$target"
  rm -rf "$work" && mkdir -p "$work" && cp tests/fuzz/corpus/"$target"/* "$work"/
  echo "fuzz_$target: ${seconds}s"
  ./build/fuzz/tests/fuzz/fuzz_"$target" "$work" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix=build/fuzz/crashes/"$target"- -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" || true
  if ls build/fuzz/crashes/"$target"-* >/dev/null 2>&1; then echo "fuzz_$target found a crash"; exit 1; fi
done
