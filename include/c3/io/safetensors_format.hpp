// What the safetensors reader and writer share: the dtypes, a tensor's header entry, and the conversion of
// float dtypes to and from their little-endian bytes (rounding to nearest even where narrowing).
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "c3/core/errors.hpp"
#include "c3/core/float16.hpp"
#include "c3/core/tensor.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "c3 safetensors IO assumes a little-endian host");
#endif

namespace c3::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

inline const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F64: return "F64";
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::I64: return "I64";
        case DType::I32: return "I32";
        case DType::I16: return "I16";
        case DType::I8: return "I8";
        case DType::U8: return "U8";
        case DType::BOOL: return "BOOL";
    }
    return "?";
}

// False when the name is not one of the dtypes above.
inline bool try_dtype_from_name(const std::string& name, DType& dtype) {
    static const std::pair<const char*, DType> known[] = {
        {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I64", DType::I64},
        {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},   {"U8", DType::U8},     {"BOOL", DType::BOOL}};
    for (const auto& [known_name, known_dtype] : known) {
        if (name == known_name) {
            dtype = known_dtype;
            return true;
        }
    }
    return false;
}

inline DType dtype_from_name(const std::string& name) {
    DType dtype;
    C3_CHECK(try_dtype_from_name(name, dtype), FormatError, "unknown safetensors dtype '", name,
             "' (known: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
    return dtype;
}

inline size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::F64: case DType::I64: return 8;
        case DType::F32: case DType::I32: return 4;
        case DType::F16: case DType::BF16: case DType::I16: return 2;
        case DType::I8: case DType::U8: case DType::BOOL: return 1;
    }
    return 0;
}

inline bool is_float_dtype(DType dtype) {
    return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

// One tensor of a file: begin and end are byte offsets into the data section (after the header).
struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    size_t begin = 0, end = 0;

    size_t element_count() const { return shape_size(shape); }
    size_t byte_count() const { return end - begin; }
};

using Metadata = std::map<std::string, std::string>;

namespace detail {

constexpr size_t max_header_bytes = size_t(100) << 20;
constexpr size_t conversion_chunk = size_t(1) << 16;  // elements converted per buffer fill

inline bool multiply_checked(size_t a, size_t b, size_t& product) { return !__builtin_mul_overflow(a, b, &product); }

template <typename T>
void convert_from_raw(DType dtype, const unsigned char* raw, T* destination, size_t count) {
    switch (dtype) {
        case DType::F64:
            for (size_t i = 0; i < count; ++i) {
                double value;
                std::memcpy(&value, raw + 8 * i, 8);
                destination[i] = static_cast<T>(value);  // to float: round to nearest even
            }
            break;
        case DType::F32:
            for (size_t i = 0; i < count; ++i) {
                float value;
                std::memcpy(&value, raw + 4 * i, 4);
                destination[i] = static_cast<T>(value);
            }
            break;
        case DType::F16:
            for (size_t i = 0; i < count; ++i) {
                uint16_t bits;
                std::memcpy(&bits, raw + 2 * i, 2);
                destination[i] = static_cast<T>(half_to_float(bits));
            }
            break;
        case DType::BF16:
            for (size_t i = 0; i < count; ++i) {
                uint16_t bits;
                std::memcpy(&bits, raw + 2 * i, 2);
                destination[i] = static_cast<T>(bf16_to_float(bits));
            }
            break;
        default: throw ValueError(std::string("cannot convert dtype ") + dtype_name(dtype) + " to floating point");
    }
}

// T -> raw little-endian elements of a float dtype, rounding to nearest even where narrowing.
template <typename T>
void convert_to_raw(DType dtype, const T* source, unsigned char* raw, size_t count) {
    switch (dtype) {
        case DType::F64:
            for (size_t i = 0; i < count; ++i) {
                const double value = static_cast<double>(source[i]);
                std::memcpy(raw + 8 * i, &value, 8);
            }
            break;
        case DType::F32:
            for (size_t i = 0; i < count; ++i) {
                const float value = static_cast<float>(source[i]);
                std::memcpy(raw + 4 * i, &value, 4);
            }
            break;
        case DType::F16:
            for (size_t i = 0; i < count; ++i) {
                const uint16_t bits = std::is_same_v<T, double> ? double_to_half(double(source[i]))
                                                                : float_to_half(float(source[i]));
                std::memcpy(raw + 2 * i, &bits, 2);
            }
            break;
        case DType::BF16:
            for (size_t i = 0; i < count; ++i) {
                const uint16_t bits = std::is_same_v<T, double> ? double_to_bf16(double(source[i]))
                                                                : float_to_bf16(float(source[i]));
                std::memcpy(raw + 2 * i, &bits, 2);
            }
            break;
        default: throw ValueError(std::string("cannot convert floating point to dtype ") + dtype_name(dtype));
    }
}

}  // namespace detail

}  // namespace c3::io
