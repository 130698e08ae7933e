// The cascade: gradients through decoder -> projector -> Q -> encoder against central differences in double,
// freezing, reconstruction through the KV cache equal to teacher-forced argmax, and data-parallel training
// against Cascade::loss and the serial trainer.
#include <gtest/gtest.h>

#include <cstring>

#include "c3/cascade/cascade.hpp"
#include "c3/train/cascade_trainer.hpp"
#include "gradcheck.hpp"

using namespace c3;

namespace {
CascadeConfig tiny_cascade(ProjectorKind projector) {
    CascadeConfig c;
    c.encoder.vocab_size = c.decoder.vocab_size = 20;
    c.encoder.hidden_size = 8;
    c.encoder.intermediate_size = 12;
    c.encoder.num_heads = 2;
    c.encoder.num_kv_heads = 1;
    c.encoder.head_dim = 4;
    c.encoder.num_layers = 1;
    c.decoder.hidden_size = 12;
    c.decoder.intermediate_size = 16;
    c.decoder.num_heads = 3;
    c.decoder.num_kv_heads = 1;
    c.decoder.head_dim = 4;
    c.decoder.num_layers = 2;
    c.decoder.tie_word_embeddings = true;
    c.encoder.initializer_range = c.decoder.initializer_range = 0.4;
    c.num_latents = 3;
    c.projector = projector;
    c.latent_start_token = 17;
    c.latent_end_token = 18;
    c.latent_pad_token = 19;
    c.prompt_prefix = {1, 2};
    c.prompt_suffix = {3};
    c.stop_tokens = {4};
    return c;
}
}  // namespace

class CascadeGradient : public ::testing::TestWithParam<ProjectorKind> {};

// Every trainable tensor's gradient against central differences, on left-padded contexts of 4 and 5 tokens.
void expect_cascade_gradients(Cascade<double>& cascade) {
    const size_t B = 2, Lc = 5, La = 4;
    std::vector<int32_t> contexts = {0, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    std::vector<uint8_t> context_mask = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    std::vector<int32_t> answers = {5, 6, 7, 4, 9, 10, 4, 0};
    std::vector<uint8_t> answer_mask = {1, 1, 1, 1, 1, 1, 1, 0};
    CascadeActivations<double> a;
    auto loss = [&]() {
        CascadeActivations<double> scratch;
        return cascade.loss({contexts.data(), context_mask.data(), Lc, answers.data(), answer_mask.data(), La, B},
                            scratch, {false, 1.0});
    };
    for (auto& group : cascade.parameter_groups()) std::fill(group.gradients, group.gradients + group.size(), 0.0);
    cascade.loss({contexts.data(), context_mask.data(), Lc, answers.data(), answer_mask.data(), La, B}, a, {true, 1.0});
    for (auto group : cascade.parameter_groups()) {
        for (const auto& info : *group.layout) {
            std::vector<double> values(group.parameters + info.offset, group.parameters + info.offset + info.size);
            std::vector<double> analytic(group.gradients + info.offset, group.gradients + info.offset + info.size);
            auto loss_of_tensor = [&]() {
                std::copy(values.begin(), values.end(), group.parameters + info.offset);
                return loss();
            };
            c3::testing::expect_gradient(loss_of_tensor, values, analytic, (group.name + ":" + info.name).c_str(), 8);
            std::copy(values.begin(), values.end(), group.parameters + info.offset);
        }
    }
}

TEST_P(CascadeGradient, EveryPartMatchesCentralDifferences) {
    Cascade<double> cascade(tiny_cascade(GetParam()));
    cascade.init_random(1);
    expect_cascade_gradients(cascade);
}

INSTANTIATE_TEST_SUITE_P(Projectors, CascadeGradient, ::testing::Values(ProjectorKind::Linear, ProjectorKind::Mlp));

// The baselines train through the same loss: mean pooling into the encoder's embeddings and the projector, the
// token methods into the decoder's embeddings of the kept context tokens.
class BaselineGradient : public ::testing::TestWithParam<CompressionMethod> {};

TEST_P(BaselineGradient, EveryPartMatchesCentralDifferences) {
    CascadeConfig config = tiny_cascade(ProjectorKind::Linear);
    config.method = GetParam();
    Cascade<double> cascade(config);
    cascade.init_random(3);
    expect_cascade_gradients(cascade);
}

INSTANTIATE_TEST_SUITE_P(Methods, BaselineGradient,
                         ::testing::Values(CompressionMethod::MeanPool, CompressionMethod::Truncate,
                                           CompressionMethod::TruncateLast, CompressionMethod::NoContext,
                                           CompressionMethod::FullContext, CompressionMethod::MeanPoolHidden,
                                           CompressionMethod::Hierarchical));

TEST(Baselines, TruncationScoresEqualTheDecoderOnTheKeptTokens) {
    CascadeConfig config = tiny_cascade(ProjectorKind::Linear);
    config.method = CompressionMethod::TruncateLast;
    Cascade<float> cascade(config);
    cascade.init_random(4);
    const std::vector<int32_t> context = {5, 6, 7, 8, 9}, answer = {10, 11, 4};
    CascadeActivations<float> a;
    cascade.compress(context.data(), nullptr, 1, context.size(), a, false);
    ASSERT_EQ(a.block_width, 3u);
    const AnswerScores scores = cascade.score(a.latents.data(), a.block_width, nullptr, answer.data(), nullptr, 1,
                                              answer.size(), a);
    // prefix, <img>, the last N = 3 context tokens, </img>, suffix, answer
    const std::vector<int32_t> ids = {1, 2, 17, 7, 8, 9, 18, 3, 10, 11, 4};
    Activations<float> d;
    ForwardInput<float> in{1, ids.size(), ids.data(), nullptr, nullptr, nullptr};
    cascade.decoder.forward(in, d, LogitsMode::All, false);
    const size_t V = config.decoder.vocab_size, P = 8;
    for (size_t t = 0; t < answer.size(); ++t) {
        const float* logits = d.logits.data() + (P + t - 1) * V;
        double total = 0;
        const float top = *std::max_element(logits, logits + V);
        for (size_t v = 0; v < V; ++v) total += std::exp(double(logits[v] - top));
        EXPECT_NEAR(scores.log_probability[t], double(logits[answer[t]] - top) - std::log(total), 1e-5);
    }
}

TEST(Baselines, MethodNamesRoundTripAndUnknownOnesAreConfigErrors) {
    for (const std::string& name : method_names()) EXPECT_EQ(method_name(method_from_name(name)), name);
    EXPECT_THROW(method_from_name("gist"), ConfigError);
}

TEST(Cascade, FrozenPartsGetNoGradient) {
    Cascade<float> cascade(tiny_cascade(ProjectorKind::Linear));
    cascade.init_random(2);
    cascade.set_trainable("encoder", false);
    cascade.set_trainable("decoder", false);
    std::vector<int32_t> contexts = {5, 6, 7}, answers = {5, 6, 7, 4};
    CascadeActivations<float> a;
    for (auto& group : cascade.parameter_groups()) std::fill(group.gradients, group.gradients + group.size(), 0.f);
    cascade.loss({contexts.data(), nullptr, 3, answers.data(), nullptr, 4, 1}, a, {true, 1.f});
    for (float g : cascade.encoder.gradients) ASSERT_EQ(g, 0.f);
    for (float g : cascade.decoder.gradients) ASSERT_EQ(g, 0.f);
    double queries = 0;
    for (size_t i = 0; i < 3 * 8; ++i) queries += std::abs(cascade.bridge_gradients[i]);
    EXPECT_GT(queries, 0);
}

TEST(Cascade, GreedyReconstructionEqualsTeacherForcedArgmax) {
    Cascade<float> cascade(tiny_cascade(ProjectorKind::Linear));
    cascade.init_random(3);
    std::vector<int32_t> contexts = {5, 6, 7, 8, 9, 10};
    CascadeActivations<float> a;
    cascade.compress(contexts.data(), nullptr, 2, 3, a, false);
    const std::vector<float> latents = a.latents;
    GenerationOptions options;
    options.max_new_tokens = 6;
    options.stop_tokens = {-1};
    GenerationResult result = cascade.reconstruct(latents.data(), 2, options);
    CascadeActivations<float> s;
    std::vector<int32_t> answers = result.tokens;
    AnswerScores scores = cascade.score(latents.data(), answers.data(), nullptr, 2, result.steps, s);
    for (size_t i = 0; i < answers.size(); ++i) {
        EXPECT_EQ(scores.rank[i], 0) << i;
        EXPECT_EQ(scores.predicted[i], answers[i]) << i;
    }
}

// ---- data-parallel training ----------------------------------------------------------------------------------
// Each thread runs the whole cascade on its share of every micro-batch's sequences, into its own gradient buffers,
// summed in thread order. The oracle is Cascade::loss over each whole micro-batch, one after another: the
// gradients of one step agree up to float summation order (and the transposed products), and so do the losses and
// parameters after a few AdamW steps of a serial trainer (data_parallel = false).
namespace {
struct TrainingCase {
    CompressionMethod method;
    ProjectorKind projector;
    std::vector<std::string> frozen;  // cascade parts
};

// Seven (context, answer) pairs: contexts left-padded to 6 tokens (3 to 6 real), answers right-padded to 5, and
// continuations: the answers' first 3 columns.
struct TrainingData {
    static constexpr size_t B = 7, Lc = 6, La = 5, Lf = 3;
    std::vector<int32_t> contexts, answers, follow;
    std::vector<uint8_t> context_mask, answer_mask, follow_mask;
    TrainingData() : contexts(B * Lc), answers(B * La), context_mask(B * Lc), answer_mask(B * La) {
        for (size_t b = 0; b < B; ++b) {
            const size_t real_context = 3 + (b * 5) % 4, real_answer = 2 + (b * 3) % 4;
            for (size_t t = 0; t < Lc; ++t) {
                context_mask[b * Lc + t] = t >= Lc - real_context;
                contexts[b * Lc + t] = context_mask[b * Lc + t] ? int32_t(5 + (b * 7 + t * 3) % 12) : 0;
            }
            for (size_t t = 0; t < La; ++t) {
                answer_mask[b * La + t] = t < real_answer;
                answers[b * La + t] = answer_mask[b * La + t] ? int32_t(5 + (b * 5 + t * 7) % 12) : 0;
                if (t < Lf) follow.push_back(answers[b * La + t]), follow_mask.push_back(answer_mask[b * La + t]);
            }
        }
    }
    // Sequences [begin, end) with their answers, or their continuations.
    CascadeTrainer<float>::Batch rows(size_t begin, size_t end, bool continuation = false) const {
        if (continuation)
            return {contexts.data() + begin * Lc, context_mask.data() + begin * Lc, Lc, follow.data() + begin * Lf,
                    follow_mask.data() + begin * Lf, Lf, end - begin};
        return {contexts.data() + begin * Lc, context_mask.data() + begin * Lc, Lc, answers.data() + begin * La,
                answer_mask.data() + begin * La, La, end - begin};
    }
};

Cascade<float> training_cascade(const TrainingCase& c) {
    CascadeConfig config = tiny_cascade(c.projector);
    config.method = c.method;
    Cascade<float> cascade(config);
    cascade.init_random(11);
    for (const std::string& part : c.frozen) cascade.set_trainable(part, false);
    return cascade;
}

std::vector<float> all_parameters(Cascade<float>& cascade) {
    std::vector<float> values;
    for (const auto& group : cascade.parameter_groups())
        values.insert(values.end(), group.parameters, group.parameters + group.size());
    return values;
}

std::vector<float> all_gradients(Cascade<float>& cascade) {
    std::vector<float> values;
    for (const auto& group : cascade.parameter_groups())
        values.insert(values.end(), group.gradients, group.gradients + group.size());
    return values;
}

// max |actual - expected| <= tolerance * max |expected|, and frozen entries (zero in expected) stay exactly zero.
void expect_close(const std::vector<float>& actual, const std::vector<float>& expected, double tolerance,
                  const char* what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    double scale = 0, error = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
        scale = std::max(scale, std::abs(double(expected[i])));
        error = std::max(error, std::abs(double(actual[i]) - double(expected[i])));
        if (expected[i] == 0.f) {
            ASSERT_EQ(actual[i], 0.f) << what << " " << i;
        }
    }
    ASSERT_GT(scale, 0) << what;
    EXPECT_LE(error, tolerance * scale) << what;
}

struct ThreadCount {
    int saved = num_threads();
    explicit ThreadCount(int threads) { set_num_threads(threads); }
    ~ThreadCount() { set_num_threads(saved); }
};
}  // namespace

class CascadeDataParallel : public ::testing::TestWithParam<TrainingCase> {};

TEST_P(CascadeDataParallel, GradientsLossesAndParametersMatchTheSerialPath) {
    const ThreadCount three(3);  // shares of 1 or 2 sequences of micro-batches of 4 and 3: unequal shares
    const TrainingData data;
    const std::vector<CascadeTrainer<float>::Batch> micro_batches = {data.rows(0, 4), data.rows(4, 7)};
    const size_t tokens = micro_batches[0].answer_tokens() + micro_batches[1].answer_tokens();

    // One step's gradients, against Cascade::loss over each whole micro-batch.
    Cascade<float> oracle = training_cascade(GetParam()), parallel = training_cascade(GetParam());
    oracle.zero_gradients();
    CascadeActivations<float> scratch;
    double oracle_loss = 0;
    for (const auto& m : micro_batches)
        oracle_loss += oracle.loss(m, scratch, {true, float(1.0 / double(tokens))});
    TrainingOptions frozen_step;  // learning rate 0 and no clipping: the buffers keep the step's gradients
    frozen_step.adamw.learning_rate = 0;
    frozen_step.max_grad_norm = 0;
    CascadeTrainer<float> gradient_trainer(parallel, frozen_step);
    ASSERT_EQ(gradient_trainer.data_parallel_shares(micro_batches), 3u);
    const StepReport first = gradient_trainer.step(micro_batches);
    EXPECT_NEAR(first.loss, oracle_loss / double(tokens), 1e-6);
    expect_close(all_gradients(parallel), all_gradients(oracle), 2e-5, "gradients of one step");
    EXPECT_EQ(all_parameters(parallel), all_parameters(oracle));

    // A few steps, against a serial trainer, and twice with the same seed: bit-identical.
    TrainingOptions options;
    options.adamw.learning_rate = 1e-2;
    options.adamw.weight_decay = 0.1;
    options.max_grad_norm = 0.5;
    TrainingOptions serial_options = options;
    serial_options.data_parallel = false;
    Cascade<float> a = training_cascade(GetParam()), b = training_cascade(GetParam()),
                   serial = training_cascade(GetParam());
    CascadeTrainer<float> trainer_a(a, options), trainer_b(b, options), trainer_serial(serial, serial_options);
    ASSERT_EQ(trainer_serial.data_parallel_shares(micro_batches), 1u);
    const std::vector<float> before = all_parameters(a);
    for (int step = 0; step < 3; ++step) {
        const StepReport ra = trainer_a.step(micro_batches), rb = trainer_b.step(micro_batches);
        const StepReport rs = trainer_serial.step(micro_batches);
        EXPECT_EQ(std::memcmp(&ra.loss, &rb.loss, sizeof(double)), 0) << step;
        EXPECT_EQ(std::memcmp(&ra.gradient_norm, &rb.gradient_norm, sizeof(double)), 0) << step;
        EXPECT_NEAR(ra.loss, rs.loss, 1e-5) << step;
        EXPECT_NEAR(ra.gradient_norm, rs.gradient_norm, 1e-5 * rs.gradient_norm) << step;
        EXPECT_EQ(ra.tokens, rs.tokens);
    }
    const std::vector<float> after_a = all_parameters(a), after_b = all_parameters(b);
    ASSERT_EQ(after_a.size(), after_b.size());
    EXPECT_EQ(std::memcmp(after_a.data(), after_b.data(), after_a.size() * sizeof(float)), 0);
    const std::vector<float> after_serial = all_parameters(serial);
    for (size_t i = 0; i < after_a.size(); ++i) ASSERT_NEAR(after_a[i], after_serial[i], 2e-5) << i;
    // Frozen parts did not move; trainable ones did.
    size_t moved = 0;
    for (size_t i = 0; i < before.size(); ++i) moved += after_a[i] != before[i];
    EXPECT_GT(moved, 0u);
    const Cascade<float> initial = training_cascade(GetParam());
    for (const std::string& part : GetParam().frozen) {
        if (part == "encoder") {
            EXPECT_EQ(a.encoder.parameters, initial.encoder.parameters);
        } else if (part == "decoder") {
            EXPECT_EQ(a.decoder.parameters, initial.decoder.parameters);
        }
    }
}

// A fixed number of shares (TrainingOptions::data_parallel_shares) gives the same bits on any thread count: three
// steps with three shares (micro-batches of 4 and 3 sequences) on 1, 2 and 5 threads, against the default's one
// share per thread on 3 threads; the default itself depends on the thread count, which this fixes. Four shares
// leave one share of the 3-sequence micro-batch empty, eight leave shares 0 and 4 with nothing in either micro-batch
// (they add nothing); one share runs the products on one thread whatever the count.
TEST_P(CascadeDataParallel, FixedSharesGiveTheSameBitsOnAnyThreadCount) {
    const TrainingData data;
    const std::vector<CascadeTrainer<float>::Batch> micro_batches = {data.rows(0, 4), data.rows(4, 7)};
    auto train = [&](int threads, size_t shares) {
        const ThreadCount count(threads);
        TrainingOptions options;
        options.adamw.learning_rate = 1e-2;
        options.max_grad_norm = 0.5;
        options.data_parallel_shares = shares;
        Cascade<float> cascade = training_cascade(GetParam());
        CascadeTrainer<float> trainer(cascade, options);
        EXPECT_EQ(trainer.data_parallel_shares(micro_batches), shares ? shares : size_t(threads));
        for (int step = 0; step < 3; ++step) {
            const StepReport report = trainer.step(micro_batches);
            EXPECT_EQ(report.data_parallel_shares, shares ? shares : size_t(threads));
        }
        return all_parameters(cascade);
    };
    const std::vector<float> reference = train(3, 0);
    for (int threads : {1, 2, 5}) EXPECT_EQ(train(threads, 3), reference) << threads << " threads";
    EXPECT_NE(train(2, 0), reference) << "the default's shares follow the thread count";
    const std::vector<float> four = train(1, 4);
    EXPECT_EQ(train(3, 4), four);
    const std::vector<float> eight = train(1, 8);
    EXPECT_EQ(train(3, 8), eight);
    for (size_t i = 0; i < eight.size(); ++i) ASSERT_NEAR(eight[i], reference[i], 2e-5) << i;
    const std::vector<float> one = train(1, 1);
    EXPECT_EQ(train(4, 1), one);
    for (size_t i = 0; i < one.size(); ++i) ASSERT_NEAR(one[i], reference[i], 2e-5) << i;
}

INSTANTIATE_TEST_SUITE_P(
    Methods, CascadeDataParallel,
    ::testing::Values(TrainingCase{CompressionMethod::C3, ProjectorKind::Linear, {}},
                      TrainingCase{CompressionMethod::C3, ProjectorKind::Mlp, {}},
                      TrainingCase{CompressionMethod::C3, ProjectorKind::Mlp, {"encoder", "decoder"}},
                      TrainingCase{CompressionMethod::C3, ProjectorKind::Linear, {"decoder", "queries"}},
                      TrainingCase{CompressionMethod::C3, ProjectorKind::Linear, {"encoder", "projector"}},
                      TrainingCase{CompressionMethod::MeanPool, ProjectorKind::Linear, {}},
                      TrainingCase{CompressionMethod::Truncate, ProjectorKind::Linear, {}},
                      TrainingCase{CompressionMethod::TruncateLast, ProjectorKind::Linear, {}},
                      TrainingCase{CompressionMethod::NoContext, ProjectorKind::Linear, {}},
                      TrainingCase{CompressionMethod::FullContext, ProjectorKind::Linear, {}},
                      TrainingCase{CompressionMethod::MeanPoolHidden, ProjectorKind::Mlp, {}},
                      TrainingCase{CompressionMethod::Hierarchical, ProjectorKind::Mlp, {}},
                      TrainingCase{CompressionMethod::Hierarchical, ProjectorKind::Linear, {"projector"}}));

// Reconstruction and continuation in one weighted step, in passes of one sequence, against Cascade::loss.
TEST(CascadeDataParallelSteps, WeightedGroupsInPassesMatchTheLoss) {
    const ThreadCount two(2);
    const TrainingData data;
    const TrainingCase c{CompressionMethod::C3, ProjectorKind::Mlp, {}};
    const std::vector<std::vector<CascadeTrainer<float>::Batch>> groups = {{data.rows(0, 3), data.rows(3, 7)},
                                                                           {data.rows(1, 7, true)}};
    const std::vector<double> weights = {0.75, 0.25};
    Cascade<float> oracle = training_cascade(c), parallel = training_cascade(c);
    oracle.zero_gradients();
    CascadeActivations<float> scratch;
    double expected = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
        size_t tokens = 0;
        for (const auto& m : groups[g]) tokens += m.answer_tokens();
        for (const auto& m : groups[g])
            expected += weights[g] / double(tokens) *
                        oracle.loss(m, scratch, {true, float(weights[g] / double(tokens))});
    }
    TrainingOptions options;
    options.adamw.learning_rate = 0;
    options.max_grad_norm = 0;
    options.sequences_per_pass = 1;
    CascadeTrainer<float> trainer(parallel, options);
    ASSERT_EQ(trainer.data_parallel_shares(groups[0]), 2u);
    EXPECT_NEAR(trainer.step_weighted(groups, weights).loss, expected, 1e-6);
    expect_close(all_gradients(parallel), all_gradients(oracle), 2e-5, "weighted gradients");
}

// A micro-batch with fewer sequences than threads runs the serial path; an error in one share reaches the caller
// and no parameter moves.
TEST(CascadeDataParallelSteps, SmallBatchesFallBackAndErrorsReachTheCaller) {
    const ThreadCount three(3);
    TrainingData data;
    const TrainingCase c{CompressionMethod::C3, ProjectorKind::Linear, {}};
    Cascade<float> cascade = training_cascade(c), oracle = training_cascade(c);
    TrainingOptions options;
    CascadeTrainer<float> trainer(cascade, options), serial(oracle, [&] {
        TrainingOptions o = options;
        o.data_parallel = false;
        return o;
    }());
    const std::vector<CascadeTrainer<float>::Batch> small = {data.rows(0, 5), data.rows(5, 7)};
    EXPECT_EQ(trainer.data_parallel_shares(small), 1u);
    EXPECT_EQ(trainer.step(small).loss, serial.step(small).loss);
    EXPECT_EQ(all_parameters(cascade), all_parameters(oracle));
    data.contexts[TrainingData::B * TrainingData::Lc - 1] = 99;  // outside the vocabulary, in the last share
    const std::vector<float> before = all_parameters(cascade);
    EXPECT_THROW(trainer.step({data.rows(0, 7)}), ValueError);
    EXPECT_EQ(all_parameters(cascade), before);
}
