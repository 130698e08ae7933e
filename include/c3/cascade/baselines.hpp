// Baselines that give the decoder the same latent budget as C3 by other means, so that a cascade can be compared
// with them under one API (Cascade<T>::compress / loss / score / reconstruct dispatch on config.method):
//
//   c3               the encoder LLM reads the context and N queries; its hidden states at the queries -> projector
//   mean_pool        N vectors, each the mean of a contiguous window of the context's encoder token embeddings,
//                    -> projector. Only the encoder's embedding table is used (its layers and Q are not).
//   mean_pool_hidden the same windows over the encoder's final hidden states (after its final norm) when it reads
//                    the context alone (no queries, no markers) -> projector. Q is not used.
//   hierarchical     the learned convolutional encoder of Lee et al. (cascade/hierarchical.hpp) on the context's
//                    encoder token embeddings, down to N rows -> projector. The encoder's layers and Q are not used.
//   truncate         the decoder reads the first N context tokens as ordinary tokens in the latent block
//   truncate_last    the same with the last N tokens
//   no_context       the latent block is empty: the decoder alone (the language-model prior, a lower bound)
//   full_context     the latent block holds every context token (an upper bound for continuation)
//
// The decoder's block between <img> and </img> is `block_width` rows wide: N, except 0 (no_context) and the
// context length (full_context, whose left padding is masked out). Every method that compresses reads only each
// context's real (unpadded) tokens: padding never changes a sequence's latents.
#pragma once
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "c3/cascade/hierarchical.hpp"
#include "c3/core/errors.hpp"
#include "c3/model/transformer.hpp"

namespace c3 {

enum class CompressionMethod {
    C3, MeanPool, Truncate, TruncateLast, NoContext, FullContext, MeanPoolHidden, Hierarchical
};

inline const char* method_name(CompressionMethod method) {
    switch (method) {
        case CompressionMethod::C3: return "c3";
        case CompressionMethod::MeanPool: return "mean_pool";
        case CompressionMethod::Truncate: return "truncate";
        case CompressionMethod::TruncateLast: return "truncate_last";
        case CompressionMethod::NoContext: return "no_context";
        case CompressionMethod::FullContext: return "full_context";
        case CompressionMethod::MeanPoolHidden: return "mean_pool_hidden";
        case CompressionMethod::Hierarchical: return "hierarchical";
    }
    return "c3";
}

// Every method, in the order the CLI and reports list them.
inline std::vector<CompressionMethod> all_methods() {
    return {CompressionMethod::C3,           CompressionMethod::MeanPool,  CompressionMethod::MeanPoolHidden,
            CompressionMethod::Hierarchical, CompressionMethod::Truncate,  CompressionMethod::TruncateLast,
            CompressionMethod::NoContext,    CompressionMethod::FullContext};
}

inline std::vector<std::string> method_names() {
    std::vector<std::string> names;
    for (CompressionMethod method : all_methods()) names.push_back(method_name(method));
    return names;
}

inline CompressionMethod method_from_name(const std::string& name) {
    std::string known;
    for (CompressionMethod method : all_methods()) {
        if (name == method_name(method)) return method;
        known += (known.empty() ? "" : ", ") + std::string(method_name(method));
    }
    throw ConfigError("unknown compression method '" + name + "' (" + known + ")");
}

// Methods whose latent block holds the decoder's own token embeddings.
inline bool uses_context_tokens(CompressionMethod method) {
    return method == CompressionMethod::Truncate || method == CompressionMethod::TruncateLast ||
           method == CompressionMethod::FullContext;
}

// Methods whose N latents come through the projector (and so train the encoder side and the bridge).
inline bool uses_projector(CompressionMethod method) {
    return method == CompressionMethod::C3 || method == CompressionMethod::MeanPool ||
           method == CompressionMethod::MeanPoolHidden || method == CompressionMethod::Hierarchical;
}

// Methods that run the encoder's layers (the others read at most its embedding table).
inline bool runs_encoder_layers(CompressionMethod method) {
    return method == CompressionMethod::C3 || method == CompressionMethod::MeanPoolHidden;
}

template <typename T>
class Cascade;
template <typename T>
struct CascadeActivations;

namespace baselines {

// (first real position, count of real tokens) of row b of a left-padded context batch.
inline std::pair<size_t, size_t> real_span(const uint8_t* mask, size_t b, size_t length) {
    size_t real = 0;
    for (size_t t = 0; t < length; ++t) real += !mask || mask[b * length + t];
    return {length - real, real};
}

// Window i of n over `count` tokens starting at `first`: [first + i*count/n, first + (i+1)*count/n).
inline std::pair<size_t, size_t> pool_window(size_t first, size_t count, size_t i, size_t n) {
    return {first + i * count / n, first + (i + 1) * count / n};
}

// Means of N contiguous windows of each context's real rows: rows [B, Lc, d_enc] (embeddings or hidden states) ->
// a.slot_states [B, N, d_enc], with the windows in a.pool_windows.
template <typename T>
void pool_windows_forward(const Cascade<T>& cascade, const T* rows, const uint8_t* context_mask, size_t batch,
                          size_t context_length, CascadeActivations<T>& a) {
    const size_t N = cascade.config.num_latents, de = cascade.config.encoder.hidden_size;
    a.pool_windows.assign(batch * N * 2, 0);
    a.slot_states.assign(batch * N * de, T(0));
    for (size_t b = 0; b < batch; ++b) {
        const auto [first, count] = real_span(context_mask, b, context_length);
        C3_CHECK(count >= N, ValueError, "mean pooling needs at least N = ", N, " context tokens; context ", b,
                 " has ", count);
        for (size_t i = 0; i < N; ++i) {
            const auto [begin, end] = pool_window(first, count, i, N);
            a.pool_windows[(b * N + i) * 2] = begin;
            a.pool_windows[(b * N + i) * 2 + 1] = end;
            T* out = a.slot_states.data() + (b * N + i) * de;
            for (size_t t = begin; t < end; ++t) {
                const T* row = rows + (b * context_length + t) * de;
                for (size_t k = 0; k < de; ++k) out[k] += row[k];
            }
            const T scale = T(1) / T(end - begin);
            for (size_t k = 0; k < de; ++k) out[k] *= scale;
        }
    }
}

// Accumulates drows [B, Lc, d_enc]: each window's rows get its slot's gradient divided by the window's size.
template <typename T>
void pool_windows_backward(const Cascade<T>& cascade, const CascadeActivations<T>& a, const T* dslots, T* drows) {
    const size_t N = cascade.config.num_latents, de = cascade.config.encoder.hidden_size, Lc = a.context_length;
    for (size_t b = 0; b < a.batch; ++b)
        for (size_t i = 0; i < N; ++i) {
            const size_t begin = a.pool_windows[(b * N + i) * 2], end = a.pool_windows[(b * N + i) * 2 + 1];
            const T scale = T(1) / T(end - begin);
            const T* g = dslots + (b * N + i) * de;
            for (size_t t = begin; t < end; ++t) {
                T* row = drows + (b * Lc + t) * de;
                for (size_t k = 0; k < de; ++k) row[k] += g[k] * scale;
            }
        }
}

// Adds drows [B, Lc, d_enc], the gradient on the encoder's input rows, into its embedding table (null: frozen);
// padding rows (a.encoder_mask) are skipped.
template <typename T>
void scatter_to_embeddings(const Cascade<T>& cascade, const CascadeActivations<T>& a, const T* drows, T* dembed) {
    if (!dembed) return;
    const size_t de = cascade.config.encoder.hidden_size, Lc = a.context_length;
    for (size_t b = 0; b < a.batch; ++b) {
        const size_t first = real_span(a.encoder_mask.data(), b, Lc).first;
        for (size_t t = first; t < Lc; ++t) {
            T* row = dembed + size_t(a.encoder_ids[b * Lc + t]) * de;
            const T* g = drows + (b * Lc + t) * de;
            for (size_t k = 0; k < de; ++k) row[k] += g[k];
        }
    }
}

// Mean pooling: contexts [B, Lc] -> a.slot_states [B, N, d_enc]; the caller projects them.
template <typename T>
void mean_pool_forward(const Cascade<T>& cascade, const int32_t* contexts, const uint8_t* context_mask, size_t batch,
                       size_t context_length, CascadeActivations<T>& a) {
    const size_t de = cascade.config.encoder.hidden_size;
    a.encoder_ids.assign(contexts, contexts + batch * context_length);
    a.encoder_input.resize(batch * context_length * de);
    cascade.encoder.embed(a.encoder_input.data(), a.encoder_ids.data(), batch * context_length);
    pool_windows_forward(cascade, a.encoder_input.data(), context_mask, batch, context_length, a);
}

// dslots [B, N, d_enc] -> dembed, the encoder's embedding rows of each window (null: frozen), divided by the
// window's size.
template <typename T>
void mean_pool_backward(const Cascade<T>& cascade, const CascadeActivations<T>& a, const T* dslots, T* dembed) {
    if (!dembed) return;
    const size_t N = cascade.config.num_latents, de = cascade.config.encoder.hidden_size, Lc = a.context_length;
    for (size_t b = 0; b < a.batch; ++b)
        for (size_t i = 0; i < N; ++i) {
            const size_t begin = a.pool_windows[(b * N + i) * 2], end = a.pool_windows[(b * N + i) * 2 + 1];
            const T scale = T(1) / T(end - begin);
            const T* g = dslots + (b * N + i) * de;
            for (size_t t = begin; t < end; ++t) {
                T* row = dembed + size_t(a.encoder_ids[b * Lc + t]) * de;
                for (size_t k = 0; k < de; ++k) row[k] += g[k] * scale;
            }
        }
}

// Mean pooling of hidden states: the encoder reads the contexts alone (left-padded, masked; positions count the
// real tokens, as for C3), and its final hidden states (after the final norm) are pooled over the same windows as
// mean_pool's -> a.slot_states [B, N, d_enc]. step: the encoder's copies of its matrices (null: the plain weights).
template <typename T>
void mean_pool_hidden_forward(const Cascade<T>& cascade, const int32_t* contexts, const uint8_t* context_mask,
                              size_t batch, size_t context_length, CascadeActivations<T>& a, bool save_for_backward,
                              const StepWeights<T>* step) {
    const size_t de = cascade.config.encoder.hidden_size;
    a.encoder_ids.assign(contexts, contexts + batch * context_length);
    a.encoder_mask.assign(batch * context_length, 1);
    if (context_mask) std::memcpy(a.encoder_mask.data(), context_mask, batch * context_length);
    a.encoder_input.resize(batch * context_length * de);
    cascade.encoder.embed(a.encoder_input.data(), a.encoder_ids.data(), batch * context_length);
    ForwardInput<T> in{batch, context_length, nullptr, a.encoder_input.data(), a.encoder_mask.data(), nullptr};
    cascade.encoder.forward(in, a.encoder, LogitsMode::None, save_for_backward, nullptr, step);
    pool_windows_forward(cascade, a.encoder.hidden.data(), context_mask, batch, context_length, a);
}

// dslots [B, N, d_enc] -> the encoder's layers (encoder_gradients; null: frozen, nothing to do) and its embedding
// rows of the real context tokens.
template <typename T>
void mean_pool_hidden_backward(const Cascade<T>& cascade, CascadeActivations<T>& a, const T* dslots,
                               const TransformerWeights<T>* encoder_gradients, const StepWeights<T>* step) {
    if (!encoder_gradients) return;
    const size_t de = cascade.config.encoder.hidden_size, rows = a.batch * a.context_length;
    std::vector<T> dhidden(rows * de, T(0)), dinput(rows * de, T(0));
    pool_windows_backward(cascade, a, dslots, dhidden.data());
    cascade.encoder.backward_into(a.encoder, nullptr, dhidden.data(), dinput.data(), encoder_gradients, step);
    scatter_to_embeddings(cascade, a, dinput.data(), encoder_gradients->embed);
}

// The hierarchical encoder: each context's real token embeddings [count, d_enc] -> N rows, sequence by sequence
// (so that padding never enters a GroupNorm's statistics) -> a.slot_states [B, N, d_enc].
template <typename T>
void hierarchical_forward(const Cascade<T>& cascade, const int32_t* contexts, const uint8_t* context_mask,
                          size_t batch, size_t context_length, CascadeActivations<T>& a) {
    const size_t N = cascade.config.num_latents, de = cascade.config.encoder.hidden_size;
    const auto weights = cascade.bridge_weights();
    a.encoder_ids.assign(contexts, contexts + batch * context_length);
    a.encoder_mask.assign(batch * context_length, 1);
    if (context_mask) std::memcpy(a.encoder_mask.data(), context_mask, batch * context_length);
    a.encoder_input.resize(batch * context_length * de);
    cascade.encoder.embed(a.encoder_input.data(), a.encoder_ids.data(), batch * context_length);
    a.slot_states.assign(batch * N * de, T(0));
    a.hierarchical.resize(batch);
    for (size_t b = 0; b < batch; ++b) {
        const auto [first, count] = real_span(context_mask, b, context_length);
        C3_CHECK(count >= N, ValueError, "the hierarchical encoder needs at least N = ", N, " context tokens; context ",
                 b, " has ", count);
        const size_t depth = hierarchical_depth(count, N);
        C3_CHECK(depth <= weights.blocks.size(), ValueError, "context ", b, " has ", count,
                 " tokens, which take ", depth, " hierarchical blocks to reach N = ", N, "; the cascade has ",
                 weights.blocks.size(), " (sized for the encoder's longest context, ",
                 cascade.config.max_context_length(), " tokens)");
        c3::hierarchical_forward(a.slot_states.data() + b * N * de,
                                 a.encoder_input.data() + (b * context_length + first) * de, count, N, de,
                                 weights.blocks, a.hierarchical[b]);
    }
}

// dslots [B, N, d_enc] -> the blocks' gradients (`gradients`: null tensors where frozen) and the encoder's
// embedding rows of the real context tokens (dembed; null: frozen).
template <typename T>
void hierarchical_backward(const Cascade<T>& cascade, const CascadeActivations<T>& a, const T* dslots,
                           const std::vector<HierarchicalBlockWeights<T>>& gradients, T* dembed) {
    const size_t N = cascade.config.num_latents, de = cascade.config.encoder.hidden_size, Lc = a.context_length;
    bool any_block_trainable = false;
    for (const HierarchicalBlockWeights<T>& g : gradients)
        any_block_trainable |= g.conv1 || g.norm1_weight || g.norm1_bias || g.conv2 || g.norm2_weight || g.norm2_bias;
    if (!dembed && !any_block_trainable) return;
    const auto weights = cascade.bridge_weights();
    std::vector<T> drows;
    for (size_t b = 0; b < a.batch; ++b) {
        const auto [first, count] = real_span(a.encoder_mask.data(), b, Lc);
        drows.assign(count * de, T(0));
        c3::hierarchical_backward(dembed ? drows.data() : nullptr, gradients, dslots + b * N * de, N, de,
                                  weights.blocks, a.hierarchical[b]);
        if (!dembed) continue;
        for (size_t t = 0; t < count; ++t) {
            T* row = dembed + size_t(a.encoder_ids[b * Lc + first + t]) * de;
            const T* g = drows.data() + t * de;
            for (size_t k = 0; k < de; ++k) row[k] += g[k];
        }
    }
}

// Truncation, no context and full context: a.block_ids / a.block_mask [B, W] and a.latents [B, W, d_dec] = the
// decoder's embeddings of the kept tokens.
template <typename T>
void context_tokens_forward(const Cascade<T>& cascade, const int32_t* contexts, const uint8_t* context_mask,
                            size_t batch, size_t context_length, CascadeActivations<T>& a) {
    const CompressionMethod method = cascade.config.method;
    const size_t N = cascade.config.num_latents, dd = cascade.config.decoder.hidden_size;
    const size_t W = method == CompressionMethod::NoContext ? 0
                     : method == CompressionMethod::FullContext ? context_length
                                                                : N;
    a.block_width = W;
    a.block_ids.assign(batch * W, cascade.config.latent_pad_token);
    a.block_mask.assign(batch * W, 1);
    for (size_t b = 0; b < batch; ++b) {
        const auto [first, count] = real_span(context_mask, b, context_length);
        if (method == CompressionMethod::FullContext) {
            for (size_t t = 0; t < context_length; ++t) {
                const bool real = t >= first;
                a.block_ids[b * W + t] = real ? contexts[b * context_length + t] : cascade.config.latent_pad_token;
                a.block_mask[b * W + t] = real;
            }
        } else if (W > 0) {
            C3_CHECK(count >= N, ValueError, "truncation keeps N = ", N, " context tokens; context ", b, " has only ",
                     count);
            const size_t start = method == CompressionMethod::Truncate ? first : context_length - N;
            std::copy(contexts + b * context_length + start, contexts + b * context_length + start + N,
                      a.block_ids.begin() + b * W);
        }
    }
    if (method != CompressionMethod::FullContext) a.block_mask.clear();
    a.latents.resize(batch * W * dd);
    cascade.decoder.embed(a.latents.data(), a.block_ids.data(), batch * W);
}

}  // namespace baselines

}  // namespace c3
