// RMSNorm: y = w * x / sqrt(mean(x^2) + eps), row by row. Forward saves the reciprocal RMS for backward.
#pragma once
#include <cmath>

#include "c3/core/parallel.hpp"
#include "c3/core/tensor.hpp"
#include "c3/ops/vector_math.hpp"

namespace c3::ops {

// output, input [rows, dim]; weight [dim]; rstd [rows] (saved)
template <typename T>
void rmsnorm_forward(T* output, T* rstd, const T* input, const T* weight, size_t rows, size_t dim, double eps) {
    parallel_for(rows, [&](size_t r) {
        const T* x = input + r * dim;
        T* y = output + r * dim;
        const T sum_squares = lane_dot(x, x, dim);
        const T scale = T(1) / std::sqrt(sum_squares / T(dim) + T(eps));
        for (size_t i = 0; i < dim; ++i) y[i] = weight[i] * (x[i] * scale);
        if (rstd) rstd[r] = scale;
    }, dim * 4);
}

// Accumulates dinput [rows, dim] and dweight [dim] (either may be null).
// With xhat = x * rstd: dinput = rstd * (dy*w - xhat * mean(dy*w*xhat)); dweight = sum over rows of dy*xhat.
template <typename T>
void rmsnorm_backward(T* dinput, T* dweight, const T* doutput, const T* input, const T* weight, const T* rstd,
                      size_t rows, size_t dim) {
    if (dinput)
        parallel_for(rows, [&](size_t r) {
            const T* x = input + r * dim;
            const T* dy = doutput + r * dim;
            T* dx = dinput + r * dim;
            const T s = rstd[r];
            const T dot = lane_dot(dy, weight, x, dim) * s;
            const T mean_dot = dot / T(dim);
            for (size_t i = 0; i < dim; ++i) dx[i] += s * (dy[i] * weight[i] - x[i] * s * mean_dot);
        }, dim * 4);
    if (dweight) {
        // Column sums split across threads by column block, so each thread owns its slice of dweight.
        const size_t block = 64, blocks = (dim + block - 1) / block;
        parallel_for(blocks, [&](size_t b) {
            const size_t begin = b * block, end = std::min(dim, begin + block);
            for (size_t r = 0; r < rows; ++r) {
                const T* x = input + r * dim;
                const T* dy = doutput + r * dim;
                const T s = rstd[r];
                for (size_t i = begin; i < end; ++i) dweight[i] += dy[i] * x[i] * s;
            }
        }, rows * block * 3);
    }
}

namespace reference {
template <typename T>
void rmsnorm_forward(T* output, T* rstd, const T* input, const T* weight, size_t rows, size_t dim, double eps) {
    for (size_t r = 0; r < rows; ++r) {
        double sum = 0;
        for (size_t i = 0; i < dim; ++i) sum += double(input[r * dim + i]) * input[r * dim + i];
        const double s = 1.0 / std::sqrt(sum / dim + eps);
        for (size_t i = 0; i < dim; ++i) output[r * dim + i] = T(weight[i] * input[r * dim + i] * s);
        if (rstd) rstd[r] = T(s);
    }
}
}  // namespace reference

}  // namespace c3::ops
