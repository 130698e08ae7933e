// Latents files: what c3.save_latents writes (through write_latents), a safetensors file holding "latents"
// [batch, N, d] (float) and optionally "source_tokens" [batch] (the context lengths, stored as floats), with the
// metadata c3.kind = "latents", c3.num_latents = N and c3.checksum, the SHA-256 (hex) of the latents' stored bytes
// followed by the source_tokens' stored bytes. Reading checks all of it; any mismatch is a FormatError. Files
// written before the checksum (no c3.checksum) still load, without that check.
#pragma once
#include <cmath>

#include "c3/core/sha256.hpp"
#include "c3/io/safetensors_reader.hpp"
#include "c3/io/safetensors_writer.hpp"

namespace c3::io {

struct LatentsFile {
    Shape shape;                          // [batch, N, d]
    std::vector<float> latents;           // [batch, N, d]
    std::vector<int64_t> source_tokens;   // [batch], or empty when the file has none
    bool has_source_tokens = false;
    Metadata metadata;
};

inline LatentsFile read_latents(const std::string& path) {
    const SafetensorsFile file = SafetensorsFile::open(path);
    const std::string where = "latents file '" + path + "': ";
    LatentsFile result;
    result.metadata = file.metadata();
    const auto kind = result.metadata.find("c3.kind");
    C3_CHECK(kind != result.metadata.end() && kind->second == "latents", FormatError, where,
             "not a c3 latents file (metadata c3.kind is not \"latents\")");
    C3_CHECK(file.contains("latents"), FormatError, where, "no 'latents' tensor");
    const TensorInfo& info = file.info("latents");
    C3_CHECK(is_float_dtype(info.dtype), FormatError, where, "latents have dtype ", dtype_name(info.dtype),
             ", not a float type");
    C3_CHECK(info.shape.size() == 3, FormatError, where, "latents must be [batch, N, d], got shape ",
             shape_string(info.shape));
    const auto count = result.metadata.find("c3.num_latents");
    C3_CHECK(count != result.metadata.end() && count->second == std::to_string(info.shape[1]), FormatError, where,
             "latents have N=", info.shape[1], " but the metadata c3.num_latents says '",
             count == result.metadata.end() ? std::string("(missing)") : count->second, "'");
    const auto checksum = result.metadata.find("c3.checksum");
    if (checksum != result.metadata.end()) {
        C3_CHECK(checksum->second.size() == 64 &&
                     checksum->second.find_first_not_of("0123456789abcdef") == std::string::npos,
                 FormatError, where, "metadata c3.checksum is not a SHA-256 hex digest");
        Sha256 hash;
        for (const char* name : {"latents", "source_tokens"}) {
            if (!file.contains(name)) continue;
            const std::vector<unsigned char> bytes = file.read_raw(name);
            hash.update(bytes.data(), bytes.size());
        }
        const std::string actual = hash.finish_hex();
        C3_CHECK(actual == checksum->second, FormatError, where, "the data does not match its checksum (c3.checksum ",
                 checksum->second.substr(0, 16), "..., the data hashes to ", actual.substr(0, 16),
                 "...): the file was changed or damaged after it was written");
    }
    result.shape = info.shape;
    result.latents = file.read<float>("latents");
    for (size_t i = 0; i < result.latents.size(); ++i)
        C3_CHECK(std::isfinite(result.latents[i]), FormatError, where, "latent value ", result.latents[i],
                 " at flat index ", i, " is not finite");
    if (file.contains("source_tokens")) {
        const TensorInfo& tokens = file.info("source_tokens");
        C3_CHECK(is_float_dtype(tokens.dtype) && tokens.shape == Shape{info.shape[0]}, FormatError, where,
                 "source_tokens must be a float tensor of shape [", info.shape[0], "], got ", dtype_name(tokens.dtype),
                 " ", shape_string(tokens.shape));
        for (double value : file.read<double>("source_tokens")) {
            C3_CHECK(std::isfinite(value) && value >= 0 && value < 9.0e15 && value == std::floor(value), FormatError,
                     where, "source token count ", value, " is not a non-negative integer");
            result.source_tokens.push_back(int64_t(value));
        }
        result.has_source_tokens = true;
    }
    return result;
}

// Writes a latents file that read_latents accepts: latents [shape] (rank 3, finite) stored as F32, source_tokens
// (when has_source_tokens: one non-negative count per row, below 2^24 so that F32 holds it exactly), and
// `metadata` (the cascade's identity as c3.cascade, user keys) with c3.kind, c3.num_latents and c3.checksum set
// here. The file is replaced atomically.
inline void write_latents(const std::string& path, const Shape& shape, const float* latents,
                          const std::vector<int64_t>& source_tokens, bool has_source_tokens, Metadata metadata = {}) {
    const std::string where = "cannot write latents file '" + path + "': ";
    C3_CHECK(shape.size() == 3, ShapeError, where, "latents must be [batch, N, d], got shape ", shape_string(shape));
    const size_t count = shape_size(shape);
    C3_CHECK(latents != nullptr || count == 0, ValueError, where, "no latents data");
    for (size_t i = 0; i < count; ++i)
        C3_CHECK(std::isfinite(latents[i]), ValueError, where, "latent value ", latents[i], " at flat index ", i,
                 " is not finite");
    std::vector<float> tokens;
    if (has_source_tokens) {
        C3_CHECK(source_tokens.size() == shape[0], ShapeError, where, source_tokens.size(),
                 " source token counts for ", shape[0], " rows of latents");
        for (int64_t value : source_tokens) {
            C3_CHECK(value >= 0 && value < (int64_t(1) << 24), ValueError, where, "source token count ", value,
                     " is not in [0, 2^24)");
            tokens.push_back(float(value));
        }
    }
    Sha256 hash;
    hash.update(latents, count * sizeof(float));  // F32 little-endian: the bytes the file stores
    hash.update(tokens.data(), tokens.size() * sizeof(float));
    metadata["c3.kind"] = "latents";
    metadata["c3.num_latents"] = std::to_string(shape[1]);
    metadata["c3.checksum"] = hash.finish_hex();
    std::vector<NamedTensor<float>> tensors = {{"latents", shape, latents}};
    if (has_source_tokens) tensors.push_back({"source_tokens", {shape[0]}, tokens.data()});
    write_safetensors(path, tensors, DType::F32, metadata);
}

inline void write_latents(const std::string& path, const LatentsFile& file) {
    C3_CHECK(file.latents.size() == shape_size(file.shape), ShapeError, "cannot write latents file '", path,
             "': ", file.latents.size(), " values for shape ", shape_string(file.shape));
    write_latents(path, file.shape, file.latents.data(), file.source_tokens, file.has_source_tokens, file.metadata);
}

}  // namespace c3::io
