// C [M, N] += A [M, K] * B [K, N] in float, reading both operands in place (no packing), for the products of a
// training step's backward pass: dx = dy * w and dw = dy^T * x, where B (w or x) is stored along C's columns.
//
// Why not Eigen: Eigen copies ("packs") both operands into panels on every call, and its AVX-512 micro-kernel
// (48 x 4) runs at about two thirds of a core's FMA rate. Small models make many small products (128 x 128 x 128
// in a 128-row pass), where packing is a large share of the time. This kernel keeps a 12 x 32 tile of C in 24
// registers; each step over k broadcasts 12 elements of A's column k and loads 32 elements of B's row k, which
// are contiguous. A is read through (row_stride, column_stride), so dy^T needs no copy either. The depth block
// comes from the caches the CPU reports (gemm_depth_block).
// On a 2-core Zen 5 (one thread): 270-280 GFLOP/s on the training shapes against Eigen's 165-200
// (docs/BENCHMARKS.md). Only compiled with AVX-512F; elsewhere matmul.hpp keeps Eigen.
#pragma once
#include <algorithm>
#include <cstddef>
#include <utility>

#include "c3/core/cpu_info.hpp"
#include "c3/core/simd.hpp"

namespace c3::ops {

#if defined(__AVX512F__)
inline constexpr bool kBroadcastGemm = true;

namespace detail {
// The register tile: 12 x 32 floats of C in 24 of the 32 zmm registers.
inline constexpr size_t kGemmRows = 12, kGemmColumns = 32;
}  // namespace detail

// The depth (K) block for an output N columns wide, from the caches. The loops run: depth block, then strips of
// 12 rows, then tiles of 32 columns, so a strip's A (12 x depth) is reused across N / 32 tiles and the block of
// B (depth x N) across all the strips. Depth: the B tile that streams past the A strip, depth x 32 floats, is
// one L1d (256 on 32 KiB), and the B block takes at most half the L2. Never under 128: each depth block loads
// and stores the C tile once (48 vector accesses), under 2% of its 24 x 128 FMAs there; matmul.hpp sends outputs
// too wide for that to Eigen.
inline size_t gemm_depth_block(size_t N) {
    const CacheSizes& cache = cpu_info().cache;
    const size_t row_bytes = detail::kGemmColumns * sizeof(float);
    size_t depth = cache.l1d / row_bytes;
    if (N > 0) depth = std::min(depth, cache.l2 / 2 / (N * sizeof(float)));
    return std::max(size_t(128), depth / 16 * 16);
}

// The widest output whose B block keeps the smallest depth (128) in half the L2: 1024 columns on 1 MiB.
inline size_t gemm_max_columns() {
    const size_t columns = cpu_info().cache.l2 / 2 / (128 * sizeof(float));
    return std::max(detail::kGemmColumns, columns / detail::kGemmColumns * detail::kGemmColumns);
}

namespace detail {

// C [Rows, up to 32 columns selected by the masks] += A [Rows, K] * B [K, same columns].
template <size_t Rows>
inline void gemm_tile(float* C, size_t ldc, const float* A, size_t a_row, size_t a_column, const float* B, size_t ldb,
                      size_t K, __mmask16 low, __mmask16 high) {
    __m512 left[Rows], right[Rows];
#pragma GCC unroll 12
    for (size_t i = 0; i < Rows; ++i) left[i] = right[i] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; ++k) {
        // Masked loads never touch the columns beyond N.
        const __m512 b_low = _mm512_maskz_loadu_ps(low, B + k * ldb);
        const __m512 b_high = _mm512_maskz_loadu_ps(high, B + k * ldb + 16);
        const float* a = A + k * a_column;
#pragma GCC unroll 12
        for (size_t i = 0; i < Rows; ++i) {
            const __m512 a_i = _mm512_set1_ps(a[i * a_row]);
            left[i] = _mm512_fmadd_ps(a_i, b_low, left[i]);
            right[i] = _mm512_fmadd_ps(a_i, b_high, right[i]);
        }
    }
#pragma GCC unroll 12
    for (size_t i = 0; i < Rows; ++i) {
        float* c = C + i * ldc;
        _mm512_mask_storeu_ps(c, low, _mm512_add_ps(_mm512_maskz_loadu_ps(low, c), left[i]));
        _mm512_mask_storeu_ps(c + 16, high, _mm512_add_ps(_mm512_maskz_loadu_ps(high, c + 16), right[i]));
    }
}

// Rows x N of C, in tiles of 32 columns.
template <size_t Rows>
inline void gemm_rows(float* C, size_t ldc, const float* A, size_t a_row, size_t a_column, const float* B, size_t ldb,
                      size_t N, size_t K) {
    for (size_t j = 0; j < N; j += kGemmColumns) {
        const size_t width = N - j < kGemmColumns ? N - j : kGemmColumns;
        const __mmask16 low = width >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << width) - 1);
        const __mmask16 high = width >= 32 ? __mmask16(0xFFFF) : width > 16 ? __mmask16((1u << (width - 16)) - 1) : 0;
        gemm_tile<Rows>(C + j, ldc, A, a_row, a_column, B + j, ldb, K, low, high);
    }
}

template <size_t... Rows>
inline void gemm_row_tail(size_t rows, float* C, size_t ldc, const float* A, size_t a_row, size_t a_column,
                          const float* B, size_t ldb, size_t N, size_t K, std::index_sequence<Rows...>) {
    // Calls gemm_rows<rows>: the tile height must be a compile-time constant to keep the tile in registers.
    ((rows == Rows + 1 ? gemm_rows<Rows + 1>(C, ldc, A, a_row, a_column, B, ldb, N, K) : void()), ...);
}
}  // namespace detail

// C [M, N] (row stride ldc) += A * B, where A(i, k) = A[i * a_row + k * a_column] and B(k, j) = B[k * ldb + j].
// Single-threaded; matmul.hpp splits products across threads.
inline void broadcast_gemm(float* C, size_t ldc, const float* A, size_t a_row, size_t a_column, const float* B,
                           size_t ldb, size_t M, size_t N, size_t K) {
    using namespace detail;
    const size_t depth_block = gemm_depth_block(N);
    for (size_t k0 = 0; k0 < K; k0 += depth_block) {
        const size_t depth = K - k0 < depth_block ? K - k0 : depth_block;
        const float* a_block = A + k0 * a_column;
        const float* b_block = B + k0 * ldb;
        size_t i = 0;
        for (; i + kGemmRows <= M; i += kGemmRows)
            gemm_rows<kGemmRows>(C + i * ldc, ldc, a_block + i * a_row, a_row, a_column, b_block, ldb, N, depth);
        if (i < M)
            gemm_row_tail(M - i, C + i * ldc, ldc, a_block + i * a_row, a_row, a_column, b_block, ldb, N, depth,
                          std::make_index_sequence<kGemmRows - 1>());
    }
}
#else
inline constexpr bool kBroadcastGemm = false;
#endif

namespace reference {
// The same product in double, one element at a time: the oracle for broadcast_gemm.
template <typename T>
void broadcast_gemm(T* C, size_t ldc, const T* A, size_t a_row, size_t a_column, const T* B, size_t ldb, size_t M,
                    size_t N, size_t K) {
    for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < N; ++j) {
            double sum = 0;
            for (size_t k = 0; k < K; ++k) sum += double(A[i * a_row + k * a_column]) * double(B[k * ldb + j]);
            C[i * ldc + j] = T(double(C[i * ldc + j]) + sum);
        }
}
}  // namespace reference

}  // namespace c3::ops
