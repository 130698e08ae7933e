// GELU (exact, with erf), as torch.nn.GELU() uses by default; for the optional MLP projector.
#pragma once
#include <cmath>

#include "c3/core/parallel.hpp"

namespace c3::ops {

template <typename T>
void gelu_forward(T* output, const T* input, size_t count) {
    parallel_ranges(count, 4096, [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i)
            output[i] = T(0.5) * input[i] * (T(1) + std::erf(input[i] * T(0.7071067811865476)));
    }, 16);
}

// Accumulates dinput.
template <typename T>
void gelu_backward(T* dinput, const T* doutput, const T* input, size_t count) {
    parallel_ranges(count, 4096, [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) {
            const T x = input[i];
            const T cdf = T(0.5) * (T(1) + std::erf(x * T(0.7071067811865476)));
            const T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);
            dinput[i] += doutput[i] * (cdf + x * pdf);
        }
    }, 16);
}

}  // namespace c3::ops
