#!/usr/bin/env bash
# Builds the C++ tests with AddressSanitizer and UndefinedBehaviorSanitizer and runs them; any report fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DC3_SANITIZE=ON -DC3_BUILD_TESTS=ON \
      -DC3_INSTALL=OFF >/dev/null
cmake --build build/asan --target c3_tests -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ./build/asan/tests/cpp/c3_tests --gtest_brief=1
