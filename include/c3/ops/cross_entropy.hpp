// Softmax cross-entropy over the vocabulary, with an ignore index (the loss counts answer tokens only).
#pragma once
#include <cmath>
#include <limits>

#include "c3/core/parallel.hpp"
#include "c3/ops/vector_math.hpp"

namespace c3::ops {

constexpr int32_t kIgnoreIndex = -100;

// The number of targets that count (not the ignore index); any other target outside [0, vocab) is an error.
inline size_t count_valid_targets(const int32_t* targets, size_t rows, size_t vocab) {
    size_t counted = 0;
    for (size_t r = 0; r < rows; ++r) {
        if (targets[r] == kIgnoreIndex) continue;
        C3_CHECK(targets[r] >= 0 && size_t(targets[r]) < vocab, ValueError, "target id ", targets[r], " at row ", r,
                 " is outside the vocabulary of ", vocab);
        ++counted;
    }
    return counted;
}

// losses [rows] = logsumexp(logits[r]) - logits[r, target[r]]; 0 where target is kIgnoreIndex.
// Returns the number of counted rows. Targets outside [0, vocab) other than the ignore index are errors.
template <typename T>
size_t cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, size_t rows, size_t vocab) {
    const size_t counted = count_valid_targets(targets, rows, vocab);
    parallel_for(rows, [&](size_t r) {
        if (targets[r] == kIgnoreIndex) {
            losses[r] = 0;
            return;
        }
        const T* x = logits + r * vocab;
        const T max_logit = lane_max(x, vocab);
        const T total = exp_shifted_sum(x, vocab, max_logit);
        losses[r] = std::log(total) + max_logit - x[targets[r]];
    }, vocab * 8);
    return counted;
}

// dlogits [rows, vocab] += weight[r] * (softmax(logits[r]) - onehot(target[r])); ignored rows get nothing.
// For a mean loss over n counted rows, weight is dloss / n for every row.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, const T* row_weights, size_t rows,
                            size_t vocab) {
    parallel_for(rows, [&](size_t r) {
        if (targets[r] == kIgnoreIndex) return;
        const T* x = logits + r * vocab;
        T* dx = dlogits + r * vocab;
        const T max_logit = lane_max(x, vocab);
        const T total = exp_shifted_sum(x, vocab, max_logit);
        const T w = row_weights[r], inverse = T(1) / total;
        for (size_t i = 0; i < vocab; ++i) dx[i] += w * exp_fast(x[i] - max_logit) * inverse;
        dx[targets[r]] -= w;
    }, vocab * 8);
}

}  // namespace c3::ops

namespace c3::ops {

// In place: logits [rows, vocab] become weight[r] * (softmax - onehot(target)), the gradient of the weighted
// loss; ignored rows become zero. Saves a second [rows, vocab] buffer, which matters for 150k vocabularies.
template <typename T>
void cross_entropy_gradient_in_place(T* logits, const int32_t* targets, const T* row_weights, size_t rows, size_t vocab) {
    parallel_for(rows, [&](size_t r) {
        T* x = logits + r * vocab;
        if (targets[r] == kIgnoreIndex) {
            std::fill(x, x + vocab, T(0));
            return;
        }
        const T max_logit = lane_max(x, vocab);
        const T total = exp_shifted(x, x, vocab, max_logit);
        const T scale = row_weights[r] / total;
        for (size_t i = 0; i < vocab; ++i) x[i] *= scale;
        x[targets[r]] -= row_weights[r];
    }, vocab * 8);
}

}  // namespace c3::ops

namespace c3::ops {

// Both at once, computing each exponential once: losses [rows] as cross_entropy_forward, and logits turned in
// place into the gradient as cross_entropy_gradient_in_place. Returns the number of counted rows.
template <typename T>
size_t cross_entropy_loss_and_gradient_in_place(T* losses, T* logits, const int32_t* targets, const T* row_weights,
                                                size_t rows, size_t vocab) {
    const size_t counted = count_valid_targets(targets, rows, vocab);
    parallel_for(rows, [&](size_t r) {
        T* x = logits + r * vocab;
        if (targets[r] == kIgnoreIndex) {
            losses[r] = 0;
            std::fill(x, x + vocab, T(0));
            return;
        }
        const T max_logit = lane_max(x, vocab);
        const T target_logit = x[targets[r]];
        const T total = exp_shifted(x, x, vocab, max_logit);
        losses[r] = std::log(total) + max_logit - target_logit;
        const T scale = row_weights[r] / total;
        for (size_t i = 0; i < vocab; ++i) x[i] *= scale;
        x[targets[r]] -= row_weights[r];
    }, vocab * 8);
    return counted;
}

}  // namespace c3::ops
