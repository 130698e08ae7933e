// C [M, N] += A [M, K] * B [K, N] in float, reading both operands in place (no packing), for the products of a
// training step's backward pass: dx = dy * w and dw = dy^T * x, where B (w or x) is stored along C's columns.
//
// Why not Eigen: Eigen copies ("packs") both operands into panels on every call, and its AVX-512 micro-kernel
// (48 x 4) runs at about two thirds of a core's FMA rate. Small models make many small products (128 x 128 x 128
// in a 128-row pass), where packing is a large share of the time. This kernel keeps a 12 x 32 tile of C in 24
// registers; each step over k broadcasts 12 elements of A's column k and loads 32 elements of B's row k, which
// are contiguous. A is read through (row_stride, column_stride), so dy^T needs no copy either. Blocking over K
// (256) keeps a 256 x 32 panel of B in L1, and over M (120 rows) keeps A's block in L2.
// On a 2-core Zen 5 (one thread): 270-280 GFLOP/s on the training shapes against Eigen's 165-200
// (docs/BENCHMARKS.md). Only compiled with AVX-512F; elsewhere matmul.hpp keeps Eigen.
#pragma once
#include <cstddef>
#include <utility>

#include "c3/core/simd.hpp"

namespace c3::ops {

#if defined(__AVX512F__)
inline constexpr bool kBroadcastGemm = true;

namespace detail {
inline constexpr size_t kGemmRows = 12, kGemmColumns = 32, kGemmDepthBlock = 256, kGemmRowBlock = 120;

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
    for (size_t k0 = 0; k0 < K; k0 += kGemmDepthBlock) {
        const size_t depth = K - k0 < kGemmDepthBlock ? K - k0 : kGemmDepthBlock;
        const float* a_block = A + k0 * a_column;
        const float* b_block = B + k0 * ldb;
        for (size_t i0 = 0; i0 < M; i0 += kGemmRowBlock) {
            const size_t i1 = M - i0 < kGemmRowBlock ? M : i0 + kGemmRowBlock;
            size_t i = i0;
            for (; i + kGemmRows <= i1; i += kGemmRows)
                gemm_rows<kGemmRows>(C + i * ldc, ldc, a_block + i * a_row, a_row, a_column, b_block, ldb, N, depth);
            if (i < i1)
                gemm_row_tail(i1 - i, C + i * ldc, ldc, a_block + i * a_row, a_row, a_column, b_block, ldb, N, depth,
                              std::make_index_sequence<kGemmRows - 1>());
        }
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
