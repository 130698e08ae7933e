// Hostile configurations, moves without copies, atomic directory saves and near-linear BPE, in C++.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "c3/io/c3_checkpoint.hpp"
#include "c3/io/latents.hpp"
#include "c3/text/bpe.hpp"
#include "c3/train/checkpoint.hpp"

using namespace c3;
namespace fs = std::filesystem;

namespace {

fs::path fresh_directory(const std::string& name) {
    const fs::path path = fs::temp_directory_path() / ("c3_hardening_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path);
    fs::create_directories(path);
    return path;
}

nlohmann::json small_hf_config() {
    return nlohmann::json::parse(R"({"model_type": "qwen2", "vocab_size": 300, "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 8, "max_position_embeddings": 64})");
}

TransformerConfig small_config() { return io::parse_hf_config(small_hf_config(), "small"); }

}  // namespace

TEST(Hardening, OverflowingSizesAreConfigErrors) {
    // heads * head_dim wrapped to 0 before, and forward wrote through it.
    for (auto change : std::vector<std::pair<const char*, nlohmann::json>>{
             {"num_attention_heads", uint64_t(1) << 62}, {"head_dim", uint64_t(1) << 40},
             {"max_position_embeddings", uint64_t(1) << 62}, {"vocab_size", uint64_t(1) << 63},
             {"hidden_size", -1}, {"rope_theta", std::numeric_limits<double>::infinity()}}) {
        nlohmann::json json = small_hf_config();
        json[change.first] = change.second;
        if (std::string(change.first) == "num_attention_heads") json["num_key_value_heads"] = change.second;
        EXPECT_THROW(io::parse_hf_config(json, "x"), ConfigError) << change.first;
    }
    TransformerConfig config = small_config();
    config.num_heads = config.num_kv_heads = size_t(1) << 62;
    config.head_dim = 4;
    EXPECT_THROW(config.validate(), ConfigError);
}

TEST(Hardening, C3ConfigValuesAreRangeChecked) {
    nlohmann::json json = small_hf_config();
    json["model_type"] = "C3";
    json["latent_token_len"] = 4;
    json["c3"] = {{"latent_start_token", 1}, {"latent_end_token", 2}, {"latent_pad_token", 3}, {"stop_tokens", {4}}};
    const TransformerConfig encoder = small_config();
    EXPECT_EQ(io::parse_c3_config(json, "c3", encoder, {}).num_latents, 4u);
    auto refused = [&](const std::function<void(nlohmann::json&)>& change) {
        nlohmann::json changed = json;
        change(changed);
        EXPECT_THROW(io::parse_c3_config(changed, "c3", encoder, {}), ConfigError) << changed.dump();
    };
    refused([](nlohmann::json& j) { j["latent_token_len"] = -1; });
    refused([](nlohmann::json& j) { j["latent_token_len"] = UINT64_MAX; });
    refused([](nlohmann::json& j) { j["latent_token_len"] = 63; });  // with its markers, past the 64 positions
    refused([](nlohmann::json& j) { j["c3"]["latent_start_token"] = (int64_t(1) << 32) + 1; });
    refused([](nlohmann::json& j) { j["c3"]["latent_start_token"] = "1"; });
    refused([](nlohmann::json& j) { j["c3"]["stop_tokens"] = {-5}; });
    refused([](nlohmann::json& j) { j["c3"]["prompt_prefix"] = {1, 2, 300}; });
    refused([](nlohmann::json& j) { j["c3"]["projector"] = "conv"; });
    refused([](nlohmann::json& j) { j["c3"] = 5; });
    EXPECT_THROW(io::parse_c3_config(nlohmann::json::array(), "c3", encoder, {}), FormatError);
}

TEST(Hardening, InvalidUtf8IsAReadableFormatError) {
    const std::string text = "{\"model_type\": \"qwen2\xff\"}";
    try {
        parse_json_text(text, "config 'x'");
        FAIL() << "no exception";
    } catch (const FormatError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("UTF-8"), std::string::npos) << message;
        for (unsigned char c : message) EXPECT_LT(c, 0x80) << message;  // escaped, so printable as any text
    }
}

TEST(Hardening, ModelsMoveWithoutCopyingTheirBuffers) {
    Transformer<float> model(small_config());
    const float* parameters = model.parameters.data();
    Transformer<float> moved(std::move(model));
    EXPECT_EQ(moved.parameters.data(), parameters);  // the same heap block: nothing was copied
    EXPECT_EQ(moved.weights.embed, parameters);      // and the views follow it
    Transformer<float> assigned(small_config());
    assigned = std::move(moved);
    EXPECT_EQ(assigned.parameters.data(), parameters);
    const Transformer<float> copy(assigned);  // an explicit copy still copies, and rebinds
    EXPECT_NE(copy.parameters.data(), parameters);
    EXPECT_EQ(copy.weights.embed, copy.parameters.data());
    EXPECT_EQ(copy.parameters, assigned.parameters);
    CascadeConfig cascade_config;
    cascade_config.encoder = cascade_config.decoder = small_config();
    cascade_config.num_latents = 4;
    Cascade<float> cascade(cascade_config);
    const float* encoder = cascade.encoder.parameters.data();
    Cascade<float> moved_cascade(std::move(cascade));
    EXPECT_EQ(moved_cascade.encoder.parameters.data(), encoder);
}

TEST(Hardening, LoadChecksTheHeaderBeforeAllocating) {
    const fs::path directory = fresh_directory("header");
    io::save_transformer(Transformer<float>(small_config()), directory.string());
    nlohmann::json json = io::read_json_file((directory / "config.json").string());
    json["vocab_size"] = 1 << 30;  // 1e9 x 16 floats = 64 GB: allocating first would fail or swap
    std::ofstream((directory / "config.json").string()) << json.dump();
    EXPECT_THROW(io::load_transformer<float>(directory.string()), ShapeError);
    EXPECT_THROW(io::load_transformer<float>(directory.string(), WeightStorage::Bf16), ShapeError);
    fs::remove_all(directory);
}

TEST(Hardening, FailedDirectorySaveLeavesTheOldOne) {
    const fs::path root = fresh_directory("atomic");
    const fs::path directory = root / "model";
    const Transformer<float> model(small_config());
    io::save_transformer(model, directory.string());
    std::ofstream((directory / "tokenizer.json").string()) << "{}";
    EXPECT_THROW(io::detail::write_directory_atomically(directory.string(),
                                                        [](const std::string& staging) {
                                                            std::ofstream((fs::path(staging) / "config.json").string()) << "{}";
                                                            throw IOError("disk full");
                                                        }),
                 IOError);
    const Transformer<float> reloaded = io::load_transformer<float>(directory.string());
    EXPECT_EQ(reloaded.parameters, model.parameters);
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(root)) names.push_back(entry.path().filename().string());
    EXPECT_EQ(names, std::vector<std::string>{"model"});  // no staging directory left behind
    // A save that succeeds keeps the files it does not write.
    Transformer<float> other(small_config());
    other.init_random(7);
    io::save_transformer(other, directory.string());
    EXPECT_TRUE(fs::exists(directory / "tokenizer.json"));
    EXPECT_EQ(io::load_transformer<float>(directory.string()).parameters, other.parameters);
    fs::remove_all(root);
}

TEST(Hardening, ConcurrentWritersOfOnePathNeverMix) {
    const fs::path root = fresh_directory("writers");
    const std::string path = (root / "x.safetensors").string();
    const std::vector<float> ones(1 << 16, 1.0f), twos(1 << 16, 2.0f);
    for (int round = 0; round < 10; ++round) {
        auto write = [&](const std::vector<float>& values) {
            io::write_safetensors(path, std::vector<io::NamedTensor<float>>{{"x", {values.size()}, values.data()}},
                                  io::DType::F32);
        };
        std::thread first(write, std::cref(ones)), second(write, std::cref(twos));
        first.join();
        second.join();
        const std::vector<float> read = io::SafetensorsFile::open(path).read<float>("x");
        EXPECT_TRUE(read == ones || read == twos);
    }
    EXPECT_EQ(std::distance(fs::directory_iterator(root), fs::directory_iterator()), 1);
    fs::remove_all(root);
}

TEST(Hardening, TrainingCheckpointRefusesNonFiniteMomentsAndChangesNothing) {
    const fs::path root = fresh_directory("moments");
    Transformer<float> model(small_config());
    std::vector<ParameterGroup<float>> groups = {model.parameter_group("model")};
    AdamW<float> optimizer;
    optimizer.first_moment = {std::vector<float>(groups[0].size(), 0.f)};
    optimizer.second_moment = {std::vector<float>(groups[0].size(), 0.f)};
    optimizer.first_moment[0][3] = std::numeric_limits<float>::quiet_NaN();
    const std::string path = (root / "checkpoint.safetensors").string();
    save_training_checkpoint(path, groups, optimizer);
    Transformer<float> target(small_config());
    target.init_random(5);
    const std::vector<float> before = target.parameters;
    std::vector<ParameterGroup<float>> target_groups = {target.parameter_group("model")};
    AdamW<float> target_optimizer;
    EXPECT_THROW(load_training_checkpoint(path, target_groups, target_optimizer), ValueError);
    EXPECT_EQ(target.parameters, before);
    EXPECT_TRUE(target_optimizer.first_moment.empty());
    fs::remove_all(root);
}

TEST(Hardening, LatentsReaderChecksKindRankAndCount) {
    const fs::path root = fresh_directory("latents");
    const std::string path = (root / "latents.safetensors").string();
    const std::vector<float> values(2 * 3 * 4, 0.5f);
    auto write = [&](const Shape& shape, const io::Metadata& metadata) {
        io::write_safetensors(path, std::vector<io::NamedTensor<float>>{{"latents", shape, values.data()}},
                              io::DType::F32, metadata);
    };
    write({2, 3, 4}, {{"c3.kind", "latents"}, {"c3.num_latents", "3"}});
    const io::LatentsFile file = io::read_latents(path);
    EXPECT_EQ(file.shape, (Shape{2, 3, 4}));
    EXPECT_EQ(file.latents, values);
    write({24}, {{"c3.kind", "latents"}, {"c3.num_latents", "3"}});
    EXPECT_THROW(io::read_latents(path), FormatError);
    write({2, 3, 2, 2}, {{"c3.kind", "latents"}, {"c3.num_latents", "3"}});
    EXPECT_THROW(io::read_latents(path), FormatError);
    write({2, 3, 4}, {{"c3.kind", "latents"}, {"c3.num_latents", "4"}});
    EXPECT_THROW(io::read_latents(path), FormatError);
    write({2, 3, 4}, {});
    EXPECT_THROW(io::read_latents(path), FormatError);
    fs::remove_all(root);
}

// ---- BPE: the heap merge against the quadratic definition --------------------------------------------------

TEST(Hardening, HeapBpeMergeEqualsTheQuadraticDefinition) {
    // A random merge table over a 4-letter alphabet: merged tokens feed later merges, pairs repeat and overlap.
    std::mt19937 rng(12345);
    for (int table = 0; table < 20; ++table) {
        std::vector<std::string> tokens = {"a", "b", "c", "d"};
        nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"d", 3}};
        nlohmann::json merges = nlohmann::json::array();
        std::set<std::pair<int32_t, int32_t>> pairs;
        for (int m = 0; m < 30; ++m) {
            const int32_t left = int32_t(rng() % tokens.size()), right = int32_t(rng() % tokens.size());
            if (!pairs.insert({left, right}).second) continue;
            const std::string merged = tokens[size_t(left)] + tokens[size_t(right)];
            if (!vocab.contains(merged)) {
                vocab[merged] = tokens.size();
                tokens.push_back(merged);
            }
            merges.push_back(tokens[size_t(left)] + " " + tokens[size_t(right)]);
        }
        const nlohmann::json json = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
                                     {"pre_tokenizer", {{"type", "ByteLevel"}}}};
        const text::BpeTokenizer tokenizer = text::BpeTokenizer::from_json_string(json.dump());
        for (int word = 0; word < 50; ++word) {
            std::vector<int32_t> symbols(1 + rng() % (word < 45 ? 40 : 3000));
            for (auto& symbol : symbols) symbol = int32_t(rng() % 4);
            std::vector<int32_t> merged = symbols, reference = symbols;
            tokenizer.merge_symbols(merged);
            tokenizer.merge_symbols_by_rescanning(reference);
            ASSERT_EQ(merged, reference) << "table " << table << ", word " << word;
        }
    }
}
