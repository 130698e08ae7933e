// Parameter layout: every tensor of a model is a named view into one flat buffer. Gradients and optimiser
// moments are buffers of the same layout, so zeroing, clipping, AdamW and checkpoint I/O are flat loops.
#pragma once
#include <string>
#include <vector>

#include "c3/core/rng.hpp"
#include "c3/core/tensor.hpp"
#include "c3/model/config.hpp"

namespace c3 {

enum class ParameterKind { Embedding, Matrix, Bias, Norm };

struct ParameterInfo {
    std::string name;  // the Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
    Shape shape;
    size_t offset = 0;  // in elements, from the start of the flat buffer
    size_t size = 0;
    ParameterKind kind = ParameterKind::Matrix;
    bool decays() const { return kind == ParameterKind::Matrix || kind == ParameterKind::Embedding; }
};

// Builds a layout tensor by tensor; offsets follow in order.
struct LayoutBuilder {
    std::vector<ParameterInfo> entries;
    size_t total = 0;
    void add(std::string name, Shape shape, ParameterKind kind) {
        const size_t size = shape_size(shape);
        entries.push_back({std::move(name), std::move(shape), total, size, kind});
        total += size;
    }
};

// The HF Qwen2/Llama tensor names in a fixed order.
inline std::vector<ParameterInfo> transformer_layout(const TransformerConfig& c) {
    LayoutBuilder b;
    const size_t d = c.hidden_size, qw = c.q_width(), kvw = c.kv_width(), ff = c.intermediate_size;
    b.add("model.embed_tokens.weight", {c.vocab_size, d}, ParameterKind::Embedding);
    for (size_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        b.add(p + "input_layernorm.weight", {d}, ParameterKind::Norm);
        b.add(p + "self_attn.q_proj.weight", {qw, d}, ParameterKind::Matrix);
        if (c.attention_bias) b.add(p + "self_attn.q_proj.bias", {qw}, ParameterKind::Bias);
        b.add(p + "self_attn.k_proj.weight", {kvw, d}, ParameterKind::Matrix);
        if (c.attention_bias) b.add(p + "self_attn.k_proj.bias", {kvw}, ParameterKind::Bias);
        b.add(p + "self_attn.v_proj.weight", {kvw, d}, ParameterKind::Matrix);
        if (c.attention_bias) b.add(p + "self_attn.v_proj.bias", {kvw}, ParameterKind::Bias);
        b.add(p + "self_attn.o_proj.weight", {d, qw}, ParameterKind::Matrix);
        if (c.output_bias()) b.add(p + "self_attn.o_proj.bias", {d}, ParameterKind::Bias);
        b.add(p + "post_attention_layernorm.weight", {d}, ParameterKind::Norm);
        b.add(p + "mlp.gate_proj.weight", {ff, d}, ParameterKind::Matrix);
        b.add(p + "mlp.up_proj.weight", {ff, d}, ParameterKind::Matrix);
        b.add(p + "mlp.down_proj.weight", {d, ff}, ParameterKind::Matrix);
    }
    b.add("model.norm.weight", {d}, ParameterKind::Norm);
    if (!c.tie_word_embeddings) b.add("lm_head.weight", {c.vocab_size, d}, ParameterKind::Matrix);
    return b.entries;
}

inline size_t layout_size(const std::vector<ParameterInfo>& layout) {
    return layout.empty() ? 0 : layout.back().offset + layout.back().size;
}

inline const ParameterInfo& find_parameter(const std::vector<ParameterInfo>& layout, const std::string& name) {
    for (const auto& info : layout)
        if (info.name == name) return info;
    throw ValueError("no parameter named '" + name + "'");
}

// A model's share of what an optimiser updates: its flat parameters and gradients with their layout.
template <typename T>
struct ParameterGroup {
    std::string name;                          // prefix for checkpoints, e.g. "encoder"
    T* parameters = nullptr;
    T* gradients = nullptr;
    const std::vector<ParameterInfo>* layout = nullptr;
    const std::vector<uint8_t>* trainable = nullptr;  // per layout entry; null = all trainable
    size_t size() const { return layout_size(*layout); }
    bool is_trainable(size_t entry) const { return !trainable || (*trainable)[entry]; }
};

// Pointers for one layer, into parameters or into gradients (the same layout serves both).
template <typename T>
struct LayerWeights {
    T *input_norm, *q_weight, *q_bias, *k_weight, *k_bias, *v_weight, *v_bias, *o_weight, *o_bias;
    T *post_norm, *gate_weight, *up_weight, *down_weight;
};

template <typename T>
struct TransformerWeights {
    T* embed = nullptr;
    std::vector<LayerWeights<T>> layers;
    T* final_norm = nullptr;
    T* lm_head = nullptr;  // == embed when the embeddings are tied
};

// With a trainable mask (one byte per layout entry), frozen entries get null pointers: backward then skips
// their gradient work.
template <typename T>
TransformerWeights<T> bind_transformer_weights(const TransformerConfig& c, const std::vector<ParameterInfo>& layout,
                                               T* base, const std::vector<uint8_t>* trainable = nullptr) {
    TransformerWeights<T> w;
    if (!base) return w;
    size_t index = 0;
    auto next = [&]() -> T* {
        const size_t entry = index++;
        return (trainable && !(*trainable)[entry]) ? nullptr : base + layout.at(entry).offset;
    };
    w.embed = next();
    for (size_t l = 0; l < c.num_layers; ++l) {
        LayerWeights<T> lw{};
        lw.input_norm = next();
        lw.q_weight = next();
        lw.q_bias = c.attention_bias ? next() : nullptr;
        lw.k_weight = next();
        lw.k_bias = c.attention_bias ? next() : nullptr;
        lw.v_weight = next();
        lw.v_bias = c.attention_bias ? next() : nullptr;
        lw.o_weight = next();
        lw.o_bias = c.output_bias() ? next() : nullptr;
        lw.post_norm = next();
        lw.gate_weight = next();
        lw.up_weight = next();
        lw.down_weight = next();
        w.layers.push_back(lw);
    }
    w.final_norm = next();
    w.lm_head = c.tie_word_embeddings ? w.embed : next();
    return w;
}

// Normal(0, std) for matrices and embeddings, zeros for biases, ones for norms: the transformers default.
template <typename T>
void init_parameters(T* base, const std::vector<ParameterInfo>& layout, double std, uint64_t seed) {
    Rng rng(seed);
    for (const auto& info : layout) {
        T* p = base + info.offset;
        for (size_t i = 0; i < info.size; ++i) {
            switch (info.kind) {
                case ParameterKind::Embedding:
                case ParameterKind::Matrix: p[i] = T(rng.normal() * std); break;
                case ParameterKind::Bias: p[i] = T(0); break;
                case ParameterKind::Norm: p[i] = T(1); break;
            }
        }
    }
}

}  // namespace c3
