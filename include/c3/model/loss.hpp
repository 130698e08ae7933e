// The language-model loss: next-token cross-entropy over a transformer's logits, summed over the counted
// targets (those that are not ops::kIgnoreIndex), with its backward into the model's gradients and, when asked,
// into the input embeddings. Training (train/) and the cascade (cascade/) both build on it.
#pragma once
#include <vector>

#include "c3/model/transformer.hpp"
#include "c3/ops/cross_entropy.hpp"

namespace c3 {

// Targets for next-token prediction: targets[t] = ids[t + 1] where both are real tokens (mask 1, or no mask),
// else ops::kIgnoreIndex. ids and mask [batch, length]; mask may be empty.
inline std::vector<int32_t> shifted_targets(const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask,
                                            size_t batch, size_t length) {
    std::vector<int32_t> targets(ids.size(), ops::kIgnoreIndex);
    for (size_t b = 0; b < batch; ++b)
        for (size_t t = 0; t + 1 < length; ++t) {
            const size_t i = b * length + t;
            if (mask.empty() || (mask[i] && mask[i + 1])) targets[i] = ids[i + 1];
        }
    return targets;
}

inline size_t count_targets(const int32_t* targets, size_t count) {
    size_t counted = 0;
    for (size_t i = 0; i < count; ++i) counted += targets[i] != ops::kIgnoreIndex;
    return counted;
}

// Tokens that a mask marks real (nonzero) among `count`; a null mask marks all of them. The trainers count
// answer tokens with it.
inline size_t count_real_tokens(const uint8_t* mask, size_t count) {
    if (!mask) return count;
    size_t counted = 0;
    for (size_t i = 0; i < count; ++i) counted += mask[i] != 0;
    return counted;
}

// Mean-free language-model loss: returns the sum of token losses over counted targets. With backward, the
// gradient of token_weight * (that sum) is accumulated into `gradients` (a buffer of the model's layout; null:
// none) and into dinput when given. Does not modify the model, so threads may run it at once on their own
// activations and gradient buffers.
// targets [batch, length] are aligned with the rows: targets[t] is the token to predict after row t.
// step: copies of the model's current matrices for the products (StepWeights), or null (see Transformer::forward).
template <typename T>
double language_model_loss_into(const Transformer<T>& model, const ForwardInput<T>& input, const int32_t* targets,
                                bool backward, T token_weight, Activations<T>& activations,
                                const TransformerWeights<T>* gradients, T* dinput = nullptr,
                                std::vector<T>* row_losses = nullptr,
                                const StepWeights<T>* step = nullptr) {
    const size_t N = input.batch * input.length, V = model.config.vocab_size;
    model.forward(input, activations, LogitsMode::All, backward, nullptr, step);
    std::vector<T> losses(N);
    if (backward) {
        const std::vector<T> weights(N, token_weight);
        ops::cross_entropy_loss_and_gradient_in_place(losses.data(), activations.logits.data(), targets,
                                                      weights.data(), N, V);
    } else {
        ops::cross_entropy_forward(losses.data(), activations.logits.data(), targets, N, V);
    }
    double total = 0;
    for (size_t i = 0; i < N; ++i) total += double(losses[i]);
    if (backward && (gradients || dinput))
        model.backward_into(activations, activations.logits.data(), nullptr, dinput, gradients, step);
    if (row_losses) *row_losses = std::move(losses);
    return total;
}

// The same, accumulating into the model's own gradient buffer (its trainable tensors).
template <typename T>
double language_model_loss(Transformer<T>& model, const ForwardInput<T>& input, const int32_t* targets,
                           bool backward, T token_weight, Activations<T>& activations, T* dinput = nullptr,
                           std::vector<T>* row_losses = nullptr,
                           const StepWeights<T>* step = nullptr) {
    const bool parameter_gradients = backward && model.any_trainable();
    if (parameter_gradients) model.enable_gradients();
    return language_model_loss_into(model, input, targets, backward, token_weight, activations,
                                    parameter_gradients ? &model.weight_gradients : nullptr, dinput, row_losses,
                                    step);
}

// The mean loss over the counted targets; the model's gradient buffer is zeroed, then holds d(mean loss).
template <typename T>
double language_model_gradients(Transformer<T>& model, const ForwardInput<T>& input, const int32_t* targets,
                                Activations<T>& activations) {
    const size_t tokens = count_targets(targets, input.batch * input.length);
    C3_CHECK(tokens > 0, ValueError, "the batch has no target tokens");
    model.enable_gradients();
    model.zero_gradients();
    return language_model_loss(model, input, targets, true, T(1.0 / double(tokens)), activations) / double(tokens);
}

}  // namespace c3
