// Linear layers with bfloat16 weights and float compute: a block of weight rows is widened to float in a
// per-thread scratch buffer, then multiplied. Weights stay bf16 in memory (half the bytes, and half the memory
// traffic of a decode step, which reads every weight once per token).
#pragma once
#include <cstring>

#include "c3/core/parallel.hpp"
#include "c3/core/tensor.hpp"

namespace c3::ops {

inline float bf16_to_float_bits(uint16_t value) {
    const uint32_t bits = uint32_t(value) << 16;
    float result;
    std::memcpy(&result, &bits, sizeof result);
    return result;
}

namespace detail {

// Few rows (a decode step): each weight is widened once in registers and used for all rows, reading the bf16
// matrix exactly once. Sixteen lanes per row keep the loop vectorisable without reassociating sums.
template <size_t Rows, typename T>
void bf16_small_rows(T* output, const T* input, const uint16_t* weight, const T* bias, size_t in, size_t out) {
    constexpr size_t block = 32;
    parallel_for((out + block - 1) / block, [&](size_t index) {
        for (size_t o = index * block; o < std::min(out, (index + 1) * block); ++o) {
            const uint16_t* row = weight + o * in;
            float lanes[Rows][16] = {};
            size_t i = 0;
            for (; i + 16 <= in; i += 16) {
                float widened[16];
                for (size_t k = 0; k < 16; ++k) widened[k] = bf16_to_float_bits(row[i + k]);
                for (size_t r = 0; r < Rows; ++r)
                    for (size_t k = 0; k < 16; ++k) lanes[r][k] += float(input[r * in + i + k]) * widened[k];
            }
            for (size_t r = 0; r < Rows; ++r) {
                float total = 0;
                for (size_t k = 0; k < 16; ++k) total += lanes[r][k];
                for (size_t j = i; j < in; ++j) total += float(input[r * in + j]) * bf16_to_float_bits(row[j]);
                output[r * out + o] = T(total) + (bias ? bias[o] : T(0));
            }
        }
    }, block * in * Rows * 2);
}

}  // namespace detail

// output [rows, out] = input [rows, in] * widen(weight [out, in])^T + bias
template <typename T>
void linear_forward_bf16(T* output, const T* input, const uint16_t* weight, const T* bias, size_t rows, size_t in,
                         size_t out) {
    switch (rows) {
        case 1: return detail::bf16_small_rows<1>(output, input, weight, bias, in, out);
        case 2: return detail::bf16_small_rows<2>(output, input, weight, bias, in, out);
        case 3: return detail::bf16_small_rows<3>(output, input, weight, bias, in, out);
        case 4: return detail::bf16_small_rows<4>(output, input, weight, bias, in, out);
        default: break;
    }
    configure_eigen();
    constexpr size_t block = 64;  // weight rows per block: 64 x in floats stay in L2
    const size_t blocks = (out + block - 1) / block;
    parallel_for(blocks, [&](size_t index) {
        thread_local std::vector<T> scratch;
        const size_t o0 = index * block, o1 = std::min(out, o0 + block), width = o1 - o0;
        if (scratch.size() < width * in) scratch.resize(width * in);
        const uint16_t* source = weight + o0 * in;
        for (size_t i = 0; i < width * in; ++i) scratch[i] = T(bf16_to_float_bits(source[i]));
        StridedMap<T> y(output + o0, rows, width, Eigen::OuterStride<>(out));
        y.noalias() = ConstMatrixMap<T>(input, rows, in) * ConstMatrixMap<T>(scratch.data(), width, in).transpose();
        if (bias) y.rowwise() += ConstVectorMap<T>(bias + o0, width).transpose();
    }, rows * block * in);
}

// Embedding rows widened to float.
template <typename T>
void embedding_forward_bf16(T* output, const int32_t* ids, const uint16_t* table, size_t count, size_t vocab, size_t dim) {
    for (size_t i = 0; i < count; ++i)
        C3_CHECK(ids[i] >= 0 && size_t(ids[i]) < vocab, ValueError, "token id ", ids[i], " at index ", i,
                 " is outside the vocabulary of ", vocab);
    parallel_for(count, [&](size_t i) {
        const uint16_t* row = table + size_t(ids[i]) * dim;
        for (size_t d = 0; d < dim; ++d) output[i * dim + d] = T(bf16_to_float_bits(row[d]));
    }, dim);
}

}  // namespace c3::ops
