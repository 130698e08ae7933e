// Eigen and the x86 intrinsics, included in one place. GCC 12's intrinsics headers build "undefined" registers
// by initialising a variable with itself (avxintrin.h: __m256d __Y = __Y), and wherever they are inlined, in
// Eigen's kernels or in c3's, GCC reports -Wuninitialized or -Wmaybe-uninitialized at those lines: thousands of
// false warnings per build. The pragmas below cover only the lines of these third-party headers, so the same
// warning from c3's own code still shows (and fails the tests' build, which uses -Werror). Every c3 header
// includes Eigen and <immintrin.h> through this one, so this is where they are first included.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <Eigen/Core>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
