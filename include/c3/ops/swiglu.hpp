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
        // Row pointers in locals: through the captured references a store to act[i] might change gate or up
        // themselves, and the loop would stay scalar.
        T* a = act + r * width;
        const T *g = gate + r * width, *u = up + r * width;
        for (size_t i = 0; i < width; ++i) a[i] = g[i] * sigmoid(g[i]) * u[i];
    }, width * 12);
}

// Accumulates dgate and dup.
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dact, const T* gate, const T* up, size_t rows, size_t width) {
    parallel_for(rows, [&](size_t r) {
        T *dg = dgate + r * width, *du = dup + r * width;
        const T *da = dact + r * width, *g = gate + r * width, *u = up + r * width;
        for (size_t i = 0; i < width; ++i) {
            const T s = sigmoid(g[i]);
            const T silu = g[i] * s;
            du[i] += da[i] * silu;
            dg[i] += da[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
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
