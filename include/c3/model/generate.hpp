// Generation with the KV cache: one prefill over the prompt (token ids or input embeddings), then one
// single-token step per new token for the whole batch. Greedy or sampled, with stop tokens, a length limit and
// the official C3 decoder's no_repeat_ngram_size.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "c3/core/rng.hpp"
#include "c3/model/transformer.hpp"

namespace c3 {

struct GenerationOptions {
    size_t max_new_tokens = 64;
    std::vector<int32_t> stop_tokens;  // a row ends after emitting one of these (it is kept in the output)
    bool sample = false;               // false: greedy (argmax)
    double temperature = 1.0;
    size_t top_k = 0;       // 0: no top-k cut
    double top_p = 1.0;     // 1: no nucleus cut
    size_t no_repeat_ngram_size = 0;
    uint64_t seed = 0;
    int32_t pad_token = 0;  // fills a row after it has stopped

    void validate() const {
        C3_CHECK(temperature > 0 && std::isfinite(temperature), ValueError, "temperature must be positive, got ",
                 temperature);
        C3_CHECK(top_p > 0 && top_p <= 1, ValueError, "top_p must lie in (0, 1], got ", top_p);
        C3_CHECK(pad_token >= 0, ValueError, "pad_token must be a token id, got ", pad_token);
    }
};

struct GenerationResult {
    size_t batch = 0, steps = 0;
    std::vector<int32_t> tokens;  // [batch, steps]: generated ids, pad_token after a row stops
    std::vector<size_t> lengths;  // [batch]: tokens generated per row, the stop token included
};

namespace detail {

// Bans every token that would complete an n-gram already present in history (as transformers does).
template <typename T>
void ban_repeated_ngrams(T* logits, size_t vocab, const std::vector<int32_t>& history, size_t n) {
    if (n == 0 || history.size() + 1 < n) return;
    const size_t prefix_start = history.size() + 1 - n;  // the last n-1 tokens
    for (size_t start = 0; start + n <= history.size(); ++start) {
        bool same = true;
        for (size_t j = 0; j + 1 < n && same; ++j) same = history[start + j] == history[prefix_start + j];
        const int32_t banned = history[start + n - 1];
        if (same && banned >= 0 && size_t(banned) < vocab) logits[banned] = -std::numeric_limits<T>::infinity();
    }
}

template <typename T>
int32_t choose_token(const T* logits, size_t vocab, const GenerationOptions& options, Rng& rng) {
    if (!options.sample) return int32_t(std::max_element(logits, logits + vocab) - logits);
    std::vector<size_t> order(vocab);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return logits[x] > logits[y]; });
    size_t keep = options.top_k > 0 ? std::min(options.top_k, vocab) : vocab;
    std::vector<double> weights(keep);
    const double top = double(logits[order[0]]), temperature = std::max(options.temperature, 1e-6);
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += weights[i] = std::exp((double(logits[order[i]]) - top) / temperature);
    if (options.top_p < 1.0) {
        double cumulative = 0;
        for (size_t i = 0; i < keep; ++i) {
            cumulative += weights[i] / total;
            if (cumulative >= options.top_p) {
                keep = i + 1;
                break;
            }
        }
        total = std::accumulate(weights.begin(), weights.begin() + keep, 0.0);
    }
    double target = rng.uniform() * total;
    for (size_t i = 0; i < keep; ++i)
        if ((target -= weights[i]) <= 0) return int32_t(order[i]);
    return int32_t(order[keep - 1]);
}

}  // namespace detail

// prompt: ids or embeddings, left-padded so that every row's last token sits at the end.
// prompt_history (optional, [batch][...]) gives the token ids the n-gram rule sees before the generated ones.
template <typename T>
GenerationResult generate(const Transformer<T>& model, const ForwardInput<T>& prompt, const GenerationOptions& options,
                          const std::vector<std::vector<int32_t>>* prompt_history = nullptr) {
    const size_t B = prompt.batch, vocab = model.config.vocab_size;
    options.validate();
    C3_CHECK(prompt.length <= model.config.max_position_embeddings &&
                 options.max_new_tokens <= model.config.max_position_embeddings - prompt.length,
             ValueError,
             "prompt of ", prompt.length, " tokens plus ", options.max_new_tokens,
             " new tokens exceeds the model's max_position_embeddings of ", model.config.max_position_embeddings);
    KVCache<T> cache;
    cache.reset(model.config, B, prompt.length + options.max_new_tokens);
    Activations<T> activations;
    model.forward(prompt, activations, LogitsMode::Last, false, &cache);

    std::vector<std::vector<int32_t>> history(B);
    for (size_t b = 0; b < B; ++b) {
        if (prompt_history) history[b] = prompt_history->at(b);
        else if (prompt.ids)
            for (size_t t = 0; t < prompt.length; ++t)
                if (!prompt.mask || prompt.mask[b * prompt.length + t]) history[b].push_back(prompt.ids[b * prompt.length + t]);
    }
    std::vector<Rng> rngs;
    for (size_t b = 0; b < B; ++b) rngs.emplace_back(options.seed * 1000003ull + b);

    GenerationResult result;
    result.batch = B;
    result.lengths.assign(B, 0);
    std::vector<int32_t> step_tokens(B), column(B);
    std::vector<bool> done(B, false);
    std::vector<std::vector<int32_t>> rows(B);
    for (size_t step = 0; step < options.max_new_tokens; ++step) {
        for (size_t b = 0; b < B; ++b) {
            if (done[b]) {
                step_tokens[b] = options.pad_token;
                continue;
            }
            T* logits = activations.logits.data() + b * vocab;
            detail::ban_repeated_ngrams(logits, vocab, history[b], options.no_repeat_ngram_size);
            const int32_t token = detail::choose_token(logits, vocab, options, rngs[b]);
            step_tokens[b] = token;
            history[b].push_back(token);
            ++result.lengths[b];
            if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end())
                done[b] = true;
        }
        for (size_t b = 0; b < B; ++b) rows[b].push_back(step_tokens[b]);
        result.steps = step + 1;
        if (std::all_of(done.begin(), done.end(), [](bool x) { return x; }) || step + 1 == options.max_new_tokens) break;
        ForwardInput<T> next;
        next.batch = B;
        next.length = 1;
        next.ids = step_tokens.data();
        model.forward(next, activations, LogitsMode::Last, false, &cache);
    }
    result.tokens.resize(B * result.steps);
    for (size_t b = 0; b < B; ++b) std::copy(rows[b].begin(), rows[b].end(), result.tokens.begin() + b * result.steps);
    return result;
}

}  // namespace c3
