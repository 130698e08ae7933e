// Shared by the fuzz targets: any c3::Error is an accepted answer to hostile bytes; anything else escapes and
// is reported by libFuzzer as a crash (as are sanitizer findings).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "c3/core/errors.hpp"
#include "c3/model/config.hpp"

namespace c3::fuzz {

// Writes the input to a per-process temporary file (the safetensors reader reads files, as users do).
inline std::string write_temporary(const uint8_t* data, size_t size) {
    const std::string path = "/tmp/c3_fuzz_" + std::to_string(getpid()) + ".bin";
    FILE* file = std::fopen(path.c_str(), "wb");
    if (!file) return path;
    if (size) std::fwrite(data, 1, size, file);
    std::fclose(file);
    return path;
}

// The encoder that fuzz_c3_config pairs with each fuzzed decoder config (its hidden size is the one the seeds
// name in contexts_compression_llm_hidden_size).
inline TransformerConfig small_encoder_config() {
    TransformerConfig encoder;
    encoder.vocab_size = 300;
    encoder.hidden_size = 16;
    encoder.intermediate_size = 32;
    encoder.num_layers = 1;
    encoder.num_heads = 2;
    encoder.num_kv_heads = 1;
    encoder.head_dim = 8;
    encoder.max_position_embeddings = 64;
    return encoder;
}

}  // namespace c3::fuzz
