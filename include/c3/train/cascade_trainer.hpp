// Training a cascade: AdamW steps over (context, answer) micro-batches, with any of encoder, decoder, Q and the
// projector frozen. The loss and its backward are Cascade::loss_into; the optimiser side is Trainer
// (train/trainer.hpp). As in LanguageModelTrainer, a step either runs its micro-batches one after another (the
// products split across threads) or gives each share of every micro-batch's sequences to a thread (data parallel).
#pragma once
#include <algorithm>
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

    // compute_dtype "auto" is chosen at the decoder's shape, the larger model in every cascade of the paper.
    CascadeTrainer(Cascade<T>& model, const TrainingOptions& options)
        : cascade(model),
          trainer(model.parameter_groups(), resolve_compute(options, model.config.decoder.hidden_size,
                                                            model.config.decoder.intermediate_size)) {}

    std::vector<ParameterGroup<T>> parameter_groups() { return cascade.parameter_groups(); }

    using Batch = CascadeBatch;

    StepReport step(const std::vector<Batch>& micro_batches) {
        const auto start = std::chrono::steady_clock::now();
        size_t tokens = 0;
        for (const Batch& m : micro_batches) tokens += m.answer_tokens();
        C3_CHECK(tokens > 0, ValueError, "the batch has no answer tokens");
        trainer.refresh_groups(cascade.parameter_groups());
        trainer.zero_gradients();
        const double total = accumulate({&micro_batches}, {T(1.0 / double(tokens))})[0];
        StepReport report = trainer.apply(total, tokens);
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        report.data_parallel_shares = last_shares;
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
        std::vector<const std::vector<Batch>*> counted;
        std::vector<T> token_weights;
        std::vector<size_t> group_tokens;
        for (size_t g = 0; g < groups.size(); ++g) {
            C3_CHECK(std::isfinite(weights[g]) && weights[g] >= 0, ValueError, "weight ", g,
                     " must be finite and >= 0");
            if (weights[g] == 0) continue;
            size_t tokens = 0;
            for (const Batch& m : groups[g]) tokens += m.answer_tokens();
            C3_CHECK(tokens > 0, ValueError, "batch group ", g, " has no answer tokens");
            counted.push_back(&groups[g]);
            token_weights.push_back(T(weights[g] / double(tokens)));
            group_tokens.push_back(tokens);
        }
        C3_CHECK(!counted.empty(), ValueError, "every weight is 0");
        trainer.refresh_groups(cascade.parameter_groups());
        trainer.zero_gradients();
        const std::vector<double> totals = accumulate(counted, token_weights);
        double weighted = 0;
        size_t all_tokens = 0;
        for (size_t g = 0, k = 0; g < groups.size(); ++g) {
            if (weights[g] == 0) continue;
            weighted += weights[g] * totals[k] / double(group_tokens[k]);
            all_tokens += group_tokens[k++];
        }
        // apply() reports loss_sum / tokens: pass the weighted mean scaled back by the token count.
        StepReport report = trainer.apply(weighted * double(all_tokens), all_tokens);
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        report.data_parallel_shares = last_shares;
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

    // Shares that a step over these micro-batches runs in (TrainingOptions::data_parallel_shares; without a fixed
    // count, 1 means one after another, the products split across threads instead).
    size_t data_parallel_shares(const std::vector<Batch>& micro_batches) const {
        return std::max<size_t>(shares_of({&micro_batches}), 1);
    }

private:
    // One thread's gradient buffers in each part's layout (empty for a part with nothing to train).
    struct ReplicaGradients {
        std::vector<T> encoder, decoder, bridge;
    };
    std::vector<CascadeActivations<T>> replica_activations;  // shares 1.. (share 0 uses `activations`)
    std::vector<ReplicaGradients> replica_gradients;         // shares 1.. (share 0 uses the cascade's)
    StepWeights<T> encoder_step_weights, decoder_step_weights;  // rebuilt by every step
    size_t last_shares = 1;                                    // of the latest step, for its report (at least 1)

    // Shares of a step over these groups of micro-batches (0: none, one after another; a fixed count runs in
    // shares even when it is 1).
    size_t shares_of(const std::vector<const std::vector<Batch>*>& groups) const {
        const bool anything_trainable =
            cascade.encoder.any_trainable() || cascade.decoder.any_trainable() || cascade.any_bridge_trainable();
        if (!anything_trainable) return 0;
        if (trainer.options.data_parallel_shares) return trainer.options.data_parallel_shares;
        const size_t threads = size_t(num_threads());
        if (!trainer.options.data_parallel || threads <= 1) return 0;
        for (const std::vector<Batch>* group : groups)
            for (const Batch& m : *group)
                if (m.batch < threads) return 0;
        return threads;
    }

    // The cascade's own gradient buffers (filled in by parameter_groups); null for a part with nothing to train.
    CascadeGradients<T> own_gradients() {
        return {cascade.encoder.any_trainable() ? &cascade.encoder.weight_gradients : nullptr,
                cascade.decoder.any_trainable() ? &cascade.decoder.weight_gradients : nullptr,
                cascade.bridge_gradients.data()};
    }

    // Accumulates token_weights[g] * d(loss sum) of every micro-batch of groups[g] into the cascade's gradients
    // and returns each group's loss sum.
    std::vector<double> accumulate(const std::vector<const std::vector<Batch>*>& groups,
                                   const std::vector<T>& token_weights) {
        // Mean pooling, the hierarchical encoder and the token methods run no encoder layer.
        const TrainingOptions& options = trainer.options;
        const CascadeStepWeights<T> copies{
            runs_encoder_layers(cascade.config.method)
                ? take_step_weights(cascade.encoder, options, encoder_step_weights)
                : nullptr,
            take_step_weights(cascade.decoder, options, decoder_step_weights)};
        const size_t shares = shares_of(groups);
        last_shares = std::max<size_t>(shares, 1);
        if (shares) return data_parallel_loss(groups, token_weights, shares, copies);
        std::vector<double> totals(groups.size(), 0.0);
        const CascadeGradients<T> gradients = own_gradients();
        for (size_t g = 0; g < groups.size(); ++g)
            for (const Batch& m : *groups[g])
                totals[g] += cascade.loss_into(m, activations, {true, token_weights[g]}, gradients, copies);
        return totals;
    }

    // Share t takes the t-th part of every micro-batch's sequences and accumulates its gradients into its own
    // buffers (share 0: the cascade's); the buffers are then summed in share order, so results are reproducible
    // for a given number of shares, whatever the thread count. TrainingOptions::sequences_per_pass, when set,
    // runs each share in passes of that many sequences (0: one pass; the automatic choice is measured for
    // language models only).
    std::vector<double> data_parallel_loss(const std::vector<const std::vector<Batch>*>& groups,
                                           const std::vector<T>& token_weights, size_t shares,
                                           const CascadeStepWeights<T>& copies) {
        Transformer<T>& encoder = cascade.encoder;
        Transformer<T>& decoder = cascade.decoder;
        // The token methods use neither the encoder nor the bridge: no buffers for them.
        const bool compresses = uses_projector(cascade.config.method);
        const bool train_encoder = compresses && encoder.any_trainable(), train_decoder = decoder.any_trainable();
        const bool train_bridge = compresses && cascade.any_bridge_trainable();
        replica_activations.resize(shares - 1);
        replica_gradients.resize(shares - 1);
        std::vector<std::vector<double>> losses(shares, std::vector<double>(groups.size(), 0.0));
        const CascadeGradients<T> own = own_gradients();
        // A share with no sequence in any micro-batch (more shares than sequences) fills and adds no buffers.
        std::vector<char> busy(shares, 0);
        for (size_t t = 0; t < shares; ++t)
            for (const std::vector<Batch>* group : groups)
                for (const Batch& m : *group) busy[t] |= char(!share_range(m.batch, t, shares).empty());
        // A loop over shares rather than thread ids, so that a team of any size runs every share.
        // An exception in a share reaches the caller after the loop, before any parameter moves.
        parallel_for_checked(shares, [&](size_t t) {
            const SerialRegion serial;  // a share's products run on its own thread, however many shares run at once
            CascadeActivations<T>& a = t == 0 ? activations : replica_activations[t - 1];
            CascadeGradients<T> gradients = own;
            TransformerWeights<T> encoder_gradients, decoder_gradients;
            if (t > 0) {  // zeroed by the thread that uses them
                ReplicaGradients& replica = replica_gradients[t - 1];
                replica.encoder.assign(train_encoder && busy[t] ? encoder.gradients.size() : 0, T(0));
                replica.decoder.assign(train_decoder && busy[t] ? decoder.gradients.size() : 0, T(0));
                replica.bridge.assign(train_bridge && busy[t] ? cascade.bridge_gradients.size() : 0, T(0));
                if (!busy[t]) return;
                if (train_encoder) encoder_gradients = encoder.bind_gradients(replica.encoder.data());
                if (train_decoder) decoder_gradients = decoder.bind_gradients(replica.decoder.data());
                gradients = {train_encoder ? &encoder_gradients : nullptr, train_decoder ? &decoder_gradients : nullptr,
                             train_bridge ? replica.bridge.data() : nullptr};
            }
            for (size_t g = 0; g < groups.size(); ++g)
                for (const Batch& m : *groups[g]) {
                    const ShareRange range = share_range(m.batch, t, shares);
                    const size_t chosen = trainer.options.sequences_per_pass;
                    const size_t pass = chosen ? chosen : range.end - range.begin;
                    for (size_t first = range.begin; first < range.end; first += pass) {
                        const Batch part = m.sequences(first, std::min(range.end, first + pass) - first);
                        losses[t][g] += cascade.loss_into(part, a, {true, token_weights[g]}, gradients, copies);
                    }
                }
        });
        auto reduce = [&](T* total, size_t count, std::vector<T> ReplicaGradients::*part) {
            parallel_ranges(count, 4096, [&](size_t begin, size_t end) {
                for (const ReplicaGradients& replica : replica_gradients) {
                    if ((replica.*part).empty()) continue;  // an idle share, which adds nothing
                    const T* buffer = (replica.*part).data();
                    for (size_t i = begin; i < end; ++i) total[i] += buffer[i];
                }
            }, shares);
        };
        if (train_encoder) reduce(encoder.gradients.data(), encoder.gradients.size(), &ReplicaGradients::encoder);
        if (train_decoder) reduce(decoder.gradients.data(), decoder.gradients.size(), &ReplicaGradients::decoder);
        if (train_bridge)
            reduce(cascade.bridge_gradients.data(), cascade.bridge_gradients.size(), &ReplicaGradients::bridge);
        std::vector<double> totals(groups.size(), 0.0);
        for (const std::vector<double>& share : losses)
            for (size_t g = 0; g < groups.size(); ++g) totals[g] += share[g];
        return totals;
    }
};

}  // namespace c3
