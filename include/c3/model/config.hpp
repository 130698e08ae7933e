// Model dimensions: runtime values, read from a Hugging Face config.json or set by hand.
#pragma once
#include <cmath>
#include <cstddef>
#include <string>

#include "c3/core/errors.hpp"

namespace c3 {

// A Qwen2/Llama-style decoder-only transformer.
struct TransformerConfig {
    std::string model_type = "qwen2";  // "qwen2" or "llama": naming only, the math is the same
    size_t vocab_size = 256;
    size_t hidden_size = 64;
    size_t intermediate_size = 176;
    size_t num_layers = 2;
    size_t num_heads = 4;
    size_t num_kv_heads = 2;
    size_t head_dim = 16;  // usually hidden_size / num_heads
    size_t max_position_embeddings = 2048;
    double rope_theta = 10000.0;
    double rms_norm_eps = 1e-6;
    bool attention_bias = true;        // bias on q, k, v projections (Qwen2: true; Llama: false)
    bool tie_word_embeddings = false;  // lm_head shares the embedding matrix
    double initializer_range = 0.02;
    int bos_token_id = -1;
    int eos_token_id = -1;

    void validate() const {
        C3_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_layers > 0, ConfigError,
                 "vocab_size, hidden_size, intermediate_size and num_layers must be positive");
        C3_CHECK(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0, ConfigError,
                 "num_attention_heads (", num_heads, ") must be a positive multiple of num_key_value_heads (",
                 num_kv_heads, ")");
        C3_CHECK(head_dim > 0 && head_dim % 2 == 0, ConfigError, "head_dim must be positive and even, got ", head_dim);
        C3_CHECK(max_position_embeddings > 0, ConfigError, "max_position_embeddings must be positive");
        C3_CHECK(rope_theta > 0 && rms_norm_eps > 0, ConfigError, "rope_theta and rms_norm_eps must be positive");
        C3_CHECK(std::isfinite(rope_theta) && std::isfinite(rms_norm_eps) && std::isfinite(initializer_range) &&
                     initializer_range >= 0,
                 ConfigError, "rope_theta, rms_norm_eps and initializer_range must be finite (and the range >= 0)");
        // Bounds on every size and on the products the kernels index with (heads * head_dim, cache rows), so
        // that no size_t arithmetic below can wrap: every product of two bounded values fits in 52 bits.
        C3_CHECK(vocab_size < (size_t(1) << 31) && hidden_size < (size_t(1) << 20) &&
                     intermediate_size < (size_t(1) << 22) && num_layers < 4096 && num_heads <= kMaxHeads &&
                     head_dim <= kMaxHeadDim && max_position_embeddings <= kMaxPositions,
                 ConfigError, "model dimensions are implausibly large (vocab_size < 2^31, hidden_size < 2^20, "
                 "intermediate_size < 2^22, num_layers < 4096, heads <= ", kMaxHeads, ", head_dim <= ", kMaxHeadDim,
                 ", max_position_embeddings <= ", kMaxPositions, ")");
        C3_CHECK(q_width() < (size_t(1) << 20), ConfigError, "num_attention_heads * head_dim = ", q_width(),
                 " is implausibly large (limit 2^20)");
        C3_CHECK(bos_token_id >= -1 && eos_token_id >= -1, ConfigError, "bos/eos token ids must be ids or -1 (none)");
    }
    static constexpr size_t kMaxHeads = size_t(1) << 16, kMaxHeadDim = size_t(1) << 16;
    static constexpr size_t kMaxPositions = size_t(1) << 31;
    // Llama's attention_bias also puts a bias on o_proj; Qwen2's q/k/v biases stop there.
    bool output_bias() const { return attention_bias && model_type == "llama"; }
    size_t q_width() const { return num_heads * head_dim; }
    size_t kv_width() const { return num_kv_heads * head_dim; }
};

}  // namespace c3
