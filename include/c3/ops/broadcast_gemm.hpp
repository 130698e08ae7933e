// C [M, N] += A [M, K] * B [K, N] in float, reading both operands in place (no packing), for the products of a
// training step: dx = dy * w and dw = dy^T * x in backward, y = x * wt in forward (wt a step's transposed copy),
// where B (w, x or wt) is stored along C's columns.
//
// Why not Eigen: Eigen copies ("packs") both operands into panels on every call, and its micro-kernels run well
// below a core's FMA rate at these shapes. Small models make many small products (128 x 128 x 128 in a 128-row
// pass), where packing is a large share of the time. This kernel keeps a tile of C in registers: 12 x 32 floats in
// 24 zmm registers with AVX-512, 6 x 16 in 12 ymm registers with AVX2 and FMA. Each step over k broadcasts one
// element of A's column k per tile row and loads one row of B's tile, which is contiguous. A is read through
// (row_stride, column_stride), so dy^T needs no copy either. The depth block comes from the caches the CPU
// reports (gemm_depth_block). Figures against Eigen, per instruction set, are in docs/BENCHMARKS.md. Compiled
// with AVX-512F, or AVX2 and FMA (x86-64-v3); elsewhere matmul.hpp keeps Eigen.
#pragma once
#include <algorithm>
#include <cstddef>
#include <utility>

#include "c3/core/cpu_info.hpp"
#include "c3/core/simd.hpp"

namespace c3::ops {

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define C3_BROADCAST_GEMM 1
inline constexpr bool kBroadcastGemm = true;

namespace detail {
#if defined(__AVX512F__)
// The register tile: 12 x 32 floats of C in 24 of the 32 zmm registers, a row as two 16-lane halves.
inline constexpr size_t kGemmRows = 12, kGemmColumns = 32;
using GemmLanes = __m512;
// The lanes of a tile row that lie inside C: a mask per half.
struct GemmMask {
    __mmask16 low, high;
    explicit GemmMask(size_t width)
        : low(width >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << width) - 1)),
          high(width >= 32 ? __mmask16(0xFFFF) : width > 16 ? __mmask16((1u << (width - 16)) - 1) : __mmask16(0)) {}
};
// Masked loads and stores never touch the columns beyond N.
inline GemmLanes gemm_load(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
inline void gemm_store(float* p, __mmask16 mask, GemmLanes v) { _mm512_mask_storeu_ps(p, mask, v); }
inline GemmLanes gemm_load(const float* p) { return _mm512_loadu_ps(p); }
inline void gemm_store(float* p, GemmLanes v) { _mm512_storeu_ps(p, v); }
inline GemmLanes gemm_zero() { return _mm512_setzero_ps(); }
inline GemmLanes gemm_broadcast(const float* p) { return _mm512_set1_ps(*p); }
inline GemmLanes gemm_fma(GemmLanes a, GemmLanes b, GemmLanes c) { return _mm512_fmadd_ps(a, b, c); }
inline GemmLanes gemm_add(GemmLanes a, GemmLanes b) { return _mm512_add_ps(a, b); }
#else
// The register tile: 6 x 16 floats of C in 12 of the 16 ymm registers, a row as two 8-lane halves; the other
// four hold the two halves of B's row and the broadcast element of A.
inline constexpr size_t kGemmRows = 6, kGemmColumns = 16;
using GemmLanes = __m256;
struct GemmMask {
    __m256i low, high;
    static __m256i lanes_below(size_t count) {  // lane i set when i < count (count <= 8)
        const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), index);
    }
    explicit GemmMask(size_t width)
        : low(lanes_below(width < 8 ? width : 8)), high(lanes_below(width > 8 ? width - 8 : 0)) {}
};
// Masked loads read zeros and masked stores write nothing beyond N (vmaskmovps never faults on masked lanes).
// Full tiles use plain loads and stores: masked stores are microcoded and slow on some CPUs (AMD Zen).
inline GemmLanes gemm_load(const float* p, __m256i mask) { return _mm256_maskload_ps(p, mask); }
inline void gemm_store(float* p, __m256i mask, GemmLanes v) { _mm256_maskstore_ps(p, mask, v); }
inline GemmLanes gemm_load(const float* p) { return _mm256_loadu_ps(p); }
inline void gemm_store(float* p, GemmLanes v) { _mm256_storeu_ps(p, v); }
inline GemmLanes gemm_zero() { return _mm256_setzero_ps(); }
inline GemmLanes gemm_broadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline GemmLanes gemm_fma(GemmLanes a, GemmLanes b, GemmLanes c) { return _mm256_fmadd_ps(a, b, c); }
inline GemmLanes gemm_add(GemmLanes a, GemmLanes b) { return _mm256_add_ps(a, b); }
#endif
inline constexpr size_t kGemmHalf = kGemmColumns / 2;  // lanes in one half of a tile row
}  // namespace detail

// The depth (K) block for an output N columns wide, from the caches. The loops run: depth block, then strips of
// kGemmRows rows, then tiles of kGemmColumns columns, so a strip's A (rows x depth) is reused across the tiles
// and the block of B (depth x N) across all the strips. Depth: the B tile that streams past the A strip, depth x
// kGemmColumns floats, is one L1d (256 with AVX-512 on 32 KiB, 512 with AVX2), and the B block takes at most half
// the L2. Never under 128: each depth block loads and stores the C tile once, a few percent of its FMAs at most
// there; matmul.hpp sends outputs too wide for that to Eigen.
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

// C [Rows, the tile's columns inside the mask] += A [Rows, K] * B [K, same columns]; Full: all kGemmColumns
// columns, with plain loads and stores.
template <size_t Rows, bool Full>
inline void gemm_tile(float* C, size_t ldc, const float* A, size_t a_row, size_t a_column, const float* B, size_t ldb,
                      size_t K, const GemmMask& mask) {
    const auto load = [&](const float* p, bool high) {
        if constexpr (Full) return gemm_load(p);
        else return gemm_load(p, high ? mask.high : mask.low);
    };
    const auto store = [&](float* p, bool high, GemmLanes v) {
        if constexpr (Full) gemm_store(p, v);
        else gemm_store(p, high ? mask.high : mask.low, v);
    };
    GemmLanes left[Rows], right[Rows];
#pragma GCC unroll 12
    for (size_t i = 0; i < Rows; ++i) left[i] = right[i] = gemm_zero();
    for (size_t k = 0; k < K; ++k) {
        const GemmLanes b_low = load(B + k * ldb, false);
        const GemmLanes b_high = load(B + k * ldb + kGemmHalf, true);
        const float* a = A + k * a_column;
#pragma GCC unroll 12
        for (size_t i = 0; i < Rows; ++i) {
            const GemmLanes a_i = gemm_broadcast(a + i * a_row);
            left[i] = gemm_fma(a_i, b_low, left[i]);
            right[i] = gemm_fma(a_i, b_high, right[i]);
        }
    }
#pragma GCC unroll 12
    for (size_t i = 0; i < Rows; ++i) {
        float* c = C + i * ldc;
        store(c, false, gemm_add(load(c, false), left[i]));
        store(c + kGemmHalf, true, gemm_add(load(c + kGemmHalf, true), right[i]));
    }
}

// Rows x N of C, in tiles of kGemmColumns columns.
template <size_t Rows>
inline void gemm_rows(float* C, size_t ldc, const float* A, size_t a_row, size_t a_column, const float* B, size_t ldb,
                      size_t N, size_t K) {
    const GemmMask full(kGemmColumns);
    size_t j = 0;
    for (; j + kGemmColumns <= N; j += kGemmColumns)
        gemm_tile<Rows, true>(C + j, ldc, A, a_row, a_column, B + j, ldb, K, full);
    if (j < N) gemm_tile<Rows, false>(C + j, ldc, A, a_row, a_column, B + j, ldb, K, GemmMask(N - j));
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
