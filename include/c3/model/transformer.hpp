// A Qwen2/Llama-style decoder-only transformer with forward and backward, in one readable path:
//   x = embed(ids) or given embeddings
//   per layer:  h = x + o_proj(attention(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))
//               x = h + down(silu(gate(norm(h))) * up(norm(h)))
//   hidden = norm(x);  logits = hidden * lm_head^T
// Batches are [batch, length] with a padding mask; N = batch * length rows run through every matrix product.
#pragma once
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <memory>
#include <vector>

#include "c3/model/bf16_storage.hpp"
#include "c3/model/config.hpp"
#include "c3/model/weights.hpp"
#include "c3/ops/attention.hpp"
#include "c3/ops/compute_choice.hpp"
#include "c3/ops/embedding.hpp"
#include "c3/ops/products.hpp"
#include "c3/ops/rmsnorm.hpp"
#include "c3/ops/rope.hpp"
#include "c3/ops/swiglu.hpp"

namespace c3 {

// What a forward pass reads. Exactly one of ids or embeddings is set.
template <typename T>
struct ForwardInput {
    size_t batch = 0, length = 0;
    const int32_t* ids = nullptr;         // [batch, length]
    const T* embeddings = nullptr;        // [batch, length, hidden]
    const uint8_t* mask = nullptr;        // [batch, length], 1 = token, 0 = padding; null = all tokens
    const int64_t* positions = nullptr;   // [batch, length]; null = count of tokens before (mask cumsum - 1)
};

enum class LogitsMode { None, Last, All };

// Keys and values of earlier positions, for incremental decoding. Rows are laid out like the k/v projections.
template <typename T>
struct KVCache {
    size_t batch = 0, capacity = 0, length = 0, kv_width = 0;
    std::vector<std::vector<T>> keys, values;  // per layer [batch, capacity, kv_width]
    std::vector<uint8_t> valid;                // [batch, capacity]
    std::vector<int64_t> next_position;        // [batch]: the position id of the next token

    void reset(const TransformerConfig& c, size_t batch_size, size_t max_length) {
        batch = batch_size;
        capacity = max_length;
        length = 0;
        kv_width = c.kv_width();
        keys.assign(c.num_layers, std::vector<T>(batch * capacity * kv_width));
        values.assign(c.num_layers, std::vector<T>(batch * capacity * kv_width));
        valid.assign(batch * capacity, 0);
        next_position.assign(batch, 0);
    }
};

// Everything a forward pass computes, kept for backward when asked. Sized on demand and reused.
template <typename T>
struct LayerActivations {
    std::vector<T> norm1, rstd1, q, k, v, probs, attention, middle, norm2, rstd2, gate, up, act, output;
};

template <typename T>
struct Activations {
    size_t batch = 0, length = 0, key_length = 0;
    bool saved = false;                 // per-layer activations kept for backward
    LogitsMode logits_mode = LogitsMode::None;
    std::vector<int32_t> ids;           // [N] (empty when the input was embeddings)
    std::vector<uint8_t> mask;          // [N]
    std::vector<int64_t> positions;     // [N]
    std::vector<T> input;               // [N, hidden]: the embeddings that entered layer 0
    std::vector<T> rope_cos, rope_sin;  // [N, head_dim / 2]
    std::vector<LayerActivations<T>> layers;
    std::vector<T> hidden, rstd_final;  // [N, hidden] after the final norm, [N]
    std::vector<T> logits;              // [N, vocab] (All) or [batch, vocab] (Last)
    // Backward's scratch, kept between steps so that a training loop allocates (and page-faults) only once.
    std::vector<T> dnormed, dresidual, dact, dgate, dup, dnorm, dattention, dq, dk, dv;
    size_t rows() const { return batch * length; }
};

enum class WeightStorage { Float, Bf16 };

// Copies of a model's matrices that the products of one training step read, in the model's layout; taken from
// the parameters at the start of the step (the trainers rebuild them every step), so valid only while the
// parameters are unchanged. Either of two kinds, the other left empty:
// - float (transpose_weights): the matrices transposed to [in, out], so that forward products read the weight in
//   place through broadcast_gemm, as backward reads w (Eigen would copy it into panels on every call). Matrices
//   with more than ops::broadcast_gemm_max_columns() outputs stay null (Eigen takes them).
// - bf16 (round_weights_to_bf16, mixed-precision training): every multiplied matrix rounded to bf16, as stored
//   [out, in] for the forward products and transposed [in, out] for backward's input gradients dX = dY * W.
//   Both products then run on bf16 dot products (ops/matmul_bf16.hpp); weight gradients stay float.
template <typename T>
struct StepWeights {
    std::vector<T> transposed_storage;
    TransformerWeights<T> transposed;  // pointers into transposed_storage; null for what was not transposed
    std::vector<uint16_t> bf16_storage, bf16_transposed_storage;
    TransformerWeights<uint16_t> bf16, bf16_transposed;  // pointers into those; null for what was not rounded
};

template <typename T>
class Transformer {
public:
    TransformerConfig config;
    std::vector<ParameterInfo> layout;
    std::vector<T> parameters;
    std::vector<T> gradients;         // empty until enable_gradients()
    std::vector<uint8_t> trainable;   // per layout entry; a frozen tensor gets no gradient work
    TransformerWeights<T> weights, weight_gradients;  // weight_gradients: null where frozen
    // bf16 storage (inference only; empty with float storage). `parameters` is then empty, and weights holds
    // only the norm and bias pointers, into bf16.vectors.
    Bf16Storage<T> bf16;
    // With bf16 storage: passes over more than 4 rows (a prompt) round their activations to bf16 and multiply with
    // bf16 dot products (AVX512-BF16 where compiled for it), as bf16 inference in PyTorch does; twice the rate of
    // float products. Decode steps (memory-bound) keep float compute. Off by default: float compute is closer
    // to the float model.
    bool bf16_compute = false;

    // compute "auto": bf16 compute only with bf16 storage and where the trial at this model's shape (rows of a
    // prompt pass through the feed-forward up-projection) measures bf16 products faster than widening the bf16
    // weights to float; returns the trial (float storage measures nothing: bf16 compute needs bf16 weights).
    ops::ComputeTrial choose_compute() {
        ops::ComputeTrial trial;
        if (!stores_bf16()) {
            bf16_compute = false;
            trial.reason = "float32 storage: float32 (bf16 compute needs bf16 storage)";
            return trial;
        }
        trial = ops::model_compute_trial(config.hidden_size, config.intermediate_size,
                                         ops::ComputeBaseline::Bf16Widened);
        bf16_compute = trial.bf16;
        return trial;
    }

    // Float storage starts from the seeded random initialisation; a loader that overwrites every tensor passes
    // random_init = false and skips it (135M normal draws took 4 of the 4.2 s to load SmolLM2).
    explicit Transformer(const TransformerConfig& model_config, WeightStorage storage = WeightStorage::Float,
                         bool random_init = true)
        : config(model_config) {
        config.validate();
        layout = transformer_layout(config);
        trainable.assign(layout.size(), 1);
        if (storage == WeightStorage::Bf16) {
            bf16.allocate(layout);
            bf16.bind(config, layout, weights);
            return;
        }
        parameters.assign(layout_size(layout), T(0));
        weights = bind_transformer_weights(config, layout, parameters.data());
        if (random_init) init_parameters(parameters.data(), layout, config.initializer_range, 0);
    }

    bool stores_bf16() const { return !bf16.empty(); }

    // Converts float storage to bf16 (round to nearest even) and frees the float buffer.
    void store_as_bf16() {
        if (stores_bf16()) return;
        const std::vector<T> source = std::move(parameters);
        parameters = {};
        gradients = {};
        weight_gradients = TransformerWeights<T>{};
        bf16.allocate(layout);
        for (size_t e = 0; e < layout.size(); ++e) bf16.assign(layout, e, source.data() + layout[e].offset);
        bf16.bind(config, layout, weights);
    }
    // The weight views point into our own buffers: a copy rebinds them to its buffers. A move keeps the
    // buffers (a moved std::vector keeps its heap block), so loading into a shared_ptr copies nothing.
    Transformer(const Transformer& other) { *this = other; }
    Transformer(Transformer&& other) noexcept { *this = std::move(other); }
    Transformer& operator=(const Transformer& other) {
        if (this == &other) return *this;
        config = other.config;
        layout = other.layout;
        parameters = other.parameters;
        gradients = other.gradients;
        trainable = other.trainable;
        bf16 = other.bf16;
        bf16_compute = other.bf16_compute;
        rebind();
        return *this;
    }
    Transformer& operator=(Transformer&& other) noexcept {
        if (this == &other) return *this;
        config = std::move(other.config);
        layout = std::move(other.layout);
        parameters = std::move(other.parameters);
        gradients = std::move(other.gradients);
        trainable = std::move(other.trainable);
        bf16 = std::move(other.bf16);
        bf16_compute = other.bf16_compute;
        rebind();
        other.weights = other.weight_gradients = TransformerWeights<T>{};
        other.bf16.weights = Bf16Weights{};
        return *this;
    }
    // Points the weight views at the current buffers (after a buffer was replaced).
    void rebind() {
        weights = weight_gradients = TransformerWeights<T>{};
        bf16.weights = Bf16Weights{};
        if (layout.empty()) return;
        if (stores_bf16()) {
            bf16.bind(config, layout, weights);
            return;
        }
        weights = bind_transformer_weights(config, layout, parameters.data());
        weight_gradients =
            bind_transformer_weights(config, layout, gradients.empty() ? nullptr : gradients.data(), &trainable);
    }

    // Overwrites tensor `e` of the layout from info.size floats, in either storage (bf16 matrices are rounded to
    // nearest even). The caller has checked the shape.
    void assign_parameter(size_t e, const float* values) {
        const ParameterInfo& info = layout.at(e);
        if (stores_bf16()) bf16.assign(layout, e, values);
        else std::copy(values, values + info.size, parameters.begin() + long(info.offset));
    }
    size_t parameter_index(const std::string& name) const {
        for (size_t e = 0; e < layout.size(); ++e)
            if (layout[e].name == name) return e;
        throw ValueError("no parameter named '" + name + "'");
    }

    size_t num_parameters() const { return layout_size(layout); }
    void init_random(uint64_t seed) {
        require_float_storage("init_random");
        init_parameters(parameters.data(), layout, config.initializer_range, seed);
    }
    const ParameterInfo& parameter(const std::string& name) const { return find_parameter(layout, name); }
    T* parameter_data(const std::string& name) {
        require_float_storage("parameter_data");
        return parameters.data() + parameter(name).offset;
    }

    void enable_gradients() {
        require_trainable_storage();
        if (gradients.size() != parameters.size()) gradients.assign(parameters.size(), T(0));
        weight_gradients = bind_transformer_weights(config, layout, gradients.data(), &trainable);
    }
    // Freezes or unfreezes every tensor whose name starts with prefix ("" = all). Returns how many matched.
    size_t set_trainable(const std::string& prefix, bool value) {
        size_t matched = 0;
        for (size_t e = 0; e < layout.size(); ++e)
            if (layout[e].name.compare(0, prefix.size(), prefix) == 0) trainable[e] = value, ++matched;
        C3_CHECK(matched > 0, ValueError, "no parameter name starts with '", prefix, "'");
        if (!gradients.empty()) enable_gradients();
        return matched;
    }
    // Grows (or shrinks) the vocabulary: embedding and lm_head rows past the old size start at the mean of the
    // old rows plus small seeded noise (as transformers' resize_token_embeddings does), so new special tokens
    // begin as an average token rather than an outlier.
    void resize_vocabulary(size_t vocab_size, uint64_t seed) {
        require_float_storage("resize_vocabulary");
        C3_CHECK(vocab_size > 0, ValueError, "vocab_size must be positive");
        const std::vector<ParameterInfo> old_layout = layout;
        const std::vector<T> old = std::move(parameters);
        const size_t old_vocab = config.vocab_size, d = config.hidden_size;
        config.vocab_size = vocab_size;
        layout = transformer_layout(config);
        parameters.assign(layout_size(layout), T(0));
        Rng rng(seed);
        for (size_t e = 0; e < layout.size(); ++e) {
            const ParameterInfo& info = layout[e];
            const ParameterInfo& before = old_layout[e];
            const T* from = old.data() + before.offset;
            T* to = parameters.data() + info.offset;
            const bool by_token = info.name == "model.embed_tokens.weight" || info.name == "lm_head.weight";
            if (!by_token) {
                std::copy(from, from + info.size, to);
                continue;
            }
            const size_t kept = std::min(old_vocab, vocab_size);
            std::copy(from, from + kept * d, to);
            std::vector<double> mean(d, 0.0);
            for (size_t v = 0; v < old_vocab; ++v)
                for (size_t i = 0; i < d; ++i) mean[i] += double(from[v * d + i]) / double(old_vocab);
            for (size_t v = kept; v < vocab_size; ++v)
                for (size_t i = 0; i < d; ++i) to[v * d + i] = T(mean[i] + rng.normal() * config.initializer_range * 0.1);
        }
        weights = bind_transformer_weights(config, layout, parameters.data());
        if (!gradients.empty()) {
            gradients.assign(parameters.size(), T(0));
            enable_gradients();
        }
    }

    bool any_trainable() const { return std::find(trainable.begin(), trainable.end(), 1) != trainable.end(); }
    ParameterGroup<T> parameter_group(const std::string& name) {
        enable_gradients();
        return {name, parameters.data(), gradients.data(), &layout, &trainable};
    }
    void zero_gradients() { std::fill(gradients.begin(), gradients.end(), T(0)); }

    // Embedding lookup: output [count, hidden].
    void embed(T* output, const int32_t* ids, size_t count) const {
        if (stores_bf16()) bf16.embed(output, ids, count, config.vocab_size, config.hidden_size);
        else ops::embedding_forward(output, ids, weights.embed, count, config.vocab_size, config.hidden_size);
    }

    // The float matrices transposed to [in, out] (see StepWeights), built in parallel. Leaves `out` empty
    // (no transposed products) where broadcast_gemm is not compiled in, or for bf16 storage.
    void transpose_weights(StepWeights<T>& out) const {
        std::vector<T> buffer = std::move(out.transposed_storage);  // kept: allocated (and zeroed) by the first step
        out = StepWeights<T>{};
        if (!(ops::kBroadcastGemm && std::is_same_v<T, float>) || stores_bf16()) return;
        const std::vector<uint8_t> selected = multiplied_matrices(ops::broadcast_gemm_max_columns());
        out.transposed_storage = std::move(buffer);
        out.transposed_storage.resize(parameters.size());
        out.transposed = bind_transformer_weights(config, layout, out.transposed_storage.data(), &selected);
        T* storage = out.transposed_storage.data();
        parallel_for(layout.size(), [&](size_t e) {
            if (!selected[e]) return;
            const size_t rows = layout[e].shape[0], columns = layout[e].shape[1];
            MatrixMap<T>(storage + layout[e].offset, columns, rows) =
                ConstMatrixMap<T>(parameters.data() + layout[e].offset, rows, columns).transpose();
        }, 1 << 16);
    }

    // Mixed precision: every multiplied matrix rounded to bf16 (nearest even), as stored [out, in] and transposed
    // [in, out] (see StepWeights), built in parallel; the float copies are left empty. Leaves `out` empty for bf16
    // storage, whose products are bf16 already.
    void round_weights_to_bf16(StepWeights<T>& out) const {
        std::vector<uint16_t> buffer = std::move(out.bf16_storage);  // both kept, as in transpose_weights
        std::vector<uint16_t> transposed_buffer = std::move(out.bf16_transposed_storage);
        out = StepWeights<T>{};
        if (stores_bf16()) return;
        const std::vector<uint8_t> selected = multiplied_matrices(SIZE_MAX);
        out.bf16_storage = std::move(buffer);
        out.bf16_transposed_storage = std::move(transposed_buffer);
        out.bf16_storage.resize(parameters.size());
        out.bf16_transposed_storage.resize(parameters.size());
        out.bf16 = bind_transformer_weights(config, layout, out.bf16_storage.data(), &selected);
        out.bf16_transposed = bind_transformer_weights(config, layout, out.bf16_transposed_storage.data(), &selected);
        uint16_t *rounded = out.bf16_storage.data(), *rounded_transposed = out.bf16_transposed_storage.data();
        parallel_for(layout.size(), [&](size_t e) {
            if (!selected[e]) return;
            const size_t rows = layout[e].shape[0], columns = layout[e].shape[1], offset = layout[e].offset;
            for (size_t i = 0; i < rows * columns; ++i)
                rounded[offset + i] = float_to_bf16(float(parameters[offset + i]));
            MatrixMap<uint16_t>(rounded_transposed + offset, columns, rows) =
                ConstMatrixMap<uint16_t>(rounded + offset, rows, columns).transpose();
        }, 1 << 16);
    }

    // The forward pass. With a cache, keys and values are appended to it and attention also sees the cached
    // positions; without one, the input is a whole sequence. save_for_backward keeps every layer's activations.
    // step: this model's matrices as transpose_weights or round_weights_to_bf16 made them from the current
    // parameters (a trainer passes them during a step): float transposed ones are multiplied in place by
    // broadcast_gemm, bf16 ones by bf16 dot products.
    void forward(const ForwardInput<T>& in, Activations<T>& a, LogitsMode logits_mode, bool save_for_backward,
                 KVCache<T>* cache = nullptr, const StepWeights<T>* step = nullptr) const {
        const TransformerConfig& c = config;
        const size_t B = in.batch, L = in.length, N = B * L, d = c.hidden_size;
        const size_t qw = c.q_width(), kvw = c.kv_width(), ff = c.intermediate_size, half = c.head_dim / 2;
        C3_CHECK(B > 0 && L > 0, ShapeError, "forward needs a non-empty batch, got [", B, ", ", L, "]");
        C3_CHECK((in.ids != nullptr) != (in.embeddings != nullptr), ValueError,
                 "forward takes token ids or input embeddings, exactly one of them");
        C3_CHECK(!(cache && save_for_backward), ValueError, "backward through a KV cache is not supported");
        const size_t past = cache ? cache->length : 0;
        if (cache) {
            C3_CHECK(cache->batch == B, ShapeError, "KV cache holds a batch of ", cache->batch, ", input has ", B);
            C3_CHECK(past + L <= cache->capacity, ValueError, "KV cache is full: ", past, " + ", L, " tokens exceed its ",
                     cache->capacity);
        }
        a.batch = B;
        a.length = L;
        a.key_length = past + L;
        a.saved = save_for_backward;
        a.logits_mode = logits_mode;

        // Mask and positions: position ids count the real tokens before each one, continuing the cache.
        a.mask.assign(N, 1);
        if (in.mask) std::copy(in.mask, in.mask + N, a.mask.begin());
        a.positions.resize(N);
        for (size_t b = 0; b < B; ++b) {
            int64_t next = cache ? cache->next_position[b] : 0;
            for (size_t t = 0; t < L; ++t) {
                const size_t i = b * L + t;
                if (in.positions) next = (a.positions[i] = in.positions[i]) + 1;
                else a.positions[i] = a.mask[i] ? next++ : 0;  // a padding row's position is never seen
            }
            if (cache) cache->next_position[b] = next;
        }
        for (size_t i = 0; i < N; ++i)
            C3_CHECK(a.positions[i] >= 0 && size_t(a.positions[i]) < c.max_position_embeddings, ValueError,
                     "position ", a.positions[i], " is outside the model's ", c.max_position_embeddings,
                     " positions (max_position_embeddings)");

        // Input embeddings.
        T* x = ensure_size(a.input, N * d);
        if (in.ids) {
            a.ids.assign(in.ids, in.ids + N);
            embed(x, in.ids, N);
        } else {
            a.ids.clear();
            std::memcpy(x, in.embeddings, N * d * sizeof(T));
        }
        ensure_size(a.rope_cos, N * half);
        ensure_size(a.rope_sin, N * half);
        ops::rope_tables(a.rope_cos.data(), a.rope_sin.data(), a.positions.data(), N, c.head_dim, c.rope_theta);

        // Key validity: with a cache, the cached mask followed by this input's mask.
        const uint8_t* key_valid = a.mask.data();
        size_t key_stride = L;
        if (cache) {
            for (size_t b = 0; b < B; ++b)
                std::copy(a.mask.begin() + b * L, a.mask.begin() + (b + 1) * L,
                          cache->valid.begin() + b * cache->capacity + past);
            key_valid = cache->valid.data();
            key_stride = cache->capacity;
        }
        ops::AttentionShape shape{B, L, past + L, c.num_heads, c.num_kv_heads, c.head_dim, past,
                                  cache ? cache->capacity * kvw : L * kvw, key_stride};

        a.layers.resize(save_for_backward ? c.num_layers : 1);
        const ForwardMatrices matrices = forward_matrices(step);
        const T* layer_input = x;
        for (size_t l = 0; l < c.num_layers; ++l) {
            const LayerWeights<T>& w = weights.layers[l];  // norms and biases, in either storage
            const LayerMatrices& m = matrices.layers[l];
            LayerActivations<T>& s = a.layers[save_for_backward ? l : 0];
            T* norm1 = ensure_size(s.norm1, N * d);
            T* rstd1 = ensure_size(s.rstd1, N);
            T* q = ensure_size(s.q, N * qw);
            T* k = ensure_size(s.k, N * kvw);
            T* v = ensure_size(s.v, N * kvw);
            T* probs = ensure_size(s.probs, B * c.num_heads * L * (past + L));
            T* attention = ensure_size(s.attention, N * qw);
            T* middle = ensure_size(s.middle, N * d);
            T* norm2 = ensure_size(s.norm2, N * d);
            T* rstd2 = ensure_size(s.rstd2, N);
            T* gate = ensure_size(s.gate, N * ff);
            T* up = ensure_size(s.up, N * ff);
            T* act = ensure_size(s.act, N * ff);
            T* output = ensure_size(s.output, N * d);

            ops::rmsnorm_forward(norm1, rstd1, layer_input, w.input_norm, N, d, c.rms_norm_eps);
            project(q, norm1, m.q, w.q_bias, N, d, qw);
            project(k, norm1, m.k, w.k_bias, N, d, kvw);
            project(v, norm1, m.v, w.v_bias, N, d, kvw);
            ops::rope_forward(q, a.rope_cos.data(), a.rope_sin.data(), N, c.num_heads, c.head_dim, qw);
            ops::rope_forward(k, a.rope_cos.data(), a.rope_sin.data(), N, c.num_kv_heads, c.head_dim, kvw);
            const T* keys = k;
            const T* values = v;
            if (cache) {
                for (size_t b = 0; b < B; ++b) {
                    const size_t at = (b * cache->capacity + past) * kvw;
                    std::memcpy(cache->keys[l].data() + at, k + b * L * kvw, L * kvw * sizeof(T));
                    std::memcpy(cache->values[l].data() + at, v + b * L * kvw, L * kvw * sizeof(T));
                }
                keys = cache->keys[l].data();
                values = cache->values[l].data();
            }
            ops::attention_forward(attention, probs, q, keys, values, key_valid, shape);
            project(middle, attention, m.o, w.o_bias, N, qw, d);
            add_in_place(middle, layer_input, N * d);  // residual
            ops::rmsnorm_forward(norm2, rstd2, middle, w.post_norm, N, d, c.rms_norm_eps);
            project(gate, norm2, m.gate, nullptr, N, d, ff);
            project(up, norm2, m.up, nullptr, N, d, ff);
            ops::swiglu_forward(act, gate, up, N, ff);
            project(output, act, m.down, nullptr, N, ff, d);
            add_in_place(output, middle, N * d);  // residual
            layer_input = output;
        }
        if (cache) cache->length = past + L;

        T* hidden = ensure_size(a.hidden, N * d);
        ops::rmsnorm_forward(hidden, ensure_size(a.rstd_final, N), layer_input, weights.final_norm, N, d,
                             c.rms_norm_eps);
        if (logits_mode == LogitsMode::All) {
            project(ensure_size(a.logits, N * c.vocab_size), hidden, matrices.lm_head, nullptr, N, d, c.vocab_size);
        } else if (logits_mode == LogitsMode::Last) {
            // The last row of each sequence: with left padding, the last real token.
            std::vector<T> last(B * d);
            for (size_t b = 0; b < B; ++b)
                std::memcpy(last.data() + b * d, hidden + (b * L + L - 1) * d, d * sizeof(T));
            StoredMatrix head = matrices.lm_head;
            head.transposed = nullptr;  // B rows: the plain product
            project(ensure_size(a.logits, B * c.vocab_size), last.data(), head, nullptr, B, d, c.vocab_size);
        }
    }

    // Backward from the forward saved in `a` (save_for_backward, LogitsMode::All or None).
    // dlogits [N, vocab] (may be null) and/or dhidden [N, hidden] (gradient on the final-norm output, may be null).
    // Accumulates parameter gradients (unless frozen) and, when dinput is given, writes the gradient of the input
    // embeddings [N, hidden] there (also accumulating). Token-id inputs also accumulate into the embedding table.
    void backward(Activations<T>& a, const T* dlogits, const T* dhidden, T* dinput, bool parameter_gradients,
                  const StepWeights<T>* step = nullptr) {
        if (parameter_gradients) enable_gradients();  // both it and backward_into refuse bf16 storage
        backward_into(a, dlogits, dhidden, dinput, parameter_gradients ? &weight_gradients : nullptr, step);
    }

    // Binds a gradient buffer of this model's layout (for example one replica per thread in data-parallel
    // training); frozen tensors get null pointers, so backward skips their work.
    TransformerWeights<T> bind_gradients(T* buffer) const {
        return bind_transformer_weights(config, layout, buffer, &trainable);
    }

    // backward, accumulating parameter gradients into g (null: none). Does not modify the model, so threads may
    // run it at once on their own activations and gradient buffers. step: the forward's (see forward); with bf16
    // copies, the input gradients dX = dY * W multiply them.
    void backward_into(Activations<T>& a, const T* dlogits, const T* dhidden, T* dinput,
                       const TransformerWeights<T>* g, const StepWeights<T>* step = nullptr) const {
        const TransformerConfig& c = config;
        C3_CHECK(a.saved, ValueError, "backward needs a forward run with save_for_backward");
        require_trainable_storage();
        const size_t B = a.batch, L = a.length, N = B * L, d = c.hidden_size;
        const size_t qw = c.q_width(), kvw = c.kv_width(), ff = c.intermediate_size;
        auto grad = [&](T* TransformerWeights<T>::*field) -> T* { return g ? g->*field : nullptr; };
        static const TransformerWeights<uint16_t> none;
        const TransformerWeights<uint16_t>& bf16_transposed = step ? step->bf16_transposed : none;

        // Gradient on the final hidden states.
        auto zeroed = [](std::vector<T>& buffer, size_t count) {
            buffer.resize(count);
            std::fill(buffer.begin(), buffer.end(), T(0));
            return buffer.data();
        };
        std::vector<T>& dnormed = a.dnormed;
        zeroed(dnormed, N * d);
        if (dhidden) std::copy(dhidden, dhidden + N * d, dnormed.begin());
        if (dlogits) {
            C3_CHECK(a.logits_mode == LogitsMode::All, ValueError, "backward from logits needs LogitsMode::All");
            project_backward(dnormed.data(), grad(&TransformerWeights<T>::lm_head), nullptr, dlogits, a.hidden.data(),
                             ops::backward_operand(weights.lm_head, bf16_transposed.lm_head), N, d, c.vocab_size);
        }
        // dresidual: the gradient flowing along the residual stream.
        std::vector<T>& dresidual = a.dresidual;
        zeroed(dresidual, N * d);
        const T* last_output = c.num_layers ? a.layers[c.num_layers - 1].output.data() : a.input.data();
        ops::rmsnorm_backward(dresidual.data(), grad(&TransformerWeights<T>::final_norm), dnormed.data(), last_output,
                              weights.final_norm, a.rstd_final.data(), N, d);

        std::vector<T>&dact = a.dact, &dgate = a.dgate, &dup = a.dup, &dnorm = a.dnorm, &dattention = a.dattention,
                      &dq = a.dq, &dk = a.dk, &dv = a.dv;
        for (auto [buffer, count] : {std::pair<std::vector<T>*, size_t>{&dact, N * ff}, {&dgate, N * ff}, {&dup, N * ff},
                                     {&dnorm, N * d}, {&dattention, N * qw}, {&dq, N * qw}, {&dk, N * kvw}, {&dv, N * kvw}})
            buffer->resize(count);
        ops::AttentionShape shape{B, L, L, c.num_heads, c.num_kv_heads, c.head_dim, 0, L * kvw, L};
        for (size_t l = c.num_layers; l-- > 0;) {
            const LayerWeights<T>& w = weights.layers[l];
            const LayerWeights<T>* gw = g ? &g->layers[l] : nullptr;
            const LayerActivations<T>& s = a.layers[l];
            const LayerWeights<uint16_t> h = layer_or_null(bf16_transposed, l);
            const T* layer_input = l == 0 ? a.input.data() : a.layers[l - 1].output.data();
            // MLP: output = middle + down(act)
            std::fill(dact.begin(), dact.end(), T(0));
            project_backward(dact.data(), gw ? gw->down_weight : nullptr, nullptr, dresidual.data(), s.act.data(),
                             ops::backward_operand(w.down_weight, h.down_weight), N, ff, d);
            std::fill(dgate.begin(), dgate.end(), T(0));
            std::fill(dup.begin(), dup.end(), T(0));
            ops::swiglu_backward(dgate.data(), dup.data(), dact.data(), s.gate.data(), s.up.data(), N, ff);
            std::fill(dnorm.begin(), dnorm.end(), T(0));
            project_backward(dnorm.data(), gw ? gw->gate_weight : nullptr, nullptr, dgate.data(), s.norm2.data(),
                             ops::backward_operand(w.gate_weight, h.gate_weight), N, d, ff);
            project_backward(dnorm.data(), gw ? gw->up_weight : nullptr, nullptr, dup.data(), s.norm2.data(),
                             ops::backward_operand(w.up_weight, h.up_weight), N, d, ff);
            ops::rmsnorm_backward(dresidual.data(), gw ? gw->post_norm : nullptr, dnorm.data(), s.middle.data(),
                                  w.post_norm, s.rstd2.data(), N, d);
            // Attention: middle = layer_input + o_proj(attention)
            std::fill(dattention.begin(), dattention.end(), T(0));
            project_backward(dattention.data(), gw ? gw->o_weight : nullptr, gw ? gw->o_bias : nullptr,
                             dresidual.data(), s.attention.data(), ops::backward_operand(w.o_weight, h.o_weight), N,
                             qw, d);
            std::fill(dq.begin(), dq.end(), T(0));
            std::fill(dk.begin(), dk.end(), T(0));
            std::fill(dv.begin(), dv.end(), T(0));
            ops::attention_backward(dq.data(), dk.data(), dv.data(), dattention.data(), s.probs.data(), s.q.data(),
                                    s.k.data(), s.v.data(), shape);
            ops::rope_backward(dq.data(), a.rope_cos.data(), a.rope_sin.data(), N, c.num_heads, c.head_dim, qw);
            ops::rope_backward(dk.data(), a.rope_cos.data(), a.rope_sin.data(), N, c.num_kv_heads, c.head_dim, kvw);
            std::fill(dnorm.begin(), dnorm.end(), T(0));
            project_backward(dnorm.data(), gw ? gw->q_weight : nullptr, gw ? gw->q_bias : nullptr, dq.data(),
                             s.norm1.data(), ops::backward_operand(w.q_weight, h.q_weight), N, d, qw);
            project_backward(dnorm.data(), gw ? gw->k_weight : nullptr, gw ? gw->k_bias : nullptr, dk.data(),
                             s.norm1.data(), ops::backward_operand(w.k_weight, h.k_weight), N, d, kvw);
            project_backward(dnorm.data(), gw ? gw->v_weight : nullptr, gw ? gw->v_bias : nullptr, dv.data(),
                             s.norm1.data(), ops::backward_operand(w.v_weight, h.v_weight), N, d, kvw);
            ops::rmsnorm_backward(dresidual.data(), gw ? gw->input_norm : nullptr, dnorm.data(), layer_input,
                                  w.input_norm, s.rstd1.data(), N, d);
        }
        if (dinput) add_in_place(dinput, dresidual.data(), N * d);
        if (g && g->embed && !a.ids.empty()) ops::embedding_backward(g->embed, dresidual.data(), a.ids.data(), N, d);
    }

private:
    // A matrix as a forward product reads it: bf16 [out, in] with bf16 storage or a step's bf16 copy (bf16
    // compute: bf16 dot products); with float storage, the matrix [out, in] and, where the caller passed a step's
    // float copies, the matrix transposed to [in, out].
    // Backward's input gradient reads the matrix [out, in] and, with a step's bf16 copies, its bf16 copy transposed
    // to [in, out] (ops::backward_operand). ops/products.hpp dispatches on either.
    using StoredMatrix = ops::MatrixOperand<T>;
    using BackwardMatrix = ops::MatrixOperand<T>;
    struct LayerMatrices {
        StoredMatrix q, k, v, o, gate, up, down;
    };
    struct ForwardMatrices {
        std::vector<LayerMatrices> layers;
        StoredMatrix lm_head;
    };

    // Layer l of w, or null pointers where w is empty (a step without that kind of copy).
    template <typename U>
    static LayerWeights<U> layer_or_null(const TransformerWeights<U>& w, size_t l) {
        return w.layers.empty() ? LayerWeights<U>{} : w.layers[l];
    }

    // The one place a forward pass chooses between bf16 and float storage (and a step's float or bf16 copies).
    ForwardMatrices forward_matrices(const StepWeights<T>* step) const {
        ForwardMatrices m;
        m.layers.resize(config.num_layers);
        if (stores_bf16()) {
            for (size_t l = 0; l < config.num_layers; ++l) {
                const Bf16LayerWeights& h = bf16.weights.layers[l];
                const bool c = bf16_compute;
                m.layers[l] = {{nullptr, nullptr, h.q_weight, c},    {nullptr, nullptr, h.k_weight, c},
                               {nullptr, nullptr, h.v_weight, c},    {nullptr, nullptr, h.o_weight, c},
                               {nullptr, nullptr, h.gate_weight, c}, {nullptr, nullptr, h.up_weight, c},
                               {nullptr, nullptr, h.down_weight, c}};
            }
            m.lm_head = {nullptr, nullptr, bf16.weights.lm_head, bf16_compute};
            return m;
        }
        static const StepWeights<T> none;
        const StepWeights<T>& copies = step ? *step : none;
        for (size_t l = 0; l < config.num_layers; ++l) {
            const LayerWeights<T>& w = weights.layers[l];
            const LayerWeights<T> t = layer_or_null(copies.transposed, l);
            const LayerWeights<uint16_t> h = layer_or_null(copies.bf16, l);
            m.layers[l] = {{w.q_weight, t.q_weight, h.q_weight, true},
                           {w.k_weight, t.k_weight, h.k_weight, true},
                           {w.v_weight, t.v_weight, h.v_weight, true},
                           {w.o_weight, t.o_weight, h.o_weight, true},
                           {w.gate_weight, t.gate_weight, h.gate_weight, true},
                           {w.up_weight, t.up_weight, h.up_weight, true},
                           {w.down_weight, t.down_weight, h.down_weight, true}};
        }
        m.lm_head = {weights.lm_head, copies.transposed.lm_head, copies.bf16.lm_head, true};
        return m;
    }

    // Layout entries that products multiply, with at most max_outputs rows: the matrices, and the token embedding
    // when it is also the (tied) output head (otherwise it is only looked up).
    std::vector<uint8_t> multiplied_matrices(size_t max_outputs) const {
        std::vector<uint8_t> selected(layout.size(), 0);
        for (size_t e = 0; e < layout.size(); ++e)
            selected[e] = (layout[e].kind == ParameterKind::Matrix ||
                           (layout[e].kind == ParameterKind::Embedding && config.tie_word_embeddings)) &&
                          layout[e].shape[0] <= max_outputs;
        return selected;
    }

    // output [rows, out] = input [rows, in] * matrix^T + bias, by the kernel of the matrix's storage.
    void project(T* output, const T* input, const StoredMatrix& matrix, const T* bias, size_t rows, size_t in,
                 size_t out) const {
        ops::product_forward(output, input, matrix, bias, rows, in, out);
    }

    // linear_backward (dinput [rows, in], dweight [out, in], dbias [out] accumulated; any may be null), with the
    // input gradient dinput += doutput * W on bf16 dot products where the step has a bf16 copy of W.
    static void project_backward(T* dinput, T* dweight, T* dbias, const T* doutput, const T* input,
                                 const BackwardMatrix& matrix, size_t rows, size_t in, size_t out) {
        ops::product_backward(dinput, dweight, dbias, doutput, input, matrix, rows, in, out);
    }

    void require_float_storage(const char* what) const {
        C3_CHECK(!stores_bf16(), ValueError, what, " needs float storage");
    }
    void require_trainable_storage() const {
        C3_CHECK(!stores_bf16(), ValueError, "a model stored in bf16 is for inference only; load it in float to train");
    }

    static void add_in_place(T* target, const T* source, size_t count) {
        VectorMap<T>(target, count) += ConstVectorMap<T>(source, count);
    }
};

}  // namespace c3
