// The small transformer shape that the training tests share: big enough for every head layout (4 query heads
// over 2 KV heads), small enough that a step takes microseconds.
#pragma once
#include "c3/cascade/cascade.hpp"
#include "c3/model/config.hpp"

namespace c3::testing {

inline TransformerConfig small_config() {
    TransformerConfig c;
    c.vocab_size = 23;
    c.hidden_size = 16;
    c.intermediate_size = 32;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 4;
    return c;
}

// A cascade of two small_config models over a vocabulary of 20 (17, 18, 19: <img>, </img>, the pad) with N = 3 and
// `positions` positions in each model, tied decoder embeddings.
inline CascadeConfig small_cascade_config(size_t positions, CompressionMethod method = CompressionMethod::C3) {
    CascadeConfig c;
    c.encoder = c.decoder = small_config();
    c.encoder.vocab_size = c.decoder.vocab_size = 20;
    c.encoder.max_position_embeddings = c.decoder.max_position_embeddings = positions;
    c.decoder.tie_word_embeddings = true;
    c.num_latents = 3;
    c.latent_start_token = 17;
    c.latent_end_token = 18;
    c.latent_pad_token = 19;
    c.method = method;
    return c;
}

}  // namespace c3::testing
