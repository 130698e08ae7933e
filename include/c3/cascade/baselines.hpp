// Baselines that give the decoder the same latent budget as C3 by other means, so that a cascade can be compared
// with them under one API (Cascade<T>::compress / loss / score / reconstruct dispatch on config.method):
//
//   c3            the encoder LLM reads the context and N queries; its hidden states at the queries -> projector
//   mean_pool     N vectors, each the mean of a contiguous window of the context's encoder token embeddings,
//                 -> projector. Only the encoder's embedding table is used (its layers and Q are not).
//   truncate      the decoder reads the first N context tokens as ordinary tokens in the latent block
//   truncate_last the same with the last N tokens
//   no_context    the latent block is empty: the decoder alone (the language-model prior, a lower bound)
//   full_context  the latent block holds every context token (an upper bound for continuation)
//
// The decoder's block between <img> and </img> is `block_width` rows wide: N, except 0 (no_context) and the
// context length (full_context, whose left padding is masked out).
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "c3/core/errors.hpp"

namespace c3 {

enum class CompressionMethod { C3, MeanPool, Truncate, TruncateLast, NoContext, FullContext };

inline const char* method_name(CompressionMethod method) {
    switch (method) {
        case CompressionMethod::C3: return "c3";
        case CompressionMethod::MeanPool: return "mean_pool";
        case CompressionMethod::Truncate: return "truncate";
        case CompressionMethod::TruncateLast: return "truncate_last";
        case CompressionMethod::NoContext: return "no_context";
        case CompressionMethod::FullContext: return "full_context";
    }
    return "c3";
}

inline std::vector<std::string> method_names() {
    return {"c3", "mean_pool", "truncate", "truncate_last", "no_context", "full_context"};
}

inline CompressionMethod method_from_name(const std::string& name) {
    for (CompressionMethod method : {CompressionMethod::C3, CompressionMethod::MeanPool, CompressionMethod::Truncate,
                                     CompressionMethod::TruncateLast, CompressionMethod::NoContext,
                                     CompressionMethod::FullContext})
        if (name == method_name(method)) return method;
    throw ConfigError("unknown compression method '" + name +
                      "' (c3, mean_pool, truncate, truncate_last, no_context, full_context)");
}

// Methods whose latent block holds the decoder's own token embeddings.
inline bool uses_context_tokens(CompressionMethod method) {
    return method == CompressionMethod::Truncate || method == CompressionMethod::TruncateLast ||
           method == CompressionMethod::FullContext;
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

// Mean pooling: contexts [B, Lc] -> a.slot_states [B, N, d_enc]; the caller projects them.
template <typename T>
void mean_pool_forward(const Cascade<T>& cascade, const int32_t* contexts, const uint8_t* context_mask, size_t batch,
                       size_t context_length, CascadeActivations<T>& a) {
    const size_t N = cascade.config.num_latents, de = cascade.config.encoder.hidden_size;
    a.encoder_ids.assign(contexts, contexts + batch * context_length);
    a.encoder_input.resize(batch * context_length * de);
    cascade.encoder.embed(a.encoder_input.data(), a.encoder_ids.data(), batch * context_length);
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
                const T* row = a.encoder_input.data() + (b * context_length + t) * de;
                for (size_t k = 0; k < de; ++k) out[k] += row[k];
            }
            const T scale = T(1) / T(end - begin);
            for (size_t k = 0; k < de; ++k) out[k] *= scale;
        }
    }
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
