// exp for float written so that loops over it vectorise (no branches, no library call), accurate to about
// 2 ulp on [-87, 88]. std::exp is a scalar call per element, which made softmax, sigmoid and cross-entropy a
// tenth of a small model's training step. Doubles keep std::exp: they serve the gradient checks. On AVX2 the
// loops vectorise only under -fno-trapping-math (this project's builds; it changes no result): without it GCC
// may not evaluate a select's unused side, and only AVX-512's masked instructions get around that.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "c3/core/simd.hpp"

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

// Reductions in kLanes independent partial results (an Eigen fixed-size array: one or two vector registers).
// Without fast-math a plain `total += x[i]` loop must keep its order of additions, so it runs as one chain of
// dependent scalar adds, 4 cycles each, and GCC does not vectorise a hand-written array of partials either.
// The order of operations is fixed by the count alone, so results are reproducible and do not depend on the
// data's alignment (Eigen's own reductions over a Map start at the first aligned element).
constexpr size_t kLanes = 16;
template <typename T>
using LaneArray = Eigen::Array<T, int(kLanes), 1>;

// kLanes elements at x, or the count < kLanes that remain, padded with fill.
template <typename T>
LaneArray<T> load_lanes(const T* x, size_t count, T fill) {
    if (count >= kLanes) return Eigen::Map<const LaneArray<T>>(x);
    LaneArray<T> lanes = LaneArray<T>::Constant(fill);
    for (size_t j = 0; j < count; ++j) lanes[Eigen::Index(j)] = x[j];
    return lanes;
}

// sum of x[0, count)
template <typename T>
T lane_sum(const T* x, size_t count) {
    LaneArray<T> total = LaneArray<T>::Zero();
    for (size_t i = 0; i < count; i += kLanes) total += load_lanes(x + i, count - i, T(0));
    return total.sum();
}

// sum of a[i] * b[i]
template <typename T>
T lane_dot(const T* a, const T* b, size_t count) {
    LaneArray<T> total = LaneArray<T>::Zero();
    for (size_t i = 0; i < count; i += kLanes)
        total += load_lanes(a + i, count - i, T(0)) * load_lanes(b + i, count - i, T(0));
    return total.sum();
}

// sum of a[i] * b[i] * c[i]
template <typename T>
T lane_dot(const T* a, const T* b, const T* c, size_t count) {
    LaneArray<T> total = LaneArray<T>::Zero();
    for (size_t i = 0; i < count; i += kLanes)
        total += load_lanes(a + i, count - i, T(0)) * load_lanes(b + i, count - i, T(0)) *
                 load_lanes(c + i, count - i, T(0));
    return total.sum();
}

// sum of x[i]^2 in double (gradient norms of float buffers)
template <typename T>
double lane_sum_of_squares(const T* x, size_t count) {
    LaneArray<double> total = LaneArray<double>::Zero();
    for (size_t i = 0; i < count; i += kLanes) total += load_lanes(x + i, count - i, T(0)).template cast<double>().square();
    return total.sum();
}

// max of x[0, count) (-infinity when empty)
template <typename T>
T lane_max(const T* x, size_t count) {
    const T lowest = -std::numeric_limits<T>::infinity();
    LaneArray<T> best = LaneArray<T>::Constant(lowest);
    for (size_t i = 0; i < count; i += kLanes) best = best.max(load_lanes(x + i, count - i, lowest));
    return best.maxCoeff();
}

#if defined(__AVX512F__)
// float on AVX-512: the tail is one masked load (no copy to a padded buffer, whose scalar stores a vector load
// cannot forward from), and the horizontal step is the intrinsics' fixed tree.
namespace detail {
inline __mmask16 lane_mask(size_t count) { return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u); }
inline __m512 load_lanes(const float* x, size_t count) { return _mm512_maskz_loadu_ps(lane_mask(count), x); }
}  // namespace detail

inline float lane_sum(const float* x, size_t count) {
    __m512 total = _mm512_setzero_ps();
    for (size_t i = 0; i < count; i += 16) total = _mm512_add_ps(total, detail::load_lanes(x + i, count - i));
    return _mm512_reduce_add_ps(total);
}
inline float lane_dot(const float* a, const float* b, size_t count) {
    __m512 total = _mm512_setzero_ps();
    for (size_t i = 0; i < count; i += 16)
        total = _mm512_fmadd_ps(detail::load_lanes(a + i, count - i), detail::load_lanes(b + i, count - i), total);
    return _mm512_reduce_add_ps(total);
}
inline float lane_dot(const float* a, const float* b, const float* c, size_t count) {
    __m512 total = _mm512_setzero_ps();
    for (size_t i = 0; i < count; i += 16)
        total = _mm512_fmadd_ps(_mm512_mul_ps(detail::load_lanes(a + i, count - i), detail::load_lanes(b + i, count - i)),
                                detail::load_lanes(c + i, count - i), total);
    return _mm512_reduce_add_ps(total);
}
inline double lane_sum_of_squares(const float* x, size_t count) {
    __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
    for (size_t i = 0; i < count; i += 16) {
        const __m512 lanes = detail::load_lanes(x + i, count - i);
        const __m512d first = _mm512_cvtps_pd(_mm512_castps512_ps256(lanes));
        const __m512d second = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(lanes), 1)));
        low = _mm512_fmadd_pd(first, first, low);
        high = _mm512_fmadd_pd(second, second, high);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(low, high));
}
inline float lane_max(const float* x, size_t count) {
    const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __m512 best = lowest;
    for (size_t i = 0; i < count; i += 16)
        best = _mm512_max_ps(best, _mm512_mask_loadu_ps(lowest, detail::lane_mask(count - i), x + i));
    return _mm512_reduce_max_ps(best);
}
#endif

// sum of exp(x[i] - shift), without storing the exponentials
template <typename T>
T exp_shifted_sum(const T* x, size_t count, T shift) {
    LaneArray<T> total = LaneArray<T>::Zero();
    for (size_t i = 0; i < count; i += kLanes) {
        LaneArray<T> lanes = load_lanes(x + i, count - i, -std::numeric_limits<T>::infinity());  // exp(-inf) = 0
        for (size_t j = 0; j < kLanes; ++j) lanes[Eigen::Index(j)] = exp_fast(lanes[Eigen::Index(j)] - shift);
        total += lanes;
    }
    return total.sum();
}

// y[i] = exp(x[i] - shift), returns the sum (in T).
template <typename T>
T exp_shifted(T* y, const T* x, size_t count, T shift) {
    for (size_t i = 0; i < count; ++i) y[i] = exp_fast(x[i] - shift);
    return lane_sum(y, count);
}

}  // namespace c3::ops
