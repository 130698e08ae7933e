// Latents files: what c3.save_latents writes (through write_latents), a safetensors file holding "latents"
// [batch, N, d] (float) and optionally "source_tokens" [batch] (the context lengths, stored as floats), with the
// metadata c3.kind = "latents", c3.num_latents = N and c3.checksum, the SHA-256 (hex) of the latents' stored bytes
// followed by the source_tokens' stored bytes. Reading checks all of it; any mismatch is a FormatError. Files
// written before the checksum (no c3.checksum) still load, without that check.
//
// A file may hold one document's chunked latents (Cascade.compress_long, c3 compress --chunk-tokens): each row is
// one chunk, and the metadata c3.chunk_offsets and c3.chunk_lengths are JSON lists of integers, one per row: the
// token offset of the chunk's first token in the document, and its token count. They go together and need
// c3.checksum, which then also covers them: the SHA-256 continues with the bytes of
// "c3.chunk_offsets=<list>\nc3.chunk_lengths=<list>" (the two metadata values as stored). Reading checks that
// offsets and lengths hold one entry per row, that every length is at least 1, that the first offset is not
// negative and that each chunk starts where the previous one ends (so offsets increase strictly), and that the
// source_tokens, where present, are the chunk lengths. Files without these keys are read and written as before.
#pragma once
#include <cmath>
#include <string>

#include "c3/core/json.hpp"
#include "c3/core/sha256.hpp"
#include "c3/io/safetensors_reader.hpp"
#include "c3/io/safetensors_writer.hpp"

namespace c3::io {

// One document's chunks: row k of the latents is the chunk of lengths[k] tokens from token offsets[k].
struct LatentChunks {
    std::vector<int64_t> offsets, lengths;
};

struct LatentsFile {
    Shape shape;                          // [batch, N, d]
    std::vector<float> latents;           // [batch, N, d]
    std::vector<int64_t> source_tokens;   // [batch], or empty when the file has none
    bool has_source_tokens = false;
    LatentChunks chunks;                  // [batch] each, when has_chunks
    bool has_chunks = false;
    Metadata metadata;
};

namespace detail {
constexpr const char* kChunkOffsetsKey = "c3.chunk_offsets";
constexpr const char* kChunkLengthsKey = "c3.chunk_lengths";
// Offsets and lengths stay below 2^62, so that offset + length never overflows.
constexpr int64_t kMaxChunkPosition = int64_t(1) << 62;

// What is wrong with chunks for `rows` rows of latents and their source token counts (if any); empty when
// nothing is.
inline std::string chunk_problem(const LatentChunks& chunks, size_t rows,
                                 const std::vector<int64_t>* source_tokens) {
    using ::c3::detail::concat;
    if (chunks.offsets.size() != rows || chunks.lengths.size() != rows)
        return concat(chunks.offsets.size(), " chunk offsets and ", chunks.lengths.size(), " chunk lengths for ", rows,
                      " rows of latents (one of each per row)");
    for (size_t k = 0; k < rows; ++k) {
        const int64_t offset = chunks.offsets[k], length = chunks.lengths[k];
        if (length < 1 || length >= kMaxChunkPosition)
            return concat("chunk ", k, " has length ", length, " (a chunk holds at least 1 token)");
        if (offset < 0 || offset >= kMaxChunkPosition)
            return concat("chunk ", k, " has offset ", offset, " (offsets are token positions from 0)");
        if (k > 0 && offset != chunks.offsets[k - 1] + chunks.lengths[k - 1])
            return concat("chunk ", k, " starts at token ", offset, ", not where chunk ", k - 1, " ends (",
                          chunks.offsets[k - 1], " + ", chunks.lengths[k - 1], "): offsets must increase by each "
                          "chunk's length");
        if (source_tokens && (*source_tokens)[k] != length)
            return concat("row ", k, " has ", (*source_tokens)[k], " source tokens but its chunk has length ", length,
                          " (a chunked file's source_tokens are its chunk lengths)");
    }
    return {};
}

inline std::string chunk_list_text(const std::vector<int64_t>& values) { return nlohmann::json(values).dump(); }

// The bytes the checksum continues with for a chunked file (see the top of this file).
inline std::string chunk_checksum_text(const std::string& offsets, const std::string& lengths) {
    return std::string(kChunkOffsetsKey) + "=" + offsets + "\n" + kChunkLengthsKey + "=" + lengths;
}

// A metadata list of integers, or a FormatError naming the key.
inline std::vector<int64_t> chunk_list(const std::string& text, const char* key, const std::string& where) {
    const nlohmann::json value = parse_json_text(text, where + "metadata " + key);
    C3_CHECK(value.is_array(), FormatError, where, "metadata ", key, " is not a JSON list of integers");
    std::vector<int64_t> values;
    values.reserve(value.size());
    for (const nlohmann::json& item : value) {
        const bool fits = item.is_number_integer() &&
                          (!item.is_number_unsigned() || item.get<uint64_t>() <= uint64_t(INT64_MAX));
        C3_CHECK(fits, FormatError, where, "metadata ", key, " holds ", item.dump(), ", not an integer");
        values.push_back(item.get<int64_t>());
    }
    return values;
}
}  // namespace detail

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
    const auto offsets = result.metadata.find(detail::kChunkOffsetsKey);
    const auto lengths = result.metadata.find(detail::kChunkLengthsKey);
    result.has_chunks = offsets != result.metadata.end() || lengths != result.metadata.end();
    if (result.has_chunks) {
        const bool has_offsets = offsets != result.metadata.end();
        C3_CHECK(has_offsets && lengths != result.metadata.end(), FormatError, where, "metadata has ",
                 has_offsets ? detail::kChunkOffsetsKey : detail::kChunkLengthsKey, " without ",
                 has_offsets ? detail::kChunkLengthsKey : detail::kChunkOffsetsKey, " (a chunked file has both)");
        C3_CHECK(checksum != result.metadata.end(), FormatError, where,
                 "a chunked file (metadata c3.chunk_offsets) needs c3.checksum, which covers its chunks");
    }
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
        if (result.has_chunks) {
            const std::string text = detail::chunk_checksum_text(offsets->second, lengths->second);
            hash.update(text.data(), text.size());
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
    if (result.has_chunks) {
        result.chunks.offsets = detail::chunk_list(offsets->second, detail::kChunkOffsetsKey, where);
        result.chunks.lengths = detail::chunk_list(lengths->second, detail::kChunkLengthsKey, where);
        const std::string problem = detail::chunk_problem(result.chunks, info.shape[0],
                                                          result.has_source_tokens ? &result.source_tokens : nullptr);
        C3_CHECK(problem.empty(), FormatError, where, problem);
    }
    return result;
}

// Writes a latents file that read_latents accepts: latents [shape] (rank 3, finite) stored as F32, source_tokens
// (when has_source_tokens: one non-negative count per row, below 2^24 so that F32 holds it exactly), `metadata`
// (the cascade's identity as c3.cascade, user keys) with c3.kind, c3.num_latents and c3.checksum set here, and,
// when `chunks` is given, one document's chunk offsets and lengths (checked as read_latents checks them; without
// it, any c3.chunk_* keys in `metadata` are dropped). The file is replaced atomically.
inline void write_latents(const std::string& path, const Shape& shape, const float* latents,
                          const std::vector<int64_t>& source_tokens, bool has_source_tokens, Metadata metadata = {},
                          const LatentChunks* chunks = nullptr) {
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
    metadata.erase(detail::kChunkOffsetsKey);
    metadata.erase(detail::kChunkLengthsKey);
    if (chunks) {
        const std::string problem =
            detail::chunk_problem(*chunks, shape[0], has_source_tokens ? &source_tokens : nullptr);
        C3_CHECK(problem.empty(), ValueError, where, problem);
        metadata[detail::kChunkOffsetsKey] = detail::chunk_list_text(chunks->offsets);
        metadata[detail::kChunkLengthsKey] = detail::chunk_list_text(chunks->lengths);
    }
    Sha256 hash;
    hash.update(latents, count * sizeof(float));  // F32 little-endian: the bytes the file stores
    hash.update(tokens.data(), tokens.size() * sizeof(float));
    if (chunks) {
        const std::string text = detail::chunk_checksum_text(metadata[detail::kChunkOffsetsKey],
                                                             metadata[detail::kChunkLengthsKey]);
        hash.update(text.data(), text.size());
    }
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
    write_latents(path, file.shape, file.latents.data(), file.source_tokens, file.has_source_tokens, file.metadata,
                  file.has_chunks ? &file.chunks : nullptr);
}

}  // namespace c3::io
