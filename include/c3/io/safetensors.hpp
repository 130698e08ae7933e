// safetensors files: an 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
// The whole header is validated when a file is opened, before anything proportional to a size the file claims
// is allocated, so a corrupt or hostile file ends in a FormatError (or an IOError when it cannot be read), never
// in a crash or a huge allocation. Tensor data is read on demand with std::ifstream and converted on the way.
// Writing produces the same bytes as the Python `safetensors` package and goes through a temporary file and a
// rename, so a failed write never leaves half a file behind.
#pragma once
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "c3/core/errors.hpp"
#include "c3/core/json.hpp"
#include "c3/core/tensor.hpp"
#include "c3/core/float16.hpp"

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

// A JSON integer >= 0 that fits size_t; false for negative numbers, floats and anything else.
inline bool json_to_size(const nlohmann::json& value, size_t& out) {
    if (value.is_number_unsigned()) {
        const uint64_t number = value.get<uint64_t>();
        if (number > uint64_t(SIZE_MAX)) return false;
        out = size_t(number);
        return true;
    }
    if (value.is_number_integer()) {
        const int64_t number = value.get<int64_t>();
        if (number < 0) return false;
        out = size_t(number);
        return true;
    }
    return false;
}

inline std::ifstream open_for_reading(const std::string& path) {
    std::error_code error;
    C3_CHECK(!std::filesystem::is_directory(path, error), IOError, "cannot open '", path,
             "' for reading: it is a directory");
    std::ifstream stream(path, std::ios::binary);
    C3_CHECK(stream.is_open(), IOError, "cannot open '", path, "' for reading: ", std::strerror(errno));
    return stream;
}

// Reads exactly `count` bytes at `offset`.
inline void read_exactly(std::ifstream& stream, const std::string& path, size_t offset, void* destination,
                         size_t count) {
    if (count == 0) return;
    stream.clear();
    stream.seekg(std::streamoff(offset));
    stream.read(static_cast<char*>(destination), std::streamsize(count));
    C3_CHECK(stream && size_t(stream.gcount()) == count, IOError, "cannot read ", count, " bytes at offset ", offset,
             " of '", path, "' (the file is shorter or was changed since it was opened)");
}

inline size_t file_size(std::ifstream& stream, const std::string& path) {
    stream.seekg(0, std::ios::end);
    const std::streamoff size = stream.tellg();
    C3_CHECK(stream && size >= 0, IOError, "cannot determine the size of '", path, "'");
    return size_t(size);
}

// Raw little-endian elements of a float dtype -> T.
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

class SafetensorsFile {
public:
    static SafetensorsFile open(const std::string& path) {
        SafetensorsFile file;
        file.path_ = path;
        const std::string where = "safetensors file '" + path + "': ";
        std::ifstream stream = detail::open_for_reading(path);
        const size_t size = detail::file_size(stream, path);
        C3_CHECK(size >= 8, FormatError, where, "the file is ", size, " bytes, too short for the 8-byte header length");

        unsigned char length_bytes[8];
        detail::read_exactly(stream, path, 0, length_bytes, 8);
        uint64_t header_length = 0;
        for (size_t i = 0; i < 8; ++i) header_length |= uint64_t(length_bytes[i]) << (8 * i);
        C3_CHECK(header_length <= detail::max_header_bytes, FormatError, where, "header length ", header_length,
                 " bytes is above the limit of ", detail::max_header_bytes, " bytes");
        C3_CHECK(header_length <= size - 8, FormatError, where, "header length ", header_length,
                 " bytes runs past the end of the ", size, "-byte file");
        C3_CHECK(header_length >= 2, FormatError, where, "header length ", header_length, " is too short for JSON");

        std::string header(size_t(header_length), '\0');
        detail::read_exactly(stream, path, 8, header.data(), header.size());
        const nlohmann::json json = parse_json_text(header, where + "header");
        C3_CHECK(json.is_object(), FormatError, where, "header must be a JSON object, got ", json.type_name());

        file.data_offset_ = 8 + size_t(header_length);
        file.data_size_ = size - file.data_offset_;
        for (const auto& [name, entry] : json.items()) {
            if (name == "__metadata__") {
                file.parse_metadata(entry, where);
                continue;
            }
            file.tensors_.push_back(parse_entry(name, entry, file.data_size_, where));
        }
        file.check_no_overlap(where);
        for (size_t i = 0; i < file.tensors_.size(); ++i) file.index_[file.tensors_[i].name] = i;
        return file;
    }

    const std::string& path() const { return path_; }
    // Sorted by name.
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    bool contains(const std::string& name) const { return index_.count(name) != 0; }
    const TensorInfo& info(const std::string& name) const {
        const auto found = index_.find(name);
        C3_CHECK(found != index_.end(), FormatError, "safetensors file '", path_, "' has no tensor '", name, "'");
        return tensors_[found->second];
    }
    const Metadata& metadata() const { return metadata_; }
    // Byte offset of the data section in the file.
    size_t data_offset() const { return data_offset_; }

    // Converts a float tensor (F64, F32, F16, BF16) to T; count must be its element count.
    template <typename T>
    void read_into(const std::string& name, T* destination, size_t count) const {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "read_into converts to float or double");
        const TensorInfo& tensor = info(name);
        C3_CHECK(count == tensor.element_count(), ShapeError, "tensor '", name, "' in '", path_, "' has ",
                 tensor.element_count(), " elements (shape ", shape_string(tensor.shape), "), but the destination holds ",
                 count);
        C3_CHECK(is_float_dtype(tensor.dtype), ValueError, "tensor '", name, "' in '", path_, "' has dtype ",
                 dtype_name(tensor.dtype), "; only F64, F32, F16 and BF16 convert to floating point (use read_raw)");
        if (count == 0) return;
        std::ifstream stream = detail::open_for_reading(path_);
        const size_t element_bytes = dtype_size(tensor.dtype);
        if (element_bytes == sizeof(T) && (tensor.dtype == DType::F32 || tensor.dtype == DType::F64)) {
            detail::read_exactly(stream, path_, data_offset_ + tensor.begin, destination, tensor.byte_count());
            return;
        }
        std::vector<unsigned char> raw(std::min(count, detail::conversion_chunk) * element_bytes);
        for (size_t done = 0; done < count;) {
            const size_t chunk = std::min(count - done, detail::conversion_chunk);
            detail::read_exactly(stream, path_, data_offset_ + tensor.begin + done * element_bytes, raw.data(),
                                 chunk * element_bytes);
            detail::convert_from_raw(tensor.dtype, raw.data(), destination + done, chunk);
            done += chunk;
        }
    }

    template <typename T>
    std::vector<T> read(const std::string& name) const {
        std::vector<T> values(info(name).element_count());
        read_into(name, values.data(), values.size());
        return values;
    }

    // The tensor's bytes as stored (little-endian, its own dtype); byte_count must match.
    void read_raw_into(const std::string& name, void* destination, size_t byte_count) const {
        const TensorInfo& tensor = info(name);
        C3_CHECK(byte_count == tensor.byte_count(), ShapeError, "tensor '", name, "' in '", path_, "' has ",
                 tensor.byte_count(), " bytes, but the destination holds ", byte_count);
        std::ifstream stream = detail::open_for_reading(path_);
        detail::read_exactly(stream, path_, data_offset_ + tensor.begin, destination, byte_count);
    }

    std::vector<unsigned char> read_raw(const std::string& name) const {
        std::vector<unsigned char> bytes(info(name).byte_count());
        read_raw_into(name, bytes.data(), bytes.size());
        return bytes;
    }

private:
    std::string path_;
    size_t data_offset_ = 0;
    size_t data_size_ = 0;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> index_;
    Metadata metadata_;

    void parse_metadata(const nlohmann::json& entry, const std::string& where) {
        if (entry.is_null()) return;
        C3_CHECK(entry.is_object(), FormatError, where, "__metadata__ must be an object of strings, got ",
                 entry.type_name());
        for (const auto& [key, value] : entry.items()) {
            C3_CHECK(value.is_string(), FormatError, where, "__metadata__ value for '", key, "' must be a string, got ",
                     value.type_name());
            metadata_[key] = value.get<std::string>();
        }
    }

    static TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry, size_t data_size,
                                  const std::string& where) {
        const std::string tensor = where + "tensor '" + name + "': ";
        C3_CHECK(entry.is_object(), FormatError, tensor, "entry must be an object, got ", entry.type_name());
        TensorInfo info;
        info.name = name;

        const auto dtype = entry.find("dtype");
        C3_CHECK(dtype != entry.end() && dtype->is_string(), FormatError, tensor, "missing or non-string 'dtype'");
        C3_CHECK(try_dtype_from_name(dtype->get<std::string>(), info.dtype), FormatError, tensor, "unknown dtype '",
                 dtype->get<std::string>(), "'");

        const auto shape = entry.find("shape");
        C3_CHECK(shape != entry.end() && shape->is_array(), FormatError, tensor, "missing or non-array 'shape'");
        size_t element_count = 1;
        for (const auto& extent_json : *shape) {
            size_t extent = 0;
            C3_CHECK(detail::json_to_size(extent_json, extent), FormatError, tensor,
                     "shape entries must be non-negative integers, got ", extent_json.dump());
            info.shape.push_back(extent);
            C3_CHECK(detail::multiply_checked(element_count, extent, element_count), FormatError, tensor, "shape ",
                     shape->dump(), " overflows the element count");
        }
        size_t byte_count = 0;
        C3_CHECK(detail::multiply_checked(element_count, dtype_size(info.dtype), byte_count), FormatError, tensor,
                 "shape ", shape->dump(), " overflows the byte count");

        const auto offsets = entry.find("data_offsets");
        C3_CHECK(offsets != entry.end() && offsets->is_array() && offsets->size() == 2, FormatError, tensor,
                 "'data_offsets' must be an array [begin, end]");
        C3_CHECK(detail::json_to_size((*offsets)[0], info.begin) && detail::json_to_size((*offsets)[1], info.end),
                 FormatError, tensor, "data_offsets must be non-negative integers, got ", offsets->dump());
        C3_CHECK(info.begin <= info.end, FormatError, tensor, "data_offsets ", offsets->dump(), " has begin > end");
        C3_CHECK(info.end <= data_size, FormatError, tensor, "data_offsets ", offsets->dump(),
                 " run past the end of the ", data_size, "-byte data section");
        C3_CHECK(info.end - info.begin == byte_count, FormatError, tensor, "data_offsets ", offsets->dump(), " span ",
                 info.end - info.begin, " bytes, but shape ", shape->dump(), " of ", dtype_name(info.dtype), " needs ",
                 byte_count);
        return info;
    }

    void check_no_overlap(const std::string& where) const {
        std::vector<const TensorInfo*> by_offset;
        for (const TensorInfo& tensor : tensors_) by_offset.push_back(&tensor);
        std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
            return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
        });
        for (size_t i = 1; i < by_offset.size(); ++i)
            C3_CHECK(by_offset[i]->begin >= by_offset[i - 1]->end, FormatError, where, "tensors '",
                     by_offset[i - 1]->name, "' [", by_offset[i - 1]->begin, ", ", by_offset[i - 1]->end, ") and '",
                     by_offset[i]->name, "' [", by_offset[i]->begin, ", ", by_offset[i]->end, ") overlap");
    }
};

// ---------------------------------------------------------------------------------------------------------------
// Writing.

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

// A name for a temporary sibling of `path` that no other writer uses at the same time: process id, a
// per-process counter and a random draw (threads of one process and processes sharing a directory never
// collide, so concurrent writers of one path never mix their bytes).
inline std::string unique_sibling(const std::string& path, const char* kind) {
    static std::atomic<uint64_t> counter{0};
    static const uint64_t salt = std::random_device{}();
    char suffix[96];
    std::snprintf(suffix, sizeof suffix, ".%s-%ld-%llu-%llx", kind, long(::getpid()),
                  static_cast<unsigned long long>(counter.fetch_add(1)), static_cast<unsigned long long>(salt));
    return path + suffix;
}

// Writes `contents` to a uniquely named temporary file next to path, then renames it over path: readers see
// the old file or the new one, never a mixture or half a file.
inline void write_atomically(const std::string& path, const std::function<void(std::ostream&)>& contents) {
    const std::string temporary = unique_sibling(path, "tmp");
    try {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        C3_CHECK(out.is_open(), IOError, "cannot open '", temporary, "' for writing: ", std::strerror(errno));
        contents(out);
        out.flush();
        C3_CHECK(out.good(), IOError, "cannot write '", temporary, "' (disk full?)");
        out.close();
        C3_CHECK(!out.fail(), IOError, "cannot close '", temporary, "'");
        C3_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, IOError, "cannot rename '", temporary, "' to '",
                 path, "': ", std::strerror(errno));
    } catch (...) {
        std::remove(temporary.c_str());
        throw;
    }
}

// Weight files: when a save replaces a directory, the old ones are not carried over (a stale index or shard
// would describe other tensors).
inline bool is_weights_file(const std::string& name) {
    return name == "model.safetensors" || name == "model.safetensors.index.json" ||
           (name.rfind("model-", 0) == 0 && name.find("-of-") != std::string::npos &&
            name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0);
}

// Hard-links (or, across file systems, copies) `from` into `to`, recursively.
inline void link_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
    namespace fs = std::filesystem;
    if (fs::is_directory(from) && !fs::is_symlink(from)) {
        fs::create_directory(to);
        for (const auto& entry : fs::directory_iterator(from)) link_tree(entry.path(), to / entry.path().filename());
        return;
    }
    if (fs::is_symlink(from)) {
        fs::copy_symlink(from, to);
        return;
    }
    std::error_code error;
    fs::create_hard_link(from, to, error);
    if (error) fs::copy_file(from, to);
}

// Writes a multi-file checkpoint as one unit: `fill` writes every file into a fresh temporary sibling directory,
// the entries of an existing `directory` that the save does not produce (tokenizer.json, a README, ...) are
// linked in beside them, and the new directory then takes the old one's place by rename. A save that fails at
// any point leaves the old directory as it was, loadable; readers never see a mixture of old and new files.
inline void write_directory_atomically(const std::string& directory,
                                       const std::function<void(const std::string&)>& fill) {
    namespace fs = std::filesystem;
    std::string target = directory;
    while (target.size() > 1 && (target.back() == '/' || target.back() == '\\')) target.pop_back();
    std::error_code error;
    const bool replacing = fs::exists(target, error);
    C3_CHECK(!replacing || fs::is_directory(target, error), IOError, "cannot save into '", directory,
             "': it exists and is not a directory");
    const fs::path parent = fs::absolute(fs::path(target)).parent_path();
    fs::create_directories(parent, error);
    C3_CHECK(!error, IOError, "cannot create directory '", parent.string(), "': ", error.message());
    std::string staging = unique_sibling(target, "saving");
    C3_CHECK(fs::create_directory(staging, error) && !error, IOError, "cannot create '", staging, "': ",
             error ? error.message() : std::string("it exists"));
    std::string retired;
    try {
        fill(staging);
        if (replacing) {
            for (const auto& entry : fs::directory_iterator(target)) {
                const std::string name = entry.path().filename().string();
                if (is_weights_file(name) || fs::exists(fs::path(staging) / name)) continue;
                link_tree(entry.path(), fs::path(staging) / name);
            }
#if defined(__linux__) && defined(SYS_renameat2)
            // One atomic swap where the kernel and file system offer it: no moment without a directory.
            if (::syscall(SYS_renameat2, AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), 2 /* RENAME_EXCHANGE */) == 0) {
                fs::remove_all(staging, error);
                return;
            }
#endif
            retired = unique_sibling(target, "replaced");
            C3_CHECK(std::rename(target.c_str(), retired.c_str()) == 0, IOError, "cannot move '", target, "' aside: ",
                     std::strerror(errno));
        }
        if (std::rename(staging.c_str(), target.c_str()) != 0) {
            const std::string reason = std::strerror(errno);
            if (!retired.empty()) std::rename(retired.c_str(), target.c_str());  // put the old one back
            throw IOError("cannot rename '" + staging + "' to '" + target + "': " + reason);
        }
    } catch (const fs::filesystem_error& failure) {  // linking or creating a folder failed
        fs::remove_all(staging, error);
        throw IOError("cannot save '" + target + "': " + failure.what());
    } catch (...) {
        fs::remove_all(staging, error);
        throw;
    }
    if (!retired.empty()) fs::remove_all(retired, error);
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

// ---------------------------------------------------------------------------------------------------------------
// Checkpoints: one .safetensors file, or a Hugging Face model directory (single file or sharded with an index).

class Checkpoint {
public:
    static Checkpoint open(const std::string& path) {
        namespace fs = std::filesystem;
        Checkpoint checkpoint;
        checkpoint.path_ = path;
        std::error_code error;
        if (!fs::is_directory(path, error)) {
            checkpoint.files_.push_back(SafetensorsFile::open(path));
            for (const TensorInfo& tensor : checkpoint.files_[0].tensors()) checkpoint.file_of_[tensor.name] = 0;
            return checkpoint;
        }
        const fs::path directory(path);
        if (fs::exists(directory / "model.safetensors", error)) {
            checkpoint.files_.push_back(SafetensorsFile::open((directory / "model.safetensors").string()));
            for (const TensorInfo& tensor : checkpoint.files_[0].tensors()) checkpoint.file_of_[tensor.name] = 0;
            return checkpoint;
        }
        const fs::path index_path = directory / "model.safetensors.index.json";
        C3_CHECK(fs::exists(index_path, error), IOError, "checkpoint directory '", path,
                 "' has neither model.safetensors nor model.safetensors.index.json");
        checkpoint.open_sharded(directory, index_path.string());
        return checkpoint;
    }

    // The file or directory it was opened from.
    const std::string& path() const { return path_; }
    const std::vector<SafetensorsFile>& files() const { return files_; }
    // Sorted.
    std::vector<std::string> names() const {
        std::vector<std::string> result;
        for (const auto& [name, file] : file_of_) result.push_back(name);
        return result;
    }
    bool contains(const std::string& name) const { return file_of_.count(name) != 0; }
    const TensorInfo& info(const std::string& name) const { return file_for(name).info(name); }
    // The file that holds the tensor.
    const SafetensorsFile& file_for(const std::string& name) const {
        const auto found = file_of_.find(name);
        C3_CHECK(found != file_of_.end(), FormatError, "checkpoint '", path_, "' has no tensor '", name, "'");
        return files_[found->second];
    }
    template <typename T>
    void read_into(const std::string& name, T* destination, size_t count) const {
        file_for(name).read_into(name, destination, count);
    }
    template <typename T>
    std::vector<T> read(const std::string& name) const {
        return file_for(name).template read<T>(name);
    }

private:
    std::string path_;
    std::vector<SafetensorsFile> files_;
    std::map<std::string, size_t> file_of_;

    void open_sharded(const std::filesystem::path& directory, const std::string& index_path) {
        const std::string where = "checkpoint index '" + index_path + "': ";
        nlohmann::json index;
        {
            std::ifstream stream = detail::open_for_reading(index_path);
            const std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
            index = parse_json_text(text, "checkpoint index '" + index_path + "'");
        }
        C3_CHECK(index.is_object(), FormatError, where, "must be a JSON object");
        const auto weight_map = index.find("weight_map");
        C3_CHECK(weight_map != index.end() && weight_map->is_object(), FormatError, where,
                 "missing or non-object 'weight_map'");
        std::map<std::string, size_t> shard_number;
        for (const auto& [name, shard_json] : weight_map->items()) {
            C3_CHECK(shard_json.is_string(), FormatError, where, "weight_map entry for '", name,
                     "' must be a file name string");
            const std::string shard = shard_json.get<std::string>();
            // Shards live next to the index; a path out of the directory is not a shard.
            C3_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                         shard.find('\\') == std::string::npos && shard != "." && shard != "..",
                     FormatError, where, "weight_map names '", shard, "' for '", name,
                     "', which is not a plain file name in the directory");
            auto found = shard_number.find(shard);
            if (found == shard_number.end()) {
                const std::string shard_path = (directory / shard).string();
                std::error_code error;
                C3_CHECK(std::filesystem::is_regular_file(shard_path, error), FormatError, where, "shard '", shard,
                         "' (holding '", name, "') does not exist in '", directory.string(), "'");
                found = shard_number.emplace(shard, files_.size()).first;
                files_.push_back(SafetensorsFile::open(shard_path));
            }
            C3_CHECK(files_[found->second].contains(name), FormatError, where, "tensor '", name,
                     "' is mapped to shard '", shard, "', which does not contain it");
            file_of_[name] = found->second;
        }
    }
};

// ---------------------------------------------------------------------------------------------------------------
// Sharded writing, as transformers' save_pretrained lays it out.

namespace detail {

inline std::string shard_file_name(size_t number, size_t count) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", number, count);
    return name;
}

// Greedy packing in the given order; a tensor larger than the limit gets a shard of its own.
inline std::vector<std::string> write_sharded_planned(const std::string& directory, std::vector<PlannedTensor> tensors,
                                                      size_t max_shard_bytes, const Metadata& metadata) {
    namespace fs = std::filesystem;
    std::map<std::string, bool> seen;
    for (const PlannedTensor& tensor : tensors)
        C3_CHECK(seen.emplace(tensor.name, true).second, ValueError, "tensor name '", tensor.name,
                 "' appears twice in the checkpoint for '", directory, "'");
    std::vector<std::vector<PlannedTensor>> shards;
    size_t shard_bytes = 0, total_bytes = 0;
    for (PlannedTensor& tensor : tensors) {
        if (shards.empty() || (shard_bytes > 0 && shard_bytes + tensor.byte_count > max_shard_bytes)) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        shard_bytes += tensor.byte_count;
        total_bytes += tensor.byte_count;
        shards.back().push_back(std::move(tensor));
    }
    if (shards.empty()) shards.emplace_back();
    std::vector<std::string> written;
    const fs::path final_directory(directory);
    if (shards.size() == 1) written.push_back((final_directory / "model.safetensors").string());
    // Every file goes into a fresh staging directory that then replaces the old one as a whole, so an old
    // single file or index never mixes with new shards, and a failed write leaves the old checkpoint.
    write_directory_atomically(directory, [&](const std::string& staging) {
        if (shards.size() == 1) {
            write_planned((fs::path(staging) / "model.safetensors").string(), std::move(shards[0]), metadata);
            return;
        }
        nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
        std::map<std::string, std::string> sorted_map;
        for (size_t i = 0; i < shards.size(); ++i) {
            const std::string name = shard_file_name(i + 1, shards.size());
            for (const PlannedTensor& tensor : shards[i]) sorted_map[tensor.name] = name;
            write_planned((fs::path(staging) / name).string(), std::move(shards[i]), metadata);
            written.push_back((final_directory / name).string());
        }
        for (const auto& [tensor, shard] : sorted_map) weight_map[tensor] = shard;
        nlohmann::ordered_json index = nlohmann::ordered_json::object();
        index["metadata"] = {{"total_size", total_bytes}};
        index["weight_map"] = weight_map;
        const std::string text = index.dump(2) + "\n";
        write_atomically((fs::path(staging) / "model.safetensors.index.json").string(),
                         [&](std::ostream& out) { out.write(text.data(), std::streamsize(text.size())); });
        written.push_back((final_directory / "model.safetensors.index.json").string());
    });
    return written;
}

}  // namespace detail

// Writes `directory`/model.safetensors when everything fits in max_shard_bytes, otherwise
// model-0000k-of-0000N.safetensors shards and model.safetensors.index.json. Returns the files written.
inline std::vector<std::string> write_sharded(const std::string& directory, const std::vector<TensorToWrite>& tensors,
                                              size_t max_shard_bytes, const Metadata& metadata = {}) {
    std::vector<detail::PlannedTensor> planned;
    for (const TensorToWrite& tensor : tensors) planned.push_back(detail::plan_raw(tensor));
    return detail::write_sharded_planned(directory, std::move(planned), max_shard_bytes, metadata);
}

template <typename T>
std::vector<std::string> write_sharded(const std::string& directory, const std::vector<NamedTensor<T>>& tensors,
                                       DType dtype, size_t max_shard_bytes, const Metadata& metadata = {}) {
    std::vector<detail::PlannedTensor> planned;
    for (const NamedTensor<T>& tensor : tensors) planned.push_back(detail::plan_converted(tensor, dtype));
    return detail::write_sharded_planned(directory, std::move(planned), max_shard_bytes, metadata);
}

}  // namespace c3::io
