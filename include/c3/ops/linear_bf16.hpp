// Linear layers with bfloat16 weights and float compute: a block of weight rows is widened to float in a
// per-thread scratch buffer, then multiplied (1 to 4 rows: small_rows.hpp). Weights stay bf16 in memory (half
// the bytes, and half the memory traffic of a decode step, which reads every weight once per token).
#pragma once
#include <vector>

#include "c3/core/parallel.hpp"
#include "c3/core/tensor.hpp"
#include "c3/core/float16.hpp"
#include "c3/ops/small_rows.hpp"

namespace c3::ops {

// output [rows, out] = input [rows, in] * widen(weight [out, in])^T + bias
template <typename T>
void linear_forward_bf16(T* output, const T* input, const uint16_t* weight, const T* bias, size_t rows, size_t in,
                         size_t out) {
    if (small_rows_forward(output, input, weight, bias, rows, in, out)) return;
    configure_eigen();
    constexpr size_t block = 64;  // weight rows per block: 64 x in floats stay in L2
    const size_t blocks = (out + block - 1) / block;
    parallel_for(blocks, [&](size_t index) {
        thread_local std::vector<T> scratch;
        const size_t o0 = index * block, o1 = std::min(out, o0 + block), width = o1 - o0;
        if (scratch.size() < width * in) scratch.resize(width * in);
        const uint16_t* source = weight + o0 * in;
        for (size_t i = 0; i < width * in; ++i) scratch[i] = T(bf16_to_float(source[i]));
        StridedMap<T> y(output + o0, rows, width, Eigen::OuterStride<>(out));
        y.noalias() = ConstMatrixMap<T>(input, rows, in) * ConstMatrixMap<T>(scratch.data(), width, in).transpose();
        if (bias) y.rowwise() += ConstVectorMap<T>(bias + o0, width).transpose();
    }, rows * block * in);
}

}  // namespace c3::ops
