// Training: a loss (model/loss.hpp) that accumulates gradients into parameter groups, then one optimiser step
// with clipping, a schedule and a guard against NaN. Gradient accumulation weights every token equally across
// micro-batches, so k micro-batches give the same update as one batch of all their rows.
#pragma once
#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "c3/model/loss.hpp"
#include "c3/ops/compute_choice.hpp"
#include "c3/train/adamw.hpp"

namespace c3 {

// The most data-parallel shares a step may have: each one holds its own copy of the gradients and activations.
constexpr size_t kMaxDataParallelShares = 1024;

// The sequences [begin, end) of a batch of `sequences` that data-parallel share `share` of `shares` takes: its
// part, as even as possible, in share order. Empty when there are more shares than sequences.
struct ShareRange {
    size_t begin = 0, end = 0;
    bool empty() const { return begin == end; }
};
inline ShareRange share_range(size_t sequences, size_t share, size_t shares) {
    return {sequences * share / shares, sequences * (share + 1) / shares};
}

struct TrainingOptions {
    AdamWConfig adamw;
    size_t warmup_steps = 0;
    size_t total_steps = 1000;
    double min_lr_ratio = 0.0;
    // 0: cosine from the peak to min_lr_ratio; in (0, 1]: warmup-stable-decay, the last lr_decay_fraction of the
    // steps after warmup decaying linearly (LearningRateSchedule).
    double lr_decay_fraction = 0.0;
    double max_grad_norm = 1.0;  // 0 or less: no clipping
    // Split each batch's sequences across the threads, each running the whole forward and backward on its share
    // with its own activations and gradient buffer (then one sum). Small models train much faster this way than
    // with every matrix product split across threads (no synchronisation per op, each thread's data in its own
    // cache). Used when every micro-batch has at least as many sequences as there are threads. Language models
    // and cascades (train/cascade_trainer.hpp) alike.
    bool data_parallel = true;
    // Data-parallel only: each thread runs its share in passes of this many sequences (0: chosen by
    // auto_sequences_per_pass for language models, one pass for cascades). Smaller passes keep the saved
    // activations in cache at the price of one more read-modify-write of the thread's gradient buffer per pass.
    size_t sequences_per_pass = 0;
    // Data-parallel shares of a step. 0: one per thread, used when every micro-batch has at least as many
    // sequences as there are threads (the result then depends on the thread count through the order of the
    // sums). n > 0: always n shares, share s taking the s-th n-th of every micro-batch's sequences into its own
    // gradient buffer, the buffers summed in share order, whatever the thread count (at most n threads run a
    // step; each share needs its own activations and gradients): the same parameters on 1, 2 or 64 threads.
    // Needs data_parallel; at most kMaxDataParallelShares.
    size_t data_parallel_shares = 0;
    // What the large products compute in: "float32", or "bfloat16" for mixed precision. Mixed precision keeps the
    // float32 parameters and AdamW moments; each step rounds the matrices to bf16 once (StepWeights), and the
    // forward products and backward's input gradients dX = dY * W run on bf16 dot products with float32 sums
    // (ops/matmul_bf16.hpp; their activations rounded to bf16 too). Weight gradients, norms, attention, softmax
    // and the loss stay float32. "auto": the trainer makes it one of the two at construction, bfloat16 only where
    // bf16 products measure faster on this CPU at the model's shape (resolve_compute).
    std::string compute_dtype = "float32";
    // Learning-rate multipliers by parameter group name ("encoder", "decoder", "bridge" for cascades; "model" for
    // language models); groups not named take 1. A pretrained encoder then learns slowly while the fresh queries
    // and projector learn at the full rate, as ICAE-style training does.
    std::map<std::string, double> learning_rate_scales;

    bool mixed_precision() const { return compute_dtype == "bfloat16"; }

    void validate() const {
        const AdamWConfig& a = adamw;
        C3_CHECK(a.learning_rate >= 0 && std::isfinite(a.learning_rate), ValueError,
                 "learning_rate must be finite and >= 0, got ", a.learning_rate);
        C3_CHECK(a.beta1 >= 0 && a.beta1 < 1 && a.beta2 >= 0 && a.beta2 < 1, ValueError,
                 "betas must lie in [0, 1), got ", a.beta1, " and ", a.beta2);
        C3_CHECK(a.epsilon >= 0 && std::isfinite(a.epsilon), ValueError, "epsilon must be finite and >= 0, got ",
                 a.epsilon);
        C3_CHECK(a.weight_decay >= 0 && std::isfinite(a.weight_decay), ValueError,
                 "weight_decay must be finite and >= 0, got ", a.weight_decay);
        C3_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, ValueError, "min_lr_ratio must lie in [0, 1], got ",
                 min_lr_ratio);
        C3_CHECK(lr_decay_fraction >= 0 && lr_decay_fraction <= 1, ValueError,
                 "lr_decay_fraction must lie in [0, 1] (0: cosine), got ", lr_decay_fraction);
        C3_CHECK(!std::isnan(max_grad_norm), ValueError, "max_grad_norm must be a number (0 or less: no clipping)");
        C3_CHECK(data_parallel || data_parallel_shares == 0, ValueError,
                 "data_parallel_shares needs data_parallel, got data_parallel_shares=", data_parallel_shares);
        C3_CHECK(data_parallel_shares <= kMaxDataParallelShares, ValueError, "data_parallel_shares must be at most ",
                 kMaxDataParallelShares, " (each share holds its own activations and gradients), got ",
                 data_parallel_shares);
        C3_CHECK(compute_dtype == "float32" || compute_dtype == "bfloat16" || compute_dtype == "auto", ValueError,
                 "compute_dtype must be 'float32', 'bfloat16' or 'auto', got '", compute_dtype, "'");
        for (const auto& [group, scale] : learning_rate_scales)
            C3_CHECK(scale >= 0 && std::isfinite(scale), ValueError, "learning_rate_scales['", group,
                     "'] must be finite and >= 0, got ", scale);
    }
};

// options with compute_dtype "auto" made concrete for a model whose largest products are [rows, hidden] x
// [hidden, intermediate]: "bfloat16" where the trial (ops/compute_choice.hpp) measures bf16 products faster on
// this CPU than the float32 step's products on transposed copies, else "float32". Other options pass unchanged.
// The choice is per process (a timing), so a run that must reproduce bit for bit names its mode.
inline TrainingOptions resolve_compute(TrainingOptions options, size_t hidden, size_t intermediate) {
    options.validate();
    if (options.compute_dtype == "auto")
        options.compute_dtype =
            ops::model_compute_trial(hidden, intermediate, ops::ComputeBaseline::FloatTransposed).bf16 ? "bfloat16"
                                                                                                       : "float32";
    return options;
}

// The copies of a model's matrices that a step's products read (StepWeights), taken from its parameters at the
// start of the step (they hold still until Trainer::apply): bf16 with mixed precision, else float transposed.
// Returns null when there are none (the products then read the parameters).
template <typename T>
const StepWeights<T>* take_step_weights(const Transformer<T>& model, const TrainingOptions& options,
                                        StepWeights<T>& out) {
    if (options.mixed_precision()) model.round_weights_to_bf16(out);
    else model.transpose_weights(out);
    return out.transposed_storage.empty() && out.bf16_storage.empty() ? nullptr : &out;
}

// Cuts a batch of `batch` sequences into `count` micro-batches of equal size (one optimiser step accumulates
// them); part(begin, size) makes the micro-batch of sequences [begin, begin + size). Both trainers split here.
template <typename Part, typename MakePart>
std::vector<Part> split_micro_batches(size_t batch, size_t count, MakePart part) {
    C3_CHECK(count >= 1 && batch % count == 0, ValueError, "micro_batches (", count,
             ") must divide the batch size (", batch, ")");
    std::vector<Part> parts;
    const size_t size = batch / count;
    for (size_t k = 0; k < count; ++k) parts.push_back(part(k * size, size));
    return parts;
}

// Floats that a training forward keeps per row for backward (Activations and LayerActivations), for a
// sequence of `length` rows.
inline size_t saved_floats_per_row(const TransformerConfig& config, size_t length) {
    const size_t H = config.hidden_size, I = config.intermediate_size, D = config.head_dim;
    const size_t layer = 4 * H + 2 + (2 * config.num_heads + 2 * config.num_kv_heads) * D + config.num_heads * length +
                         3 * I;
    return config.num_layers * layer + 2 * H + D + 1 + config.vocab_size;
}

// Sequences per data-parallel pass (TrainingOptions::sequences_per_pass = 0). A whole share's saved activations
// can outgrow the cache (d=128, 4 layers, 512 rows: 20 MB per thread), so backward reads them back from memory;
// passes of about kRowsPerPass rows keep them in cache and still give each product enough rows for the GEMM
// kernel's blocking. Each pass adds one read-modify-write of the thread's gradient buffer, so passes are used only
// when that buffer is smaller than one pass's activations. Measured once on a 2-core EPYC with 32 MB L3: d=128
// +4-6%, tiny at T=128 +17%; d=256 (12 MB of gradients) lost 5-15% with any split.
inline constexpr size_t kRowsPerPass = 128;

inline size_t auto_sequences_per_pass(const TransformerConfig& config, size_t length, size_t share,
                                      size_t gradient_count) {
    const size_t pass = std::max<size_t>(1, (kRowsPerPass + length - 1) / length);
    if (pass >= share) return share;
    const size_t pass_activations = pass * length * saved_floats_per_row(config, length);
    return gradient_count < pass_activations ? pass : share;
}

struct StepReport {
    size_t step = 0;  // optimiser steps done, this one included
    double loss = 0;  // mean over the counted tokens
    double gradient_norm = 0;
    double learning_rate = 0;
    size_t tokens = 0;
    double seconds = 0;
    size_t data_parallel_shares = 1;  // shares of the batch (1: micro-batches one after another, or one share)
};

// The optimiser side of training, shared by language models and cascades.
template <typename T>
class Trainer {
public:
    std::vector<ParameterGroup<T>> groups;
    AdamW<T> optimizer;
    LearningRateSchedule schedule;
    TrainingOptions options;

    Trainer(std::vector<ParameterGroup<T>> parameter_groups, const TrainingOptions& training_options)
        : groups(std::move(parameter_groups)), options(training_options) {
        options.validate();
        optimizer.config = options.adamw;
        schedule = {options.adamw.learning_rate, options.warmup_steps, options.total_steps, options.min_lr_ratio,
                    options.lr_decay_fraction};
        std::string names;
        for (const auto& group : groups) names += (names.empty() ? "" : ", ") + group.name;
        for (const auto& [name, scale] : options.learning_rate_scales)
            C3_CHECK(std::any_of(groups.begin(), groups.end(), [&](const auto& g) { return g.name == name; }),
                     ValueError, "learning_rate_scales names no parameter group '", name, "' (groups: ", names, ")");
    }

    // options.learning_rate_scales in the order of the current groups (taken by name at each step, as the groups
    // are: refresh_groups may hand new ones).
    std::vector<double> group_scales() const {
        std::vector<double> scales;
        for (const auto& group : groups) {
            const auto found = options.learning_rate_scales.find(group.name);
            scales.push_back(found == options.learning_rate_scales.end() ? 1.0 : found->second);
        }
        return scales;
    }

    // Takes the groups afresh at each step: a model may have replaced its buffers since (resize_vocabulary,
    // store_as_bf16), and pointers kept from before would dangle. Optimiser state of another size is refused.
    void refresh_groups(std::vector<ParameterGroup<T>> fresh) {
        for (size_t g = 0; g < fresh.size() && g < optimizer.first_moment.size(); ++g)
            C3_CHECK(optimizer.first_moment[g].size() == fresh[g].size() && fresh.size() == groups.size(), ValueError,
                     "parameter group '", fresh[g].name, "' changed size since the optimiser state was made (",
                     optimizer.first_moment[g].size(), " -> ", fresh[g].size(), "); make a new trainer");
        groups = std::move(fresh);
    }

    void zero_gradients() {
        for (auto& group : groups)
            parallel_ranges(group.size(), kOptimizerBlock, [&](size_t begin, size_t end) {
                std::fill(group.gradients + begin, group.gradients + end, T(0));
            });
    }

    // Checks, clips and applies the accumulated gradients. A non-finite loss or gradient stops with a
    // ValueError before any parameter changes, so the model keeps its last good state.
    StepReport apply(double loss_sum, size_t tokens) {
        StepReport report;
        report.tokens = tokens;
        report.loss = tokens ? loss_sum / double(tokens) : 0.0;
        C3_CHECK(std::isfinite(report.loss), ValueError, "non-finite loss (", report.loss, ") at step ",
                 optimizer.step + 1, "; parameters were left as they were before this step");
        // A non-finite norm is never above max_grad_norm, so clipping left the gradients alone.
        report.gradient_norm = clip_gradient_norm(groups, options.max_grad_norm);
        C3_CHECK(std::isfinite(report.gradient_norm), ValueError, "non-finite gradient at step ", optimizer.step + 1,
                 "; parameters were left as they were before this step");
        report.learning_rate = schedule.at(optimizer.step);
        optimizer.update(groups, report.learning_rate, group_scales());
        report.step = optimizer.step;
        check_parameters_finite(report);
        return report;
    }

    // The NaN guard's second half: finite gradients can still carry a parameter past the float range (a learning
    // rate of 1e300 does in one step). Such a step is reported here, naming the first bad tensor, rather than
    // leaving NaN weights to be saved as a trained model; the update cannot be undone, so the model is unusable.
    void check_parameters_finite(const StepReport& report) const {
        const std::vector<TensorBlock> blocks = trainable_blocks(groups);
        std::vector<uint8_t> bad(blocks.size(), 0);
        parallel_for(blocks.size(), [&](size_t b) {
            const T* p = groups[blocks[b].group].parameters + blocks[b].offset;
            for (size_t i = 0; i < blocks[b].count; ++i)
                if (!std::isfinite(p[i])) {
                    bad[b] = 1;
                    break;
                }
        }, kOptimizerBlock);
        for (size_t b = 0; b < blocks.size(); ++b) {
            if (!bad[b]) continue;
            const ParameterGroup<T>& group = groups[blocks[b].group];
            std::string tensor = "?";
            for (const ParameterInfo& info : *group.layout)
                if (info.offset <= blocks[b].offset && blocks[b].offset < info.offset + info.size) tensor = info.name;
            throw ValueError(::c3::detail::concat("NaN guard: step ", report.step, " (learning rate ",
                                            report.learning_rate, ") made parameter '", tensor, "' of group '",
                                            group.name, "' non-finite; the model is unusable: lower the learning ",
                                            "rate and train again"));
        }
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
        : model(language_model),
          trainer({language_model.parameter_group("model")},
                  resolve_compute(options, language_model.config.hidden_size, language_model.config.intermediate_size)) {}

    // Taken afresh each time (see Trainer::refresh_groups).
    std::vector<ParameterGroup<T>> parameter_groups() { return {model.parameter_group("model")}; }

    // One optimiser step over micro-batches (each [batch, length] ids, mask and targets).
    StepReport step(const std::vector<ForwardInput<T>>& micro_batches, const std::vector<const int32_t*>& targets) {
        const auto start = std::chrono::steady_clock::now();
        size_t tokens = 0;
        for (size_t m = 0; m < micro_batches.size(); ++m)
            tokens += count_targets(targets[m], micro_batches[m].batch * micro_batches[m].length);
        C3_CHECK(tokens > 0, ValueError, "the batch has no target tokens (all targets are the ignore index)");
        trainer.refresh_groups(parameter_groups());
        trainer.zero_gradients();
        const StepWeights<T>* copies = take_step_weights(model, trainer.options, step_weights);
        const T token_weight = T(1.0 / double(tokens));
        double loss_sum = 0;
        const size_t shares = data_parallel_shares(micro_batches);
        if (shares) {
            loss_sum = data_parallel_loss(micro_batches, targets, token_weight, shares, copies);
        } else {
            for (size_t m = 0; m < micro_batches.size(); ++m)
                loss_sum += language_model_loss(model, micro_batches[m], targets[m], true, token_weight, activations,
                                                static_cast<T*>(nullptr), static_cast<std::vector<T>*>(nullptr),
                                                copies);
        }
        StepReport report = trainer.apply(loss_sum, tokens);
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        report.data_parallel_shares = std::max<size_t>(shares, 1);
        return report;
    }

    // The same for one batch [batch, length] with its targets, cut into micro_batches equal parts.
    StepReport step(const ForwardInput<T>& batch, const int32_t* targets, size_t micro_batches) {
        const size_t hidden = model.config.hidden_size;
        const auto parts = split_micro_batches<ForwardInput<T>>(
            batch.batch, micro_batches, [&](size_t begin, size_t size) { return shard(batch, begin, begin + size, hidden); });
        std::vector<const int32_t*> part_targets;
        for (size_t k = 0; k < parts.size(); ++k) part_targets.push_back(targets + k * parts[k].batch * batch.length);
        return step(parts, part_targets);
    }

    // Mean loss without gradients.
    double evaluate(const ForwardInput<T>& batch, const int32_t* targets) {
        const size_t tokens = count_targets(targets, batch.batch * batch.length);
        C3_CHECK(tokens > 0, ValueError, "the batch has no target tokens");
        return language_model_loss(model, batch, targets, false, T(0), activations) / double(tokens);
    }

private:
    std::vector<Activations<T>> replica_activations;  // shares 1.. (share 0 uses `activations`)
    StepWeights<T> step_weights;                      // rebuilt by every step
    std::vector<std::vector<T>> replica_gradients;    // shares 1.., the model's layout

    // Shares that a step over these micro-batches runs in (0: none, the micro-batches one after another with the
    // products split across threads; a fixed count runs in shares even when it is 1).
    size_t data_parallel_shares(const std::vector<ForwardInput<T>>& micro_batches) const {
        if (!model.any_trainable()) return 0;
        if (trainer.options.data_parallel_shares) return trainer.options.data_parallel_shares;
        const size_t threads = size_t(num_threads());
        if (!trainer.options.data_parallel || threads <= 1) return 0;
        for (const auto& batch : micro_batches)
            if (batch.batch < threads) return 0;
        return threads;
    }

    // Sequences [begin, end) of a batch, as a batch of their own.
    static ForwardInput<T> shard(const ForwardInput<T>& batch, size_t begin, size_t end, size_t hidden) {
        ForwardInput<T> part = batch;
        const size_t offset = begin * batch.length;
        part.batch = end - begin;
        if (batch.ids) part.ids = batch.ids + offset;
        if (batch.embeddings) part.embeddings = batch.embeddings + offset * hidden;
        if (batch.mask) part.mask = batch.mask + offset;
        if (batch.positions) part.positions = batch.positions + offset;
        return part;
    }

    // Share t takes the t-th part of every micro-batch's sequences and accumulates its gradients into its own
    // buffer (share 0: the model's); the buffers are then summed in share order, so results are reproducible
    // for a given number of shares, whatever the thread count.
    double data_parallel_loss(const std::vector<ForwardInput<T>>& micro_batches,
                              const std::vector<const int32_t*>& targets, T token_weight, size_t shares,
                              const StepWeights<T>* copies) {
        model.enable_gradients();
        replica_activations.resize(shares - 1);
        replica_gradients.resize(shares - 1);
        std::vector<double> losses(shares, 0.0);
        std::vector<size_t> passes(micro_batches.size());
        for (size_t m = 0; m < micro_batches.size(); ++m) {
            const size_t share = (micro_batches[m].batch + shares - 1) / shares;
            const size_t chosen = trainer.options.sequences_per_pass;
            passes[m] = chosen ? std::min(chosen, share)
                               : auto_sequences_per_pass(model.config, micro_batches[m].length, share,
                                                         model.gradients.size());
        }
        // A loop over shares rather than thread ids, so that a team of any size runs every share.
        // An exception in a share reaches the caller after the loop.
        parallel_for_checked(shares, [&](size_t t) {
            const SerialRegion serial;  // a share's products run on its own thread, however many shares run at once
            bool busy = false;  // a share with no sequence in any micro-batch fills and adds no buffer
            for (const ForwardInput<T>& batch : micro_batches) busy |= !share_range(batch.batch, t, shares).empty();
            if (t > 0) replica_gradients[t - 1].assign(busy ? model.gradients.size() : 0, T(0));  // zeroed by its user
            if (!busy) return;
            Activations<T>& a = t == 0 ? activations : replica_activations[t - 1];
            const TransformerWeights<T> gradients =
                t == 0 ? model.weight_gradients : model.bind_gradients(replica_gradients[t - 1].data());
            for (size_t m = 0; m < micro_batches.size(); ++m) {
                const ForwardInput<T>& batch = micro_batches[m];
                const ShareRange part = share_range(batch.batch, t, shares);
                const size_t pass = passes[m];
                for (size_t first = part.begin; first < part.end; first += pass) {
                    const size_t last = std::min(part.end, first + pass);
                    losses[t] += language_model_loss_into(model, shard(batch, first, last, model.config.hidden_size),
                                                          targets[m] + first * batch.length, true, token_weight, a,
                                                          &gradients, static_cast<T*>(nullptr),
                                                          static_cast<std::vector<T>*>(nullptr), copies);
                }
            }
        });
        T* total = model.gradients.data();
        parallel_ranges(model.gradients.size(), 4096, [&](size_t begin, size_t end) {
            for (const auto& buffer : replica_gradients)
                if (!buffer.empty())  // empty: an idle share, which adds nothing
                    for (size_t i = begin; i < end; ++i) total[i] += buffer[i];
        }, shares);
        double loss_sum = 0;
        for (double loss : losses) loss_sum += loss;
        return loss_sum;
    }
};

}  // namespace c3
