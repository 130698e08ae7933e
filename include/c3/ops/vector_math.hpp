// exp for float written so that loops over it vectorise (no branches, no library call), accurate to about
// 2 ulp on [-87, 88]. std::exp is a scalar call per element, which made softmax, sigmoid and cross-entropy a
// tenth of a small model's training step. Doubles keep std::exp: they serve the gradient checks.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace c3::ops {

inline float exp_fast(float x) {
    // exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln 2 / 2; Cephes' minimax polynomial for exp(r).
    // Comparisons, not fmin/fmax or nearbyint: those stay library calls and stop the loops vectorising.
    // Written so that NaN lands on a finite value here (a NaN converted to an integer below would be undefined);
    // the NaN itself is returned at the end.
    const float clamped = x > -87.33654f ? (x < 88.72283f ? x : 88.72283f) : -87.33654f;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (exact for |values| < 2^22).
    const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (clamped - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    const float result = p * scale;
    return x != x ? x : (x < -87.33654f ? 0.0f : (x > 88.72283f ? INFINITY : result));
}

inline double exp_fast(double x) { return std::exp(x); }

// y[i] = exp(x[i] - shift), returns the sum (in T).
template <typename T>
T exp_shifted(T* y, const T* x, size_t count, T shift) {
    for (size_t i = 0; i < count; ++i) y[i] = exp_fast(x[i] - shift);
    T total = 0;
    for (size_t i = 0; i < count; ++i) total += y[i];
    return total;
}

}  // namespace c3::ops
