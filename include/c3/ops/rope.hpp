// Rotary position embedding in the Hugging Face "rotate_half" layout: within each head the first half of the
// dimensions pairs with the second half. Angles are position * theta^(-2i/head_dim).
#pragma once
#include <cmath>
#include <type_traits>

#include "c3/core/parallel.hpp"
#include "c3/core/tensor.hpp"

namespace c3::ops {

// cos, sin [rows, head_dim/2] for the given positions. In float the angle is formed in float, as
// transformers does, so that long contexts round the same way; in double everything is double.
template <typename T>
void rope_tables(T* cos_table, T* sin_table, const int64_t* positions, size_t rows, size_t head_dim, double theta) {
    const size_t half = head_dim / 2;
    std::vector<T> inverse_frequency(half);
    for (size_t i = 0; i < half; ++i)
        inverse_frequency[i] = T(1) / T(std::pow(T(theta), T(2 * i) / T(head_dim)));
    parallel_for(rows, [&](size_t r) {
        for (size_t i = 0; i < half; ++i) {
            const T angle = T(positions[r]) * inverse_frequency[i];
            cos_table[r * half + i] = std::cos(angle);
            sin_table[r * half + i] = std::sin(angle);
        }
    }, head_dim * 8);
}

// In place on x [rows, heads * head_dim] (rows `stride` elements apart).
template <typename T>
void rope_forward(T* x, const T* cos_table, const T* sin_table, size_t rows, size_t heads, size_t head_dim,
                  size_t stride) {
    const size_t half = head_dim / 2;
    parallel_for(rows, [&](size_t r) {
        const T* c = cos_table + r * half;
        const T* s = sin_table + r * half;
        for (size_t h = 0; h < heads; ++h) {
            T* v = x + r * stride + h * head_dim;
            for (size_t i = 0; i < half; ++i) {
                const T a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }, head_dim * 8);
}

// The rotation's transpose, in place on a gradient laid out like x.
template <typename T>
void rope_backward(T* dx, const T* cos_table, const T* sin_table, size_t rows, size_t heads, size_t head_dim,
                   size_t stride) {
    const size_t half = head_dim / 2;
    parallel_for(rows, [&](size_t r) {
        const T* c = cos_table + r * half;
        const T* s = sin_table + r * half;
        for (size_t h = 0; h < heads; ++h) {
            T* g = dx + r * stride + h * head_dim;
            for (size_t i = 0; i < half; ++i) {
                const T a = g[i], b = g[i + half];
                g[i] = a * c[i] + b * s[i];
                g[i + half] = b * c[i] - a * s[i];
            }
        }
    }, head_dim * 8);
}

namespace reference {
// Straight from the definition: q * cos + rotate_half(q) * sin, angles in double.
template <typename T>
void rope_forward(T* x, const int64_t* positions, size_t rows, size_t heads, size_t head_dim, double theta) {
    const size_t half = head_dim / 2;
    std::vector<double> v(head_dim);
    for (size_t r = 0; r < rows; ++r)
        for (size_t h = 0; h < heads; ++h) {
            T* p = x + (r * heads + h) * head_dim;
            for (size_t i = 0; i < head_dim; ++i) {
                const size_t k = i % half;
                const double angle = double(positions[r]) / std::pow(theta, 2.0 * k / head_dim);
                const double rotated = i < half ? -double(p[i + half]) : double(p[i - half]);
                v[i] = p[i] * std::cos(angle) + rotated * std::sin(angle);
            }
            for (size_t i = 0; i < head_dim; ++i) p[i] = T(v[i]);
        }
}
}  // namespace reference

}  // namespace c3::ops
