// Products with few rows (a decode step: 1 to 4 rows) against bf16 (or float) weights. Memory-bound: each
// thread streams its own contiguous range of weight rows exactly once, one row after the next. Each weight is
// widened once in registers and used for every input row; sixteen lanes per row keep the loop vectorisable
// without reassociating sums. (Float weights use Eigen's GEMV, which measured the same on SmolLM2 decode.)
#pragma once
#include <algorithm>
#include <cstdint>

#include "c3/core/parallel.hpp"
#include "c3/core/float16.hpp"

namespace c3::ops {

namespace detail {

template <typename T>
T widen(T value) { return value; }
inline float widen(uint16_t bf16) { return bf16_to_float(bf16); }

// output [Rows, out] = input [Rows, in] * weight [out, in]^T + bias (bias may be null); W is T or bf16 bits.
template <size_t Rows, typename T, typename W>
void small_rows_product(T* output, const T* input, const W* weight, const T* bias, size_t in, size_t out) {
    using Accumulator = decltype(widen(W()) * T());
    constexpr size_t block = 32;
    parallel_for((out + block - 1) / block, [&](size_t index) {
        for (size_t o = index * block; o < std::min(out, (index + 1) * block); ++o) {
            const W* row = weight + o * in;
            Accumulator lanes[Rows][16] = {};
            size_t i = 0;
            for (; i + 16 <= in; i += 16) {
                Accumulator widened[16];
                for (size_t k = 0; k < 16; ++k) widened[k] = widen(row[i + k]);
                for (size_t r = 0; r < Rows; ++r)
                    for (size_t k = 0; k < 16; ++k) lanes[r][k] += Accumulator(input[r * in + i + k]) * widened[k];
            }
            for (size_t r = 0; r < Rows; ++r) {
                Accumulator total = 0;
                for (size_t k = 0; k < 16; ++k) total += lanes[r][k];
                for (size_t j = i; j < in; ++j) total += Accumulator(input[r * in + j]) * widen(row[j]);
                output[r * out + o] = T(total) + (bias ? bias[o] : T(0));
            }
        }
    }, block * in * Rows * 2);
}

}  // namespace detail

// Dispatches 1 to 4 rows to the kernel above; returns false for more rows (the caller uses a GEMM).
template <typename T, typename W>
bool small_rows_forward(T* output, const T* input, const W* weight, const T* bias, size_t rows, size_t in, size_t out) {
    switch (rows) {
        case 1: detail::small_rows_product<1>(output, input, weight, bias, in, out); return true;
        case 2: detail::small_rows_product<2>(output, input, weight, bias, in, out); return true;
        case 3: detail::small_rows_product<3>(output, input, weight, bias, in, out); return true;
        case 4: detail::small_rows_product<4>(output, input, weight, bias, in, out); return true;
        default: return false;
    }
}

}  // namespace c3::ops
