// Training: a loss that accumulates gradients into parameter groups, then one optimiser step with clipping,
// a schedule and a guard against NaN. Gradient accumulation weights every token equally across micro-batches,
// so k micro-batches give the same update as one batch of all their rows.
#pragma once
#include <chrono>

#include "c3/model/transformer.hpp"
#include "c3/ops/cross_entropy.hpp"
#include "c3/train/adamw.hpp"

namespace c3 {

struct TrainingOptions {
    AdamWConfig adamw;
    size_t warmup_steps = 0;
    size_t total_steps = 1000;
    double min_lr_ratio = 0.0;
    double max_grad_norm = 1.0;  // 0 or less: no clipping
};

struct StepReport {
    size_t step = 0;  // optimiser steps done, this one included
    double loss = 0;  // mean over the counted tokens
    double gradient_norm = 0;
    double learning_rate = 0;
    size_t tokens = 0;
    double seconds = 0;
};

inline size_t count_targets(const int32_t* targets, size_t count) {
    size_t counted = 0;
    for (size_t i = 0; i < count; ++i) counted += targets[i] != ops::kIgnoreIndex;
    return counted;
}

// Mean-free language-model loss: returns the sum of token losses over counted targets. With backward, the
// gradient of token_weight * (that sum) is accumulated into the model (and into dinput when given).
// targets [batch, length] are aligned with the rows: targets[t] is the token to predict after row t.
template <typename T>
double language_model_loss(Transformer<T>& model, const ForwardInput<T>& input, const int32_t* targets,
                           bool backward, T token_weight, Activations<T>& activations, T* dinput = nullptr,
                           std::vector<T>* row_losses = nullptr) {
    const size_t N = input.batch * input.length, V = model.config.vocab_size;
    model.forward(input, activations, LogitsMode::All, backward);
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
    if (backward && (model.any_trainable() || dinput))
        model.backward(activations, activations.logits.data(), nullptr, dinput, model.any_trainable());
    if (row_losses) *row_losses = std::move(losses);
    return total;
}

// The optimiser side of training, shared by language models and cascades.
template <typename T>
class Trainer {
public:
    std::vector<ParameterGroup<T>> groups;
    AdamW<T> optimizer;
    CosineSchedule schedule;
    TrainingOptions options;

    Trainer(std::vector<ParameterGroup<T>> parameter_groups, const TrainingOptions& training_options)
        : groups(std::move(parameter_groups)), options(training_options) {
        optimizer.config = options.adamw;
        schedule = {options.adamw.learning_rate, options.warmup_steps, options.total_steps, options.min_lr_ratio};
    }

    void zero_gradients() {
        for (auto& group : groups) std::fill(group.gradients, group.gradients + group.size(), T(0));
    }

    // Checks, clips and applies the accumulated gradients. A non-finite loss or gradient stops with a
    // ValueError before any parameter changes, so the model keeps its last good state.
    StepReport apply(double loss_sum, size_t tokens) {
        StepReport report;
        report.tokens = tokens;
        report.loss = tokens ? loss_sum / double(tokens) : 0.0;
        C3_CHECK(std::isfinite(report.loss), ValueError, "non-finite loss (", report.loss, ") at step ",
                 optimizer.step + 1, "; parameters were left as they were before this step");
        double total = 0;
        for (const auto& group : groups) total += gradient_sum_of_squares(group);
        C3_CHECK(std::isfinite(total), ValueError, "non-finite gradient at step ", optimizer.step + 1,
                 "; parameters were left as they were before this step");
        report.gradient_norm = clip_gradient_norm(groups, options.max_grad_norm);
        report.learning_rate = schedule.at(optimizer.step);
        optimizer.update(groups, report.learning_rate);
        report.step = optimizer.step;
        return report;
    }
};

// Trains one transformer as a language model on batches of token ids.
template <typename T>
class LanguageModelTrainer {
public:
    Transformer<T>& model;
    Trainer<T> trainer;
    Activations<T> activations;

    LanguageModelTrainer(Transformer<T>& language_model, const TrainingOptions& options)
        : model(language_model), trainer({language_model.parameter_group("model")}, options) {}

    // One optimiser step over micro-batches (each [batch, length] ids, mask and targets).
    StepReport step(const std::vector<ForwardInput<T>>& micro_batches, const std::vector<const int32_t*>& targets) {
        const auto start = std::chrono::steady_clock::now();
        size_t tokens = 0;
        for (size_t m = 0; m < micro_batches.size(); ++m)
            tokens += count_targets(targets[m], micro_batches[m].batch * micro_batches[m].length);
        C3_CHECK(tokens > 0, ValueError, "the batch has no target tokens (all targets are the ignore index)");
        trainer.zero_gradients();
        double loss_sum = 0;
        for (size_t m = 0; m < micro_batches.size(); ++m)
            loss_sum += language_model_loss(model, micro_batches[m], targets[m], true, T(1.0 / double(tokens)),
                                            activations);
        StepReport report = trainer.apply(loss_sum, tokens);
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return report;
    }

    // Mean loss without gradients.
    double evaluate(const ForwardInput<T>& batch, const int32_t* targets) {
        const size_t tokens = count_targets(targets, batch.batch * batch.length);
        C3_CHECK(tokens > 0, ValueError, "the batch has no target tokens");
        return language_model_loss(model, batch, targets, false, T(0), activations) / double(tokens);
    }
};

}  // namespace c3
