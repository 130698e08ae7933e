// Reading one safetensors file: an 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
// The whole header is validated when the file is opened, before anything proportional to a size the file claims
// is allocated, so a corrupt or hostile file ends in a FormatError (or an IOError when it cannot be read), never
// in a crash or a huge allocation. Tensor data is read on demand with std::ifstream and converted on the way.
#pragma once
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/json.hpp"
#include "c3/io/files.hpp"
#include "c3/io/safetensors_format.hpp"

namespace c3::io {

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
            C3_CHECK(json_to_size(extent_json, extent), FormatError, tensor,
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
        C3_CHECK(json_to_size((*offsets)[0], info.begin) && json_to_size((*offsets)[1], info.end),
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

}  // namespace c3::io
