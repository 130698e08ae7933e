// Training a cascade: AdamW steps over (context, answer) micro-batches, with any of encoder, decoder, Q and the
// projector frozen. The loss and its backward are Cascade::loss; the optimiser side is Trainer (train/trainer.hpp).
#pragma once
#include <chrono>
#include <cmath>

#include "c3/cascade/cascade.hpp"
#include "c3/train/trainer.hpp"

namespace c3 {

// Trains a cascade on (context, answer) batches with any part frozen.
template <typename T>
class CascadeTrainer {
public:
    Cascade<T>& cascade;
    Trainer<T> trainer;
    CascadeActivations<T> activations;

    CascadeTrainer(Cascade<T>& model, const TrainingOptions& options)
        : cascade(model), trainer(model.parameter_groups(), options) {}

    using Batch = CascadeBatch;

    StepReport step(const std::vector<Batch>& micro_batches) {
        const auto start = std::chrono::steady_clock::now();
        size_t tokens = 0;
        for (const Batch& m : micro_batches)
            for (size_t i = 0; i < m.batch * m.answer_length; ++i) tokens += !m.answer_mask || m.answer_mask[i];
        C3_CHECK(tokens > 0, ValueError, "the batch has no answer tokens");
        trainer.refresh_groups(cascade.parameter_groups());
        trainer.zero_gradients();
        double total = 0;
        for (const Batch& m : micro_batches)
            total += cascade.loss(m, activations, {true, T(1.0 / double(tokens))});
        StepReport report = trainer.apply(total, tokens);
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return report;
    }

    // A weighted sum of mean losses over groups of micro-batches (reconstruction and continuation, say), in one
    // optimiser step: loss = sum_g weights[g] * (sum of group g's token losses / group g's tokens).
    // A group of weight 0 is skipped.
    StepReport step_weighted(const std::vector<std::vector<Batch>>& groups, const std::vector<double>& weights) {
        C3_CHECK(groups.size() == weights.size(), ValueError, groups.size(), " batch groups but ", weights.size(),
                 " weights");
        const auto start = std::chrono::steady_clock::now();
        trainer.refresh_groups(cascade.parameter_groups());
        trainer.zero_gradients();
        double weighted = 0;
        size_t all_tokens = 0;
        for (size_t g = 0; g < groups.size(); ++g) {
            C3_CHECK(std::isfinite(weights[g]) && weights[g] >= 0, ValueError, "weight ", g,
                     " must be finite and >= 0");
            if (weights[g] == 0) continue;
            size_t tokens = 0;
            for (const Batch& m : groups[g])
                for (size_t i = 0; i < m.batch * m.answer_length; ++i) tokens += !m.answer_mask || m.answer_mask[i];
            C3_CHECK(tokens > 0, ValueError, "batch group ", g, " has no answer tokens");
            double total = 0;
            for (const Batch& m : groups[g])
                total += cascade.loss(m, activations, {true, T(weights[g] / double(tokens))});
            weighted += weights[g] * total / double(tokens);
            all_tokens += tokens;
        }
        C3_CHECK(all_tokens > 0, ValueError, "every weight is 0");
        // apply() reports loss_sum / tokens: pass the weighted mean scaled back by the token count.
        StepReport report = trainer.apply(weighted * double(all_tokens), all_tokens);
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return report;
    }

    double evaluate(const Batch& m) {
        size_t tokens = 0;
        CascadeLossOptions<T> options;
        options.token_count = &tokens;
        const double total = cascade.loss(m, activations, options);
        C3_CHECK(tokens > 0, ValueError, "the batch has no answer tokens");
        return total / double(tokens);
    }
};

}  // namespace c3
