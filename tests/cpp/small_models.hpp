// The small transformer shape that the training tests share: big enough for every head layout (4 query heads
// over 2 KV heads), small enough that a step takes microseconds.
#pragma once
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

}  // namespace c3::testing
