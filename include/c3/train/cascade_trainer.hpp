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

    std::vector<ParameterGroup<T>> parameter_groups() { return cascade.parameter_groups(); }

    using Batch = CascadeBatch;

    StepReport step(const std::vector<Batch>& micro_batches) {
        const auto start = std::chrono::steady_clock::now();
        size_t tokens = 0;
        for (const Batch& m : micro_batches) tokens += m.answer_tokens();
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

    // The same for one batch cut into micro_batches equal parts.
    StepReport step(const Batch& batch, size_t micro_batches) {
        return step(split_micro_batches<Batch>(batch.batch, micro_batches,
                                               [&](size_t begin, size_t size) { return batch.sequences(begin, size); }));
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
            for (const Batch& m : groups[g]) tokens += m.answer_tokens();
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

    double evaluate(const Batch& m) { return mean_loss(cascade, m, false, activations); }

    // The mean answer-token loss of one batch. With gradients, every gradient buffer is zeroed first (frozen parts
    // too, so that they read as exact zeros), then holds d(mean loss) in the trainable parts.
    static double mean_loss(Cascade<T>& model, const Batch& m, bool gradients, CascadeActivations<T>& activations) {
        const size_t tokens = m.answer_tokens();
        C3_CHECK(tokens > 0, ValueError, "the batch has no answer tokens");
        if (gradients) model.zero_gradients();
        const T token_weight = gradients ? T(1.0 / double(tokens)) : T(0);
        return model.loss(m, activations, {gradients, token_weight}) / double(tokens);
    }
};

}  // namespace c3
