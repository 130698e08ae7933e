// Linear layer, y = x W^T + b, with W stored [out, in] as in PyTorch and Hugging Face checkpoints.
#pragma once
#include "c3/ops/matmul.hpp"

namespace c3::ops {

// output [rows, out] = input [rows, in] * weight[out, in]^T + bias[out] (bias may be null)
template <typename T>
void linear_forward(T* output, const T* input, const T* weight, const T* bias, size_t rows, size_t in, size_t out) {
    matmul_transposed(output, input, weight, rows, in, out);
    if (bias) MatrixMap<T>(output, rows, out).rowwise() += ConstVectorMap<T>(bias, out).transpose();
}

// Accumulates: dinput [rows, in] += dout * W; dweight [out, in] += dout^T * input; dbias [out] += column sums.
// Any of dinput, dweight, dbias may be null to skip that work (frozen weights, or no gradient wanted upstream).
template <typename T>
void linear_backward(T* dinput, T* dweight, T* dbias, const T* doutput, const T* input, const T* weight, size_t rows,
                     size_t in, size_t out) {
    if (dinput) matmul_accumulate(dinput, doutput, weight, rows, in, out);
    if (dweight) matmul_transposed_left_accumulate(dweight, doutput, input, rows, in, out);
    if (dbias)  // a plain loop: the same order of additions whatever the buffers' alignment
        for (size_t r = 0; r < rows; ++r)
            for (size_t o = 0; o < out; ++o) dbias[o] += doutput[r * out + o];
}

namespace reference {
template <typename T>
void linear_forward(T* output, const T* input, const T* weight, const T* bias, size_t rows, size_t in, size_t out) {
    for (size_t r = 0; r < rows; ++r)
        for (size_t o = 0; o < out; ++o) {
            double sum = bias ? bias[o] : 0.0;
            for (size_t i = 0; i < in; ++i) sum += double(input[r * in + i]) * double(weight[o * in + i]);
            output[r * out + o] = T(sum);
        }
}
template <typename T>
void linear_backward(T* dinput, T* dweight, T* dbias, const T* doutput, const T* input, const T* weight, size_t rows,
                     size_t in, size_t out) {
    for (size_t r = 0; r < rows; ++r)
        for (size_t o = 0; o < out; ++o) {
            const T g = doutput[r * out + o];
            if (dbias) dbias[o] += g;
            for (size_t i = 0; i < in; ++i) {
                if (dinput) dinput[r * in + i] += g * weight[o * in + i];
                if (dweight) dweight[o * in + i] += g * input[r * in + i];
            }
        }
}
}  // namespace reference

}  // namespace c3::ops
