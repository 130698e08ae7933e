// Matrix products split into blocks across the threads, each block one single-threaded product: oneDNN's sgemm
// where it is loaded and the block is large (onednn.hpp), else broadcast_gemm or Eigen.
// A product with many rows splits its rows; a short one (a decode step) splits its columns, so that each
// thread streams its own part of the weight matrix.
#pragma once
#include <algorithm>
#include <type_traits>

#include "c3/core/parallel.hpp"
#include "c3/ops/broadcast_gemm.hpp"
#include "c3/ops/onednn.hpp"
#include "c3/core/tensor.hpp"

namespace c3::ops {

// Calls block(row_begin, row_end, column_begin, column_end) for a partition of a rows x columns output.
template <typename Block>
void parallel_blocks(size_t rows, size_t columns, size_t depth, Block&& block) {
    configure_eigen();
    const size_t threads = size_t(num_threads());
    const size_t work = rows * columns * depth;
    // A few rows (a decode step) stream the weights from memory: blocks of 32 columns go to whichever thread is free,
    // since two threads streaming equal halves finish apart when the machine's memory serves them unevenly. The
    // blocks do not depend on the thread count (one thread runs them in turn), nor a block's result on the thread
    // that runs it, so a decode step gives the same bits on any number of threads.
    if (rows < 16 && columns * depth >= kParallelWork) {
        constexpr size_t kStreamColumns = 32;
        parallel_for_dynamic((columns + kStreamColumns - 1) / kStreamColumns, [&](size_t i) {
            block(0, rows, i * kStreamColumns, std::min(columns, (i + 1) * kStreamColumns));
        });
        return;
    }
    if (threads <= 1 || work < 4 * kParallelWork) {
        block(0, rows, 0, columns);
        return;
    }
    if (rows >= threads * 32) {
        // Row blocks, multiples of 16 rows (the GEMM micro-kernel height), as even as possible.
        const size_t chunk = ((rows + threads - 1) / threads + 15) / 16 * 16;
        const size_t count = (rows + chunk - 1) / chunk;
        parallel_for(count, [&](size_t i) { block(i * chunk, std::min(rows, (i + 1) * chunk), 0, columns); });
    } else {
        const size_t chunk = ((columns + threads - 1) / threads + 15) / 16 * 16;
        const size_t count = (columns + chunk - 1) / chunk;
        parallel_for(count, [&](size_t i) { block(0, rows, i * chunk, std::min(columns, (i + 1) * chunk)); });
    }
}

// The widest output given to broadcast_gemm (float, AVX-512 or AVX2), from the L2 size (gemm_max_columns: 1024
// on 1 MiB). Wider ones ran faster through Eigen's packed panels, whose B block does not grow with N.
inline size_t broadcast_gemm_max_columns() {
#if defined(C3_BROADCAST_GEMM)
    return gemm_max_columns();
#else
    return 0;
#endif
}

// C [M, N] += A * B through broadcast_gemm (arguments as there) when it takes the product: float, compiled with
// AVX-512 or AVX2, at most broadcast_gemm_max_columns() columns. Returns false otherwise, and the caller uses Eigen.
template <typename T>
bool broadcast_gemm_where_suited(T* C, size_t ldc, const T* A, size_t a_row, size_t a_column, const T* B,
                                 size_t ldb, size_t M, size_t N, size_t K) {
    if constexpr (kBroadcastGemm && std::is_same_v<T, float>) {
        if (N <= broadcast_gemm_max_columns()) {
            broadcast_gemm(C, ldc, A, a_row, a_column, B, ldb, M, N, K);
            return true;
        }
    }
    return false;
}

// y [rows, out] = x [rows, in] * w [out, in]^T
template <typename T>
void matmul_transposed(T* y, const T* x, const T* w, size_t rows, size_t in, size_t out) {
    parallel_blocks(rows, out, in, [&](size_t r0, size_t r1, size_t c0, size_t c1) {
        if (onednn_gemm_where_suited('N', 'T', r1 - r0, c1 - c0, in, x + r0 * in, in, w + c0 * in, in, T(0),
                                     y + r0 * out + c0, out))
            return;
        StridedMap<T>(y + r0 * out + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(out)).noalias() =
            ConstMatrixMap<T>(x + r0 * in, r1 - r0, in) * ConstMatrixMap<T>(w + c0 * in, c1 - c0, in).transpose();
    });
}

// y [rows, out] = x [rows, in] * wt [in, out] (+ bias [out], may be null), with the weight stored transposed
// (StepWeights): broadcast_gemm then reads it in place, as the backward products read w.
template <typename T>
void matmul_pretransposed(T* y, const T* x, const T* wt, const T* bias, size_t rows, size_t in, size_t out) {
    parallel_blocks(rows, out, in, [&](size_t r0, size_t r1, size_t c0, size_t c1) {
        StridedMap<T> Y(y + r0 * out + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(out));
        if (bias) Y.rowwise() = ConstVectorMap<T>(bias + c0, c1 - c0).transpose();
        if (onednn_gemm_where_suited('N', 'N', r1 - r0, c1 - c0, in, x + r0 * in, in, wt + c0, out, T(bias ? 1 : 0),
                                     y + r0 * out + c0, out))
            return;
        if (!bias) Y.setZero();
        if (broadcast_gemm_where_suited(y + r0 * out + c0, out, x + r0 * in, in, 1, wt + c0, out, r1 - r0, c1 - c0, in))
            return;
        Y.noalias() += ConstMatrixMap<T>(x + r0 * in, r1 - r0, in) *
                       ConstStridedMap<T>(wt + c0, in, c1 - c0, Eigen::OuterStride<>(out));
    });
}

// y [rows, in] += dy [rows, out] * w [out, in]
template <typename T>
void matmul_accumulate(T* y, const T* dy, const T* w, size_t rows, size_t in, size_t out) {
    parallel_blocks(rows, in, out, [&](size_t r0, size_t r1, size_t c0, size_t c1) {
        if (onednn_gemm_where_suited('N', 'N', r1 - r0, c1 - c0, out, dy + r0 * out, out, w + c0, in, T(1),
                                     y + r0 * in + c0, in))
            return;
        if (broadcast_gemm_where_suited(y + r0 * in + c0, in, dy + r0 * out, out, 1, w + c0, in, r1 - r0, c1 - c0, out))
            return;
        StridedMap<T>(y + r0 * in + c0, r1 - r0, c1 - c0, Eigen::OuterStride<>(in)).noalias() +=
            ConstMatrixMap<T>(dy + r0 * out, r1 - r0, out) *
            ConstStridedMap<T>(w + c0, out, c1 - c0, Eigen::OuterStride<>(in));
    });
}

// dw [out, in] += dy [rows, out]^T * x [rows, in]   (a sum over rows: split the output instead)
template <typename T>
void matmul_transposed_left_accumulate(T* dw, const T* dy, const T* x, size_t rows, size_t in, size_t out) {
    parallel_blocks(out, in, rows, [&](size_t o0, size_t o1, size_t i0, size_t i1) {
        // dy^T read in place: row stride 1, column stride out.
        if (onednn_gemm_where_suited('T', 'N', o1 - o0, i1 - i0, rows, dy + o0, out, x + i0, in, T(1),
                                     dw + o0 * in + i0, in))
            return;
        if (broadcast_gemm_where_suited(dw + o0 * in + i0, in, dy + o0, 1, out, x + i0, in, o1 - o0, i1 - i0, rows))
            return;
        StridedMap<T>(dw + o0 * in + i0, o1 - o0, i1 - i0, Eigen::OuterStride<>(in)).noalias() +=
            ConstStridedMap<T>(dy + o0, rows, o1 - o0, Eigen::OuterStride<>(out)).transpose() *
            ConstStridedMap<T>(x + i0, rows, i1 - i0, Eigen::OuterStride<>(in));
    });
}

}  // namespace c3::ops
