// IEEE half (binary16) and bfloat16 conversions on bit patterns. Widening is exact; narrowing rounds to
// nearest, ties to even, in integer arithmetic, so the result does not depend on the FPU rounding mode or on
// compiler flags. NaNs stay NaNs (quiet, with the top payload bits kept); overflow goes to infinity.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace c3 {

inline uint32_t float_bits(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

inline float float_from_bits(uint32_t bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

inline float half_to_float(uint16_t half) {
    const uint32_t sign = uint32_t(half & 0x8000u) << 16;
    const uint32_t exponent = (half >> 10) & 0x1fu;
    uint32_t mantissa = half & 0x3ffu;
    if (exponent == 0x1f) return float_from_bits(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
    if (exponent != 0) return float_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
    if (mantissa == 0) return float_from_bits(sign);  // signed zero
    // Subnormal: shift the leading one up to the implicit bit; each shift lowers the exponent by one.
    uint32_t float_exponent = 113;
    while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --float_exponent;
    }
    return float_from_bits(sign | (float_exponent << 23) | ((mantissa & 0x3ffu) << 13));
}

// Rounds value >> shift to nearest, ties to even (shift >= 1).
inline uint32_t shift_right_round_even(uint32_t value, uint32_t shift) {
    const uint32_t kept = value >> shift;
    const uint32_t remainder = value & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    return kept + ((remainder > halfway || (remainder == halfway && (kept & 1u))) ? 1u : 0u);
}

inline uint16_t float_to_half(float value) {
    const uint32_t bits = float_bits(value);
    const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));  // NaN stays quiet NaN
    if (magnitude >= 0x47800000u) return uint16_t(sign | 0x7c00u);  // >= 65536 (and inf): past the largest half
    const uint32_t exponent = magnitude >> 23;
    if (exponent >= 113) {
        // Normal half. A carry out of the mantissa moves into the exponent, which is exactly right (up to inf).
        const uint32_t rebased = ((exponent - 112) << 23) | (magnitude & 0x7fffffu);
        return uint16_t(sign | shift_right_round_even(rebased, 13));
    }
    // Subnormal half (or zero): the value in units of 2^-24 is mantissa_with_implicit_one * 2^(exponent - 126).
    const uint32_t shift = 126 - exponent;  // >= 14
    if (shift > 24) return sign;            // below half the smallest subnormal (also float zeros/subnormals)
    return uint16_t(sign | shift_right_round_even((magnitude & 0x7fffffu) | 0x800000u, shift));
}

inline float bf16_to_float(uint16_t bf16) { return float_from_bits(uint32_t(bf16) << 16); }

inline uint16_t float_to_bf16(float value) {
    const uint32_t bits = float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x0040u);  // NaN: keep it quiet and NaN
    // Carries into the exponent (and up to inf) are the correct rounding.
    return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// double -> float rounding to odd: truncate, then set the last bit if anything was dropped. Narrowing that
// result to half or bfloat16 with round-to-nearest-even gives the correctly rounded double -> 16-bit value,
// which double -> float (nearest) -> 16 bits would not (double rounding).
inline float double_to_float_round_to_odd(double value) {
    if (std::isnan(value)) return static_cast<float>(value);
    float rounded = static_cast<float>(value);
    if (std::fabs(static_cast<double>(rounded)) > std::fabs(value)) rounded = std::nextafter(rounded, 0.0f);
    if (static_cast<double>(rounded) != value) return float_from_bits(float_bits(rounded) | 1u);
    return rounded;
}

inline uint16_t double_to_half(double value) { return float_to_half(double_to_float_round_to_odd(value)); }
inline uint16_t double_to_bf16(double value) { return float_to_bf16(double_to_float_round_to_odd(value)); }

}  // namespace c3
