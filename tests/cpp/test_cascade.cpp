// The cascade: gradients through decoder -> projector -> Q -> encoder against central differences in double,
// freezing, and reconstruction through the KV cache equal to teacher-forced argmax.
#include <gtest/gtest.h>

#include "c3/cascade/cascade.hpp"
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
                                           CompressionMethod::FullContext));

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
