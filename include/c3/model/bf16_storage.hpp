// bf16 weight storage, for inference: the matrices (token embedding, projections, lm_head) as bfloat16 at the
// offsets of the float layout, norms and biases in a small float buffer. Half the bytes of float storage, and
// half the memory traffic of a decode step, which reads every weight once per token. Its products widen the
// weights to float; with compute on, passes over more than 4 rows (a prompt) round their activations to bf16
// and multiply with bf16 dot products instead, as bf16 inference in PyTorch does.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "c3/core/float16.hpp"
#include "c3/model/config.hpp"
#include "c3/model/weights.hpp"
#include "c3/ops/embedding.hpp"

namespace c3 {

// bf16 views of the matrices of a model stored in bfloat16.
struct Bf16LayerWeights {
    const uint16_t *q_weight, *k_weight, *v_weight, *o_weight, *gate_weight, *up_weight, *down_weight;
};
struct Bf16Weights {
    const uint16_t* embed = nullptr;
    const uint16_t* lm_head = nullptr;  // == embed when the embeddings are tied
    std::vector<Bf16LayerWeights> layers;
};

// Matrices point into `bf16` (same offsets as the float layout) and go to h; norms and biases point into `small`,
// at offsets given by small_offsets (one per layout entry, unused for matrices), and go to w.
template <typename T>
void bind_bf16_weights(const TransformerConfig& c, const std::vector<ParameterInfo>& layout, const uint16_t* bf16,
                       T* small, const std::vector<size_t>& small_offsets, TransformerWeights<T>& w, Bf16Weights& h) {
    size_t index = 0;
    auto matrix = [&]() { return bf16 + layout.at(index++).offset; };
    auto vector = [&]() -> T* {
        const size_t entry = index++;
        return small + small_offsets.at(entry);
    };
    w = TransformerWeights<T>{};
    h = Bf16Weights{};
    h.embed = matrix();
    for (size_t l = 0; l < c.num_layers; ++l) {
        LayerWeights<T> lw{};
        Bf16LayerWeights hl{};
        lw.input_norm = vector();
        hl.q_weight = matrix();
        lw.q_bias = c.attention_bias ? vector() : nullptr;
        hl.k_weight = matrix();
        lw.k_bias = c.attention_bias ? vector() : nullptr;
        hl.v_weight = matrix();
        lw.v_bias = c.attention_bias ? vector() : nullptr;
        hl.o_weight = matrix();
        lw.o_bias = c.output_bias() ? vector() : nullptr;
        lw.post_norm = vector();
        hl.gate_weight = matrix();
        hl.up_weight = matrix();
        hl.down_weight = matrix();
        w.layers.push_back(lw);
        h.layers.push_back(hl);
    }
    w.final_norm = vector();
    h.lm_head = c.tie_word_embeddings ? h.embed : matrix();
}

template <typename T>
struct Bf16Storage {
    std::vector<uint16_t> matrices;      // [layout size]: matrices and embeddings at their float-layout offsets
    std::vector<T> vectors;              // norms and biases, one after another
    std::vector<size_t> vector_offsets;  // per layout entry: where its vector starts in `vectors`
    Bf16Weights weights;                 // views of the matrices (bind)

    static bool is_matrix(const ParameterInfo& info) {
        return info.kind == ParameterKind::Matrix || info.kind == ParameterKind::Embedding;
    }
    bool empty() const { return matrices.empty(); }

    // Zeroed buffers for `layout`; bind() then points the views at them.
    void allocate(const std::vector<ParameterInfo>& layout) {
        matrices.assign(layout_size(layout), 0);
        vector_offsets.assign(layout.size(), 0);
        size_t count = 0;
        for (size_t e = 0; e < layout.size(); ++e)
            if (!is_matrix(layout[e])) vector_offsets[e] = count, count += layout[e].size;
        vectors.assign(count, T(0));
    }
    // Points `weights` at the matrices and the norm and bias pointers of `vector_weights` at the vectors (its
    // matrix pointers stay null).
    void bind(const TransformerConfig& config, const std::vector<ParameterInfo>& layout,
              TransformerWeights<T>& vector_weights) {
        bind_bf16_weights(config, layout, matrices.data(), vectors.data(), vector_offsets, vector_weights, weights);
    }
    // Overwrites tensor `e` of the layout from info.size values: a matrix rounded to bf16 (nearest even, from
    // float), a vector copied.
    template <typename U>
    void assign(const std::vector<ParameterInfo>& layout, size_t e, const U* values) {
        const ParameterInfo& info = layout.at(e);
        if (is_matrix(info)) {
            for (size_t i = 0; i < info.size; ++i) matrices[info.offset + i] = float_to_bf16(float(values[i]));
        } else {
            std::copy(values, values + info.size, vectors.begin() + long(vector_offsets[e]));
        }
    }

    // output [count, hidden] = embedding rows of ids, widened to float.
    void embed(T* output, const int32_t* ids, size_t count, size_t vocab, size_t hidden) const {
        ops::embedding_forward_bf16(output, ids, weights.embed, count, vocab, hidden);
    }
};

}  // namespace c3
