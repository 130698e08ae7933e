// Writing one safetensors file with the same bytes as the Python `safetensors` package: metadata first, tensors
// ordered by dtype width then name, data 8-byte aligned. The file goes through a temporary sibling and a rename,
// so a failed write never leaves half a file behind.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/io/files.hpp"
#include "c3/io/safetensors_format.hpp"

namespace c3::io {

// A tensor given as raw little-endian bytes of its dtype.
struct TensorToWrite {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    const void* data = nullptr;
};

// A float or double buffer to be stored (converted) in a float dtype chosen for the whole file.
template <typename T>
struct NamedTensor {
    std::string name;
    Shape shape;
    const T* data = nullptr;
};

namespace detail {

// One tensor ready to be written: its header entry and a function that streams its bytes.
struct PlannedTensor {
    std::string name;
    DType dtype;
    Shape shape;
    size_t byte_count;
    std::function<void(std::ostream&)> write;
};

// The Python package's order: dtypes from widest to narrowest (so every tensor is aligned to its element
// size), then by name.
inline int dtype_write_rank(DType dtype) {
    switch (dtype) {
        case DType::I64: return 9;
        case DType::F64: return 8;
        case DType::F32: return 7;
        case DType::I32: return 6;
        case DType::BF16: return 5;
        case DType::F16: return 4;
        case DType::I16: return 3;
        case DType::I8: return 2;
        case DType::U8: return 1;
        case DType::BOOL: return 0;
    }
    return 0;
}

inline size_t checked_byte_count(const std::string& name, const Shape& shape, DType dtype) {
    size_t count = 1;
    for (size_t extent : shape)
        C3_CHECK(multiply_checked(count, extent, count), ValueError, "tensor '", name, "': shape ",
                 shape_string(shape), " overflows");
    C3_CHECK(multiply_checked(count, dtype_size(dtype), count), ValueError, "tensor '", name, "': shape ",
             shape_string(shape), " overflows");
    return count;
}

inline PlannedTensor plan_raw(const TensorToWrite& tensor) {
    PlannedTensor planned{tensor.name, tensor.dtype, tensor.shape,
                          checked_byte_count(tensor.name, tensor.shape, tensor.dtype), {}};
    C3_CHECK(tensor.data != nullptr || planned.byte_count == 0, ValueError, "tensor '", tensor.name,
             "' has no data pointer");
    const char* data = static_cast<const char*>(tensor.data);
    const size_t bytes = planned.byte_count;
    planned.write = [data, bytes](std::ostream& out) {
        if (bytes) out.write(data, std::streamsize(bytes));
    };
    return planned;
}

template <typename T>
PlannedTensor plan_converted(const NamedTensor<T>& tensor, DType dtype) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "NamedTensor holds float or double");
    C3_CHECK(is_float_dtype(dtype), ValueError, "float buffers can be stored as F64, F32, F16 or BF16, not ",
             dtype_name(dtype));
    PlannedTensor planned{tensor.name, dtype, tensor.shape, checked_byte_count(tensor.name, tensor.shape, dtype), {}};
    C3_CHECK(tensor.data != nullptr || planned.byte_count == 0, ValueError, "tensor '", tensor.name,
             "' has no data pointer");
    const T* data = tensor.data;
    const size_t count = shape_size(tensor.shape);
    planned.write = [data, count, dtype](std::ostream& out) {
        const size_t element_bytes = dtype_size(dtype);
        std::vector<unsigned char> raw(std::min(count, conversion_chunk) * element_bytes);
        for (size_t done = 0; done < count;) {
            const size_t chunk = std::min(count - done, conversion_chunk);
            convert_to_raw(dtype, data + done, raw.data(), chunk);
            out.write(reinterpret_cast<const char*>(raw.data()), std::streamsize(chunk * element_bytes));
            done += chunk;
        }
    };
    return planned;
}

inline void write_planned(const std::string& path, std::vector<PlannedTensor> tensors, const Metadata& metadata) {
    std::map<std::string, bool> seen;
    for (const PlannedTensor& tensor : tensors) {
        C3_CHECK(tensor.name != "__metadata__", ValueError, "'__metadata__' is reserved and cannot name a tensor");
        C3_CHECK(seen.emplace(tensor.name, true).second, ValueError, "tensor name '", tensor.name,
                 "' appears twice in '", path, "'");
    }
    std::stable_sort(tensors.begin(), tensors.end(), [](const PlannedTensor& a, const PlannedTensor& b) {
        const int rank_a = dtype_write_rank(a.dtype), rank_b = dtype_write_rank(b.dtype);
        return rank_a != rank_b ? rank_a > rank_b : a.name < b.name;
    });
    // Ordered like the Python package writes it: metadata first, then tensors in data order.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json entries = nlohmann::ordered_json::object();
        for (const auto& [key, value] : metadata) entries[key] = value;
        header["__metadata__"] = entries;
    }
    size_t offset = 0;
    for (const PlannedTensor& tensor : tensors) {
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = dtype_name(tensor.dtype);
        entry["shape"] = tensor.shape;
        entry["data_offsets"] = {offset, offset + tensor.byte_count};
        header[tensor.name] = entry;
        offset += tensor.byte_count;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& error) {
        throw ValueError("cannot write '" + path + "': a tensor name or metadata string is not valid UTF-8 (" +
                         error.what() + ")");
    }
    text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
    write_atomically(path, [&](std::ostream& out) {
        unsigned char length_bytes[8];
        for (size_t i = 0; i < 8; ++i) length_bytes[i] = (uint64_t(text.size()) >> (8 * i)) & 0xffu;
        out.write(reinterpret_cast<const char*>(length_bytes), 8);
        out.write(text.data(), std::streamsize(text.size()));
        for (const PlannedTensor& tensor : tensors) tensor.write(out);
    });
}

}  // namespace detail

inline void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const Metadata& metadata = {}) {
    std::vector<detail::PlannedTensor> planned;
    for (const TensorToWrite& tensor : tensors) planned.push_back(detail::plan_raw(tensor));
    detail::write_planned(path, std::move(planned), metadata);
}

// Stores float or double buffers as dtype (F64, F32, F16 or BF16), rounding to nearest even.
template <typename T>
void write_safetensors(const std::string& path, const std::vector<NamedTensor<T>>& tensors, DType dtype,
                       const Metadata& metadata = {}) {
    std::vector<detail::PlannedTensor> planned;
    for (const NamedTensor<T>& tensor : tensors) planned.push_back(detail::plan_converted(tensor, dtype));
    detail::write_planned(path, std::move(planned), metadata);
}

}  // namespace c3::io
