// The whole transformer: KV-cache decoding equals the full forward, and backward matches central differences
// in double for every parameter tensor and for the input embeddings.
#include <gtest/gtest.h>

#include "c3/model/generate.hpp"
#include "c3/model/transformer.hpp"
#include "gradcheck.hpp"

using namespace c3;

namespace {
TransformerConfig tiny_config(bool bias, bool tied) {
    TransformerConfig c;
    c.vocab_size = 19;
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 4;
    c.attention_bias = bias;
    c.tie_word_embeddings = tied;
    c.model_type = tied ? "llama" : "qwen2";  // llama with bias also has an o_proj bias
    c.initializer_range = 0.3;
    return c;
}
}  // namespace

TEST(Transformer, KvCacheDecodeEqualsFullForward) {
    Transformer<float> model(tiny_config(true, false));
    model.init_random(3);
    const size_t B = 2, L = 9, V = model.config.vocab_size;
    std::vector<int32_t> ids = {1, 4, 2, 8, 5, 7, 3, 3, 9, /**/ 0, 0, 6, 2, 11, 12, 1, 5, 4};
    std::vector<uint8_t> mask = {1, 1, 1, 1, 1, 1, 1, 1, 1, /**/ 0, 0, 1, 1, 1, 1, 1, 1, 1};  // left padding
    Activations<float> full;
    ForwardInput<float> in{B, L, ids.data(), nullptr, mask.data(), nullptr};
    model.forward(in, full, LogitsMode::All, false);

    // Prefill 4 tokens, then one token at a time.
    KVCache<float> cache;
    cache.reset(model.config, B, L);
    Activations<float> step;
    std::vector<int32_t> prefix_ids, prefix_mask_ids;
    std::vector<uint8_t> prefix_mask;
    const size_t prefill = 4;
    for (size_t b = 0; b < B; ++b)
        for (size_t t = 0; t < prefill; ++t) {
            prefix_ids.push_back(ids[b * L + t]);
            prefix_mask.push_back(mask[b * L + t]);
        }
    ForwardInput<float> first{B, prefill, prefix_ids.data(), nullptr, prefix_mask.data(), nullptr};
    model.forward(first, step, LogitsMode::All, false, &cache);
    for (size_t b = 0; b < B; ++b)
        for (size_t t = 0; t < prefill; ++t) {
            if (!mask[b * L + t]) continue;
            for (size_t v = 0; v < V; ++v)
                ASSERT_NEAR(step.logits[(b * prefill + t) * V + v], full.logits[(b * L + t) * V + v], 1e-5);
        }
    for (size_t t = prefill; t < L; ++t) {
        std::vector<int32_t> column = {ids[t], ids[L + t]};
        ForwardInput<float> next{B, 1, column.data(), nullptr, nullptr, nullptr};
        model.forward(next, step, LogitsMode::Last, false, &cache);
        for (size_t b = 0; b < B; ++b)
            for (size_t v = 0; v < V; ++v)
                ASSERT_NEAR(step.logits[b * V + v], full.logits[(b * L + t) * V + v], 1e-5) << "t=" << t;
    }
}

// Forward on the transposed weights (broadcast_gemm reading them in place) equals the ordinary forward, with
// biases and without, tied and untied output heads; a change to the parameters after transpose_weights shows that
// the snapshot really is what forward multiplies.
TEST(Transformer, ForwardOnTransposedWeightsEqualsForward) {
    for (const bool bias : {true, false})
        for (const bool tied : {true, false}) {
            TransformerConfig config = tiny_config(bias, tied);
            config.hidden_size = 40, config.intermediate_size = 70, config.head_dim = 10;  // tails of 16 and 32
            Transformer<float> model(config);
            model.init_random(7);
            StepWeights<float> transposed;
            model.transpose_weights(transposed);
            if (!ops::kBroadcastGemm) {
                EXPECT_TRUE(transposed.transposed_storage.empty());
                continue;
            }
            ASSERT_NE(transposed.transposed.lm_head, nullptr);
            ASSERT_EQ(transposed.transposed.embed == nullptr, !tied);
            const size_t B = 3, L = 9;
            std::vector<int32_t> ids(B * L);
            for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 5 + 2) % config.vocab_size);
            Activations<float> plain, fast;
            model.forward({B, L, ids.data()}, plain, LogitsMode::All, true);
            model.forward({B, L, ids.data()}, fast, LogitsMode::All, true, nullptr, &transposed);
            ASSERT_EQ(plain.logits.size(), fast.logits.size());
            for (size_t i = 0; i < plain.logits.size(); ++i)
                ASSERT_NEAR(plain.logits[i], fast.logits[i], 1e-4f) << "bias " << bias << " tied " << tied << " at " << i;
            for (size_t i = 0; i < plain.layers[1].q.size(); ++i)
                ASSERT_NEAR(plain.layers[1].q[i], fast.layers[1].q[i], 1e-4f);
            // The snapshot, not the live parameters: moving a weight now changes only the ordinary forward.
            model.parameters[model.parameter("model.layers.0.mlp.down_proj.weight").offset] += 1.0f;
            model.forward({B, L, ids.data()}, plain, LogitsMode::All, false);
            Activations<float> again;
            model.forward({B, L, ids.data()}, again, LogitsMode::All, false, nullptr, &transposed);
            EXPECT_EQ(again.logits, fast.logits);
            EXPECT_NE(plain.logits, fast.logits);
        }
}

TEST(Transformer, GreedyGenerationMatchesRepeatedFullForward) {
    Transformer<float> model(tiny_config(false, true));
    model.init_random(5);
    std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
    GenerationOptions options;
    options.max_new_tokens = 6;
    ForwardInput<float> in{1, prompt.size(), prompt.data(), nullptr, nullptr, nullptr};
    GenerationResult result = generate(model, in, options);
    std::vector<int32_t> sequence = prompt;
    for (size_t step = 0; step < options.max_new_tokens; ++step) {
        Activations<float> a;
        ForwardInput<float> full{1, sequence.size(), sequence.data(), nullptr, nullptr, nullptr};
        model.forward(full, a, LogitsMode::Last, false);
        const int32_t best = int32_t(std::max_element(a.logits.begin(), a.logits.end()) - a.logits.begin());
        ASSERT_EQ(result.tokens[step], best) << "step " << step;
        sequence.push_back(best);
    }
}

TEST(Transformer, PositionsPastTheModelAreErrors) {
    TransformerConfig c = tiny_config(false, false);
    c.max_position_embeddings = 4;
    Transformer<float> model(c);
    std::vector<int32_t> ids(5, 1);
    Activations<float> a;
    ForwardInput<float> in{1, 5, ids.data(), nullptr, nullptr, nullptr};
    EXPECT_THROW(model.forward(in, a, LogitsMode::All, false), ValueError);
}

class TransformerGradient : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(TransformerGradient, EveryParameterAndTheInputEmbeddings) {
    const auto [bias, tied] = GetParam();
    Transformer<double> model(tiny_config(bias, tied));
    model.init_random(7);
    const size_t B = 2, L = 5, V = model.config.vocab_size, d = model.config.hidden_size;
    std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    std::vector<uint8_t> mask = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};  // right padding
    auto logit_weights = c3::testing::random_vector(B * L * V, 8);
    for (size_t t = 8; t < 10; ++t)
        for (size_t v = 0; v < V; ++v) logit_weights[t * V + v] = 0;  // padding rows carry no loss
    // Ids input: gradients reach every parameter including the embedding table.
    auto loss = [&]() {
        Activations<double> a;
        model.forward({B, L, ids.data(), nullptr, mask.data(), nullptr}, a, LogitsMode::All, true);
        return c3::testing::weighted_sum(std::vector<double>(a.logits.begin(), a.logits.begin() + B * L * V),
                                         logit_weights);
    };
    Activations<double> a;
    model.forward({B, L, ids.data(), nullptr, mask.data(), nullptr}, a, LogitsMode::All, true);
    model.enable_gradients();
    model.zero_gradients();
    model.backward(a, logit_weights.data(), nullptr, nullptr, true);
    for (const auto& info : model.layout) {
        std::vector<double> values(model.parameters.begin() + info.offset,
                                   model.parameters.begin() + info.offset + info.size);
        std::vector<double> analytic(model.gradients.begin() + info.offset,
                                     model.gradients.begin() + info.offset + info.size);
        auto loss_of_tensor = [&]() {
            std::copy(values.begin(), values.end(), model.parameters.begin() + info.offset);
            return loss();
        };
        c3::testing::expect_gradient(loss_of_tensor, values, analytic, info.name.c_str(), 12);
        std::copy(values.begin(), values.end(), model.parameters.begin() + info.offset);
    }
    // Embeddings input: the gradient on the input embeddings.
    std::vector<double> embeddings(B * L * d);
    model.embed(embeddings.data(), ids.data(), B * L);
    auto loss_from_embeddings = [&]() {
        Activations<double> e;
        model.forward({B, L, nullptr, embeddings.data(), mask.data(), nullptr}, e, LogitsMode::All, true);
        return c3::testing::weighted_sum(std::vector<double>(e.logits.begin(), e.logits.begin() + B * L * V),
                                         logit_weights);
    };
    Activations<double> e;
    model.forward({B, L, nullptr, embeddings.data(), mask.data(), nullptr}, e, LogitsMode::All, true);
    std::vector<double> dinput(B * L * d, 0);
    model.backward(e, logit_weights.data(), nullptr, dinput.data(), false);
    c3::testing::expect_gradient(loss_from_embeddings, embeddings, dinput, "input embeddings", 40);
}

INSTANTIATE_TEST_SUITE_P(BiasAndTying, TransformerGradient,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));
