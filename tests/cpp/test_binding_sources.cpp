// The C++ functions the Python bindings translate to, so that a rule lives once in C++: c3's own model config
// (io::parse_model_config, behind c3._core.config_from_dict), a cascade from two models (cascade_from_models, behind
// CascadeModel.from_models) and the official checkpoint's defaults (io::official_cascade_defaults, behind
// CascadeModel.load).
#include <gtest/gtest.h>

#include <string>

#include "c3/io/c3_checkpoint.hpp"

using namespace c3;

namespace {

// The message of the E that body throws (a failure when it throws nothing or something else).
template <typename E, typename Body>
std::string error_message(Body&& body) {
    try {
        body();
    } catch (const E& error) {
        return error.what();
    } catch (const std::exception& error) {
        ADD_FAILURE() << "unexpected exception: " << error.what();
        return {};
    }
    ADD_FAILURE() << "no exception";
    return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TransformerConfig model_config(const std::string& model_type, size_t hidden_size) {
    return io::parse_model_config({{"model_type", model_type}, {"vocab_size", 40}, {"hidden_size", hidden_size},
                                   {"intermediate_size", 24}, {"num_layers", 1}, {"num_heads", 2},
                                   {"num_kv_heads", 1}, {"max_position_embeddings", 32}},
                                  "test");
}

}  // namespace

TEST(ModelConfig, AbsentKeysKeepTheDefaultsAndHeadDimFollowsTheHeads) {
    const TransformerConfig defaults;
    const TransformerConfig empty = io::parse_model_config(nlohmann::json::object(), "empty");
    EXPECT_EQ(empty.model_type, defaults.model_type);
    EXPECT_EQ(empty.vocab_size, defaults.vocab_size);
    EXPECT_EQ(empty.num_kv_heads, defaults.num_kv_heads);  // the struct's default, not num_heads as in config.json
    EXPECT_EQ(empty.head_dim, defaults.hidden_size / defaults.num_heads);
    EXPECT_EQ(empty.rope_theta, defaults.rope_theta);
    EXPECT_EQ(empty.bos_token_id, -1);

    nlohmann::json json = {{"hidden_size", 96}, {"num_heads", 6}, {"num_kv_heads", 3}};
    EXPECT_EQ(io::parse_model_config(json, "dict").head_dim, 16u);
    json["head_dim"] = nullptr;  // null: not given
    EXPECT_EQ(io::parse_model_config(json, "dict").head_dim, 16u);
    json["head_dim"] = 32;
    EXPECT_EQ(io::parse_model_config(json, "dict").head_dim, 32u);

    const TransformerConfig llama = io::parse_model_config(
        {{"model_type", "llama"}, {"attention_bias", false}, {"tie_word_embeddings", true}, {"rope_theta", 5e5},
         {"rms_norm_eps", 1e-5}, {"initializer_range", 0.1}, {"bos_token_id", 3}, {"eos_token_id", nullptr},
         {"max_position_embeddings", 300}, {"vocab_size", 70u}},
        "dict");
    EXPECT_EQ(llama.model_type, "llama");
    EXPECT_FALSE(llama.attention_bias);
    EXPECT_TRUE(llama.tie_word_embeddings);
    EXPECT_EQ(llama.rope_theta, 5e5);
    EXPECT_EQ(llama.rms_norm_eps, 1e-5);
    EXPECT_EQ(llama.initializer_range, 0.1);
    EXPECT_EQ(llama.bos_token_id, 3);
    EXPECT_EQ(llama.eos_token_id, -1);
    EXPECT_EQ(llama.max_position_embeddings, 300u);
    EXPECT_EQ(llama.vocab_size, 70u);
}

TEST(ModelConfig, RefusesWhatTheDictFormatDoesNotHoldNamingKeyAndSource) {
    auto message_for = [](const nlohmann::json& json) {
        return error_message<ConfigError>([&] { io::parse_model_config(json, "my dict"); });
    };
    const std::pair<nlohmann::json, std::string> cases[] = {
        {nlohmann::json{{"hidden", 64}}, "unknown config key 'hidden'"},
        // config.json's name, not c3's
        {nlohmann::json{{"num_hidden_layers", 2}}, "unknown config key 'num_hidden_layers'"},
        {nlohmann::json{{"hidden_size", "64"}}, "hidden_size"},
        {nlohmann::json{{"hidden_size", 64.0}}, "hidden_size"},
        {nlohmann::json{{"num_layers", -1}}, "num_layers"},
        {nlohmann::json{{"attention_bias", 1}}, "attention_bias"},
        {nlohmann::json{{"vocab_size", nullptr}}, "'vocab_size' must not be null"},
        {nlohmann::json{{"rope_theta", "1e4"}}, "rope_theta"},
        {nlohmann::json{{"model_type", "C3"}}, "model_type must be 'qwen2' or 'llama'"},
        // one id, not config.json's list
        {nlohmann::json{{"bos_token_id", nlohmann::json::array({3})}}, "bos_token_id"},
        {nlohmann::json{{"eos_token_id", -2}}, "eos_token_id"},
        {nlohmann::json{{"eos_token_id", 18446744073709551615u}}, "eos_token_id"},
        {nlohmann::json{{"hidden_size", 100}, {"num_heads", 6}}, "not a multiple of num_heads"},
        {nlohmann::json{{"num_heads", 4}, {"num_kv_heads", 3}}, "num_key_value_heads"},  // validate()
    };
    for (const auto& [json, expected] : cases) {
        const std::string message = message_for(json);
        EXPECT_TRUE(contains(message, expected)) << json.dump() << ": " << message;
        EXPECT_TRUE(contains(message, "my dict")) << json.dump() << ": " << message;
    }
    EXPECT_THROW(io::parse_model_config(nlohmann::json::array(), "list"), ConfigError);
}

TEST(HfConfig, AnUnsignedTokenIdBeyondIntIsRefusedNotWrappedToNone) {
    nlohmann::json json = {{"model_type", "llama"}, {"vocab_size", 40}, {"hidden_size", 16},
                           {"intermediate_size", 24}, {"num_hidden_layers", 1}, {"num_attention_heads", 2}};
    json["eos_token_id"] = 18446744073709551615u;  // read as int64_t it would be -1 ("none")
    EXPECT_TRUE(contains(error_message<ConfigError>([&] { io::parse_hf_config(json, "c.json"); }), "eos_token_id"));
    json["eos_token_id"] = {7, 8};
    EXPECT_EQ(io::parse_hf_config(json, "c.json").eos_token_id, 7);  // config.json's list: the first id
}

TEST(CascadeFromModels, TakesTheModelsConfigsAndWeightsAndSeedsTheBridge) {
    Transformer<float> encoder(model_config("llama", 16)), decoder(model_config("qwen2", 24));
    encoder.init_random(11);
    decoder.init_random(12);
    CascadeConfig settings;
    settings.num_latents = 3;
    settings.latent_start_token = 30;
    settings.latent_end_token = 31;
    settings.latent_pad_token = 32;
    settings.stop_tokens = {33};
    const Cascade<float> cascade = cascade_from_models(encoder, decoder, settings, 5);
    EXPECT_EQ(cascade.config.encoder.hidden_size, 16u);
    EXPECT_EQ(cascade.config.decoder.hidden_size, 24u);
    EXPECT_EQ(cascade.config.decoder.model_type, "qwen2");
    EXPECT_EQ(cascade.config.num_latents, 3u);
    EXPECT_EQ(cascade.config.stop_tokens, settings.stop_tokens);
    EXPECT_EQ(cascade.encoder.parameters, encoder.parameters);
    EXPECT_EQ(cascade.decoder.parameters, decoder.parameters);

    // Q and the projector are those of init_random(seed).
    settings.encoder = encoder.config;
    settings.decoder = decoder.config;
    Cascade<float> seeded(settings);
    seeded.init_random(5);
    EXPECT_EQ(cascade.bridge_parameters, seeded.bridge_parameters);
    seeded.init_random(6);
    EXPECT_NE(cascade.bridge_parameters, seeded.bridge_parameters);
}

TEST(CascadeFromModels, RefusesBf16ModelsAndInvalidSettings) {
    Transformer<float> encoder(model_config("llama", 16)), decoder(model_config("llama", 16));
    CascadeConfig settings;
    settings.num_latents = 2;
    settings.latent_start_token = 1;
    settings.latent_end_token = 2;
    settings.latent_pad_token = 3;
    Transformer<float> stored(model_config("llama", 16));
    stored.store_as_bf16();
    EXPECT_TRUE(contains(error_message<ValueError>([&] { cascade_from_models(stored, decoder, settings, 0); }),
                         "float-stored"));
    EXPECT_THROW(cascade_from_models(encoder, stored, settings, 0), ValueError);
    settings.latent_pad_token = 40;  // outside the models' vocabulary of 40
    EXPECT_THROW(cascade_from_models(encoder, decoder, settings, 0), ConfigError);
    settings.latent_pad_token = 3;
    settings.num_latents = 31;  // with its two markers past the encoder's 32 positions
    EXPECT_THROW(cascade_from_models(encoder, decoder, settings, 0), ConfigError);
}

TEST(OfficialDefaults, AreTheOfficialSpecialTokensAndOtherwiseTheStructsDefaults) {
    const CascadeConfig defaults = io::official_cascade_defaults(), plain;
    EXPECT_EQ(defaults.latent_start_token, io::kOfficialImageStart);
    EXPECT_EQ(defaults.latent_end_token, io::kOfficialImageEnd);
    EXPECT_EQ(defaults.latent_pad_token, io::kOfficialImagePad);
    EXPECT_EQ(defaults.num_latents, plain.num_latents);
    EXPECT_EQ(defaults.projector, plain.projector);
    EXPECT_EQ(defaults.method, plain.method);
    EXPECT_TRUE(defaults.prompt_prefix.empty() && defaults.prompt_suffix.empty() && defaults.stop_tokens.empty());
}
