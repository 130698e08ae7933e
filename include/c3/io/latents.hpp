// Latents files: what c3.save_latents writes, a safetensors file holding "latents" [batch, N, d] (float) and
// optionally "source_tokens" [batch] (the context lengths, stored as floats), with the metadata
// c3.kind = "latents" and c3.num_latents = N. Reading checks all of it; any mismatch is a FormatError.
#pragma once
#include <cmath>

#include "c3/io/safetensors_reader.hpp"

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

}  // namespace c3::io
