// What both trainers share, in C++ rather than in the bindings: option checks, micro-batch splitting, AdamW
// state save and load (bit-identical continuation), the one training-checkpoint format, the one cascade
// settings parser and the one UTF-8 error.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "c3/analysis/edit_distance.hpp"
#include "c3/io/c3_checkpoint.hpp"
#include "c3/model/generate.hpp"
#include "c3/text/utf8.hpp"
#include "c3/train/cascade_trainer.hpp"
#include "c3/train/checkpoint.hpp"
#include "small_models.hpp"

using namespace c3;
using c3::testing::small_config;

namespace {

CascadeConfig small_cascade() {
    CascadeConfig c;
    c.encoder = small_config();
    c.decoder = small_config();
    c.decoder.hidden_size = 12;
    c.decoder.num_heads = 3;
    c.decoder.num_kv_heads = 1;
    c.num_latents = 3;
    c.latent_start_token = 20;
    c.latent_end_token = 21;
    c.latent_pad_token = 22;
    c.prompt_prefix = {1};
    return c;
}

TrainingOptions options_for_test() {
    TrainingOptions options;
    options.adamw.learning_rate = 1e-2;
    options.adamw.weight_decay = 0.1;
    options.warmup_steps = 1;
    options.total_steps = 8;
    options.data_parallel = false;
    return options;
}

struct TokenBatch {
    size_t batch = 4, length = 6;
    std::vector<int32_t> ids, targets;
    TokenBatch() : ids(batch * length) {
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7 + 3) % 23);
        targets = shifted_targets(ids, {}, batch, length);
    }
    ForwardInput<float> input() const { return {batch, length, ids.data(), nullptr, nullptr, nullptr}; }
};

// Contexts [4, 5] with left padding and answers [4, 3] with right padding.
struct CascadePairs {
    std::vector<int32_t> contexts, answers;
    std::vector<uint8_t> context_mask, answer_mask;
    CascadePairs() : contexts(20), answers(12), context_mask(20, 1), answer_mask(12, 1) {
        for (size_t i = 0; i < contexts.size(); ++i) contexts[i] = int32_t((i * 5 + 2) % 20);
        for (size_t i = 0; i < answers.size(); ++i) answers[i] = int32_t((i * 3 + 1) % 20);
        context_mask[0] = context_mask[5] = 0;
        answer_mask[11] = 0;
    }
    CascadeTrainer<float>::Batch batch() const {
        return {contexts.data(), context_mask.data(), 5, answers.data(), answer_mask.data(), 3, 4};
    }
};

template <typename T>
void expect_equal_parameters(const std::vector<ParameterGroup<T>>& a, const std::vector<ParameterGroup<T>>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t g = 0; g < a.size(); ++g)
        for (size_t i = 0; i < a[g].size(); ++i) ASSERT_EQ(a[g].parameters[i], b[g].parameters[i]) << a[g].name << i;
}
}  // namespace

TEST(TrainingOptions, ValidateRefusesEachBadValue) {
    EXPECT_NO_THROW(TrainingOptions{}.validate());
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    std::vector<std::function<void(TrainingOptions&)>> breakers = {
        [&](TrainingOptions& o) { o.adamw.learning_rate = -1; },  [&](TrainingOptions& o) { o.adamw.learning_rate = inf; },
        [&](TrainingOptions& o) { o.adamw.beta1 = 1; },           [&](TrainingOptions& o) { o.adamw.beta2 = -0.5; },
        [&](TrainingOptions& o) { o.adamw.epsilon = nan; },       [&](TrainingOptions& o) { o.adamw.weight_decay = -0.1; },
        [&](TrainingOptions& o) { o.min_lr_ratio = 2; },          [&](TrainingOptions& o) { o.max_grad_norm = nan; }};
    for (size_t k = 0; k < breakers.size(); ++k) {
        TrainingOptions options;
        breakers[k](options);
        EXPECT_THROW(options.validate(), ValueError) << k;
        Transformer<float> model(small_config());
        EXPECT_THROW((LanguageModelTrainer<float>{model, options}), ValueError) << k;  // trainers validate
    }
}

TEST(GenerationOptions, ValidateRefusesEachBadValue) {
    EXPECT_NO_THROW(GenerationOptions{}.validate());
    GenerationOptions options;
    options.temperature = 0;
    EXPECT_THROW(options.validate(), ValueError);
    options = {};
    options.top_p = 1.5;
    EXPECT_THROW(options.validate(), ValueError);
    options = {};
    options.pad_token = -2;
    EXPECT_THROW(options.validate(), ValueError);
    // generate() checks them too, before any work.
    Transformer<float> model(small_config());
    const TokenBatch data;
    options = {};
    options.top_p = 0;
    EXPECT_THROW(generate(model, data.input(), options), ValueError);
}

TEST(MicroBatches, SplittingInTheTrainerEqualsExplicitParts) {
    const TokenBatch data;
    Transformer<float> split_model(small_config()), explicit_model(small_config());
    LanguageModelTrainer<float> split(split_model, options_for_test()), by_hand(explicit_model, options_for_test());
    const size_t half = data.batch / 2 * data.length;
    for (int step = 0; step < 2; ++step) {
        const StepReport a = split.step(data.input(), data.targets.data(), 2);
        ForwardInput<float> first = data.input(), second = data.input();
        first.batch = second.batch = data.batch / 2;
        second.ids += half;
        const StepReport b = by_hand.step({first, second}, {data.targets.data(), data.targets.data() + half});
        EXPECT_EQ(a.loss, b.loss);
        EXPECT_EQ(a.tokens, b.tokens);
    }
    expect_equal_parameters(split.parameter_groups(), by_hand.parameter_groups());
    EXPECT_THROW(split.step(data.input(), data.targets.data(), 3), ValueError);  // 3 does not divide 4
    EXPECT_THROW(split.step(data.input(), data.targets.data(), 0), ValueError);

    const CascadePairs pairs;
    Cascade<float> split_cascade(small_cascade()), explicit_cascade(small_cascade());
    CascadeTrainer<float> cascade_split(split_cascade, options_for_test());
    CascadeTrainer<float> cascade_by_hand(explicit_cascade, options_for_test());
    const auto whole = pairs.batch();
    const StepReport a = cascade_split.step(whole, 2);
    const StepReport b = cascade_by_hand.step(std::vector<CascadeTrainer<float>::Batch>{whole.sequences(0, 2),
                                                                                       whole.sequences(2, 2)});
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.tokens, 11u);  // one answer position is padding
    expect_equal_parameters(cascade_split.parameter_groups(), cascade_by_hand.parameter_groups());
    EXPECT_THROW(cascade_split.step(whole, 3), ValueError);
}

TEST(CascadeLoss, LossAndGradientsZeroesEveryBufferFirst) {
    const CascadePairs pairs;
    Cascade<float> cascade(small_cascade());
    cascade.init_random(2);
    CascadeActivations<float> activations;
    const double first = CascadeTrainer<float>::mean_loss(cascade, pairs.batch(), true, activations);
    std::vector<std::vector<float>> gradients;
    for (const auto& group : cascade.parameter_groups())
        gradients.emplace_back(group.gradients, group.gradients + group.size());
    // Again: the same values, not twice them, since the buffers were zeroed.
    EXPECT_EQ(CascadeTrainer<float>::mean_loss(cascade, pairs.batch(), true, activations), first);
    const auto groups = cascade.parameter_groups();
    for (size_t g = 0; g < groups.size(); ++g)
        for (size_t i = 0; i < groups[g].size(); ++i) ASSERT_EQ(groups[g].gradients[i], gradients[g][i]);
    // The mean over the 11 real answer tokens: the loss sum divided by them.
    CascadeActivations<float> scratch;
    size_t tokens = 0;
    const auto m = pairs.batch();
    CascadeLossOptions<float> options;
    options.token_count = &tokens;
    const double total = cascade.loss(m, scratch, options);
    EXPECT_EQ(tokens, m.answer_tokens());
    EXPECT_NEAR(first, total / 11.0, 1e-6);
    // Frozen parts read as exact zeros.
    cascade.set_trainable("encoder", false);
    CascadeTrainer<float>::mean_loss(cascade, pairs.batch(), true, activations);
    const auto encoder = cascade.parameter_groups()[0];
    for (size_t i = 0; i < encoder.size(); ++i) ASSERT_EQ(encoder.gradients[i], 0.f);
}

TEST(AdamWState, SaveAndLoadContinueBitForBitForBothTrainers) {
    const TokenBatch data;
    Transformer<float> straight_model(small_config()), first_model(small_config()), resumed_model(small_config());
    LanguageModelTrainer<float> straight(straight_model, options_for_test()), first(first_model, options_for_test());
    for (int s = 0; s < 4; ++s) straight.step(data.input(), data.targets.data(), 1);
    for (int s = 0; s < 2; ++s) first.step(data.input(), data.targets.data(), 1);
    const AdamWState<float> state = first.trainer.optimizer.state(first.parameter_groups());
    EXPECT_EQ(state.step, 2u);
    ASSERT_EQ(state.moments.size(), 2u);
    EXPECT_EQ(state.moments.count("model.first_moment"), 1u);
    resumed_model.parameters = first_model.parameters;
    LanguageModelTrainer<float> resumed(resumed_model, options_for_test());
    resumed.trainer.optimizer.load_state(resumed.parameter_groups(), state, "test");
    for (int s = 0; s < 2; ++s) resumed.step(data.input(), data.targets.data(), 1);
    expect_equal_parameters(straight.parameter_groups(), resumed.parameter_groups());

    const CascadePairs pairs;
    Cascade<float> straight_cascade(small_cascade()), first_cascade(small_cascade()), resumed_cascade(small_cascade());
    CascadeTrainer<float> cascade_straight(straight_cascade, options_for_test());
    CascadeTrainer<float> cascade_first(first_cascade, options_for_test());
    for (int s = 0; s < 4; ++s) cascade_straight.step(pairs.batch(), 1);
    for (int s = 0; s < 2; ++s) cascade_first.step(pairs.batch(), 1);
    const AdamWState<float> cascade_state = cascade_first.trainer.optimizer.state(cascade_first.parameter_groups());
    EXPECT_EQ(cascade_state.moments.size(), 6u);  // encoder, decoder, bridge
    resumed_cascade.encoder.parameters = first_cascade.encoder.parameters;
    resumed_cascade.decoder.parameters = first_cascade.decoder.parameters;
    resumed_cascade.bridge_parameters = first_cascade.bridge_parameters;
    CascadeTrainer<float> cascade_resumed(resumed_cascade, options_for_test());
    cascade_resumed.trainer.optimizer.load_state(cascade_resumed.parameter_groups(), cascade_state, "test");
    for (int s = 0; s < 2; ++s) cascade_resumed.step(pairs.batch(), 1);
    expect_equal_parameters(cascade_straight.parameter_groups(), cascade_resumed.parameter_groups());
}

TEST(AdamWState, BadStateIsRefusedAndChangesNothing) {
    const TokenBatch data;
    Transformer<float> model(small_config());
    LanguageModelTrainer<float> trainer(model, options_for_test());
    // Before the first step the state is zeros of the right size.
    const AdamWState<float> fresh = trainer.trainer.optimizer.state(trainer.parameter_groups());
    EXPECT_EQ(fresh.moments.at("model.second_moment"), std::vector<float>(model.parameters.size(), 0.f));
    trainer.step(data.input(), data.targets.data(), 1);
    const AdamWState<float> good = trainer.trainer.optimizer.state(trainer.parameter_groups());
    auto missing = good, short_moment = good, not_finite = good, negative = good;
    missing.moments.erase("model.second_moment");
    short_moment.moments["model.first_moment"].pop_back();
    not_finite.moments["model.first_moment"][3] = std::numeric_limits<float>::quiet_NaN();
    negative.moments["model.second_moment"][3] = -1.f;
    missing.step = short_moment.step = not_finite.step = negative.step = 7;
    auto& optimizer = trainer.trainer.optimizer;
    EXPECT_THROW(optimizer.load_state(trainer.parameter_groups(), missing, "test"), ValueError);
    EXPECT_THROW(optimizer.load_state(trainer.parameter_groups(), short_moment, "test"), ShapeError);
    EXPECT_THROW(optimizer.load_state(trainer.parameter_groups(), not_finite, "test"), ValueError);
    EXPECT_THROW(optimizer.load_state(trainer.parameter_groups(), negative, "test"), ValueError);
    EXPECT_EQ(optimizer.step, 1u);
    EXPECT_EQ(optimizer.first_moment[0], good.moments.at("model.first_moment"));
}

TEST(TrainingCheckpoint, OneFormatForBothTrainers) {
    // The cascade trainer's groups through the same file format: written, read back, continued bit for bit.
    const CascadePairs pairs;
    Cascade<float> straight_cascade(small_cascade()), first_cascade(small_cascade()), resumed_cascade(small_cascade());
    resumed_cascade.init_random(9);  // everything must come from the file
    CascadeTrainer<float> straight(straight_cascade, options_for_test()), first(first_cascade, options_for_test());
    CascadeTrainer<float> resumed(resumed_cascade, options_for_test());
    for (int s = 0; s < 3; ++s) straight.step(pairs.batch(), 1);
    first.step(pairs.batch(), 1);
    const std::string path = ::testing::TempDir() + "/c3_cascade_training_checkpoint.safetensors";
    save_training_checkpoint(path, first.parameter_groups(), first.trainer.optimizer, {{"c3.extra", "{}"}});
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    for (const char* name : {"encoder.parameters", "decoder.first_moment", "bridge.second_moment"})
        EXPECT_TRUE(file.contains(name)) << name;
    auto groups = resumed.parameter_groups();
    const io::Metadata metadata = load_training_checkpoint(path, groups, resumed.trainer.optimizer);
    EXPECT_EQ(metadata.at("c3.step"), "1");
    EXPECT_EQ(metadata.at("c3.extra"), "{}");
    for (int s = 0; s < 2; ++s) resumed.step(pairs.batch(), 1);
    expect_equal_parameters(straight.parameter_groups(), resumed.parameter_groups());
    // A language-model trainer's groups do not fit this file: refused, nothing changed.
    Transformer<float> model(small_config());
    LanguageModelTrainer<float> trainer(model, options_for_test());
    const std::vector<float> before = model.parameters;
    auto lm_groups = trainer.parameter_groups();
    EXPECT_THROW(load_training_checkpoint(path, lm_groups, trainer.trainer.optimizer), FormatError);
    EXPECT_EQ(model.parameters, before);
}

TEST(CascadeSettings, OneParserRefusesUnknownProjectorsAndKeys) {
    CascadeConfig config = small_cascade();
    io::read_cascade_settings(nlohmann::json{{"projector", "mlp"}, {"stop_tokens", {4, 5}}}, "test", config);
    EXPECT_EQ(config.projector, ProjectorKind::Mlp);
    EXPECT_EQ(config.stop_tokens, (std::vector<int32_t>{4, 5}));
    for (const nlohmann::json& bad : {nlohmann::json{{"projector", "conv"}}, nlohmann::json{{"projector", 3}},
                                      nlohmann::json{{"projecter", "mlp"}}, nlohmann::json{{"latent_pad_token", -1}},
                                      nlohmann::json{{"method", "vision"}}}) {
        CascadeConfig target = small_cascade();
        EXPECT_THROW(io::read_cascade_settings(bad, "test", target), ConfigError) << bad.dump();
    }
    try {
        CascadeConfig target = small_cascade();
        io::read_cascade_settings(nlohmann::json{{"projector", "conv"}}, "test", target);
    } catch (const ConfigError& error) {
        EXPECT_NE(std::string(error.what()).find("\"conv\""), std::string::npos) << error.what();
    }
}

TEST(Utf8, EveryLayerThrowsTheOneUtf8Error) {
    for (const std::string& bytes : {std::string("ab\xFF"), std::string("a\xC3"), std::string("\xED\xA0\x80")}) {
        EXPECT_THROW(c3::decode_utf8(bytes), Utf8Error);
        EXPECT_THROW(text::decode_utf8(bytes), Utf8Error);
        EXPECT_THROW(analysis::char_edit_distance(bytes, "a"), Utf8Error);
    }
}
