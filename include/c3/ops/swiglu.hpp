// SwiGLU: act = silu(gate) * up, elementwise; silu(g) = g * sigmoid(g).
#pragma once
#include <cmath>

#include "c3/core/parallel.hpp"
#include "c3/ops/vector_math.hpp"

namespace c3::ops {

template <typename T>
inline T sigmoid(T x) {
    return T(1) / (T(1) + exp_fast(-x));
}

// act, gate, up [rows, width]
template <typename T>
void swiglu_forward(T* act, const T* gate, const T* up, size_t rows, size_t width) {
    parallel_for(rows, [&](size_t r) {
        for (size_t i = r * width; i < (r + 1) * width; ++i) act[i] = gate[i] * sigmoid(gate[i]) * up[i];
    }, width * 12);
}

// Accumulates dgate and dup.
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dact, const T* gate, const T* up, size_t rows, size_t width) {
    parallel_for(rows, [&](size_t r) {
        for (size_t i = r * width; i < (r + 1) * width; ++i) {
            const T s = sigmoid(gate[i]);
            const T silu = gate[i] * s;
            dup[i] += dact[i] * silu;
            dgate[i] += dact[i] * up[i] * s * (T(1) + gate[i] * (T(1) - s));
        }
    }, width * 12);
}

namespace reference {
template <typename T>
void swiglu_forward(T* act, const T* gate, const T* up, size_t count) {
    for (size_t i = 0; i < count; ++i) act[i] = T(double(gate[i]) / (1.0 + std::exp(-double(gate[i]))) * up[i]);
}
}  // namespace reference

}  // namespace c3::ops
