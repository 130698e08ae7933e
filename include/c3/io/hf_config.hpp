// Hugging Face config.json <-> TransformerConfig for Qwen2 and Llama (and the C3 decoder, a Qwen2 whose
// model_type is "C3"). Reads what transformers 4.x writes (top-level rope_theta, rope_scaling) and what
// transformers 5 writes (rope_parameters); writes a config.json that transformers 5.24 loads back.
#pragma once
#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "c3/core/errors.hpp"
#include "c3/core/json.hpp"
#include "c3/io/files.hpp"
#include "c3/model/config.hpp"

namespace c3::io {

namespace detail {

// Typed access to config keys; every failure names the key and the source file. A key holding null counts as
// absent, as transformers treats it.
struct ConfigReader {
    const nlohmann::json& json;
    const std::string& source;

    bool has(const char* key) const {
        const auto found = json.find(key);
        return found != json.end() && !found->is_null();
    }
    const nlohmann::json& required(const char* key) const {
        C3_CHECK(has(key), ConfigError, "config '", source, "': missing required key '", key, "'");
        return json.at(key);
    }
    [[noreturn]] void wrong_type(const char* key, const nlohmann::json& value, const char* expected) const {
        throw ConfigError("config '" + source + "': '" + key + "' must be " + expected + ", got " + value.dump());
    }
    size_t size_value(const char* key, const nlohmann::json& value) const {
        size_t result = 0;
        if (!json_to_size(value, result)) wrong_type(key, value, "a non-negative integer");
        return result;
    }
    size_t required_size(const char* key) const { return size_value(key, required(key)); }
    size_t optional_size(const char* key, size_t fallback) const {
        return has(key) ? size_value(key, json.at(key)) : fallback;
    }
    double number_value(const char* key, const nlohmann::json& value) const {
        if (!value.is_number()) wrong_type(key, value, "a number");
        return value.get<double>();
    }
    double optional_number(const char* key, double fallback) const {
        return has(key) ? number_value(key, json.at(key)) : fallback;
    }
    bool optional_bool(const char* key, bool fallback) const {
        if (!has(key)) return fallback;
        const nlohmann::json& value = json.at(key);
        if (!value.is_boolean()) wrong_type(key, value, "true or false");
        return value.get<bool>();
    }
    std::string optional_string(const char* key, const std::string& fallback) const {
        if (!has(key)) return fallback;
        const nlohmann::json& value = json.at(key);
        if (!value.is_string()) wrong_type(key, value, "a string");
        return value.get<std::string>();
    }
    // A token id of the vocabulary: an integer in [0, 2^31).
    int32_t vocabulary_id(const char* key, const nlohmann::json& value) const {
        if (!value.is_number_integer() || (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(INT32_MAX)) ||
            (!value.is_number_unsigned() && (value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX)))
            wrong_type(key, value, "a token id (an integer in [0, 2^31))");
        return int32_t(value.get<int64_t>());
    }
    int32_t optional_vocabulary_id(const char* key, int32_t fallback) const {
        return has(key) ? vocabulary_id(key, json.at(key)) : fallback;
    }
    std::vector<int32_t> optional_id_list(const char* key, const std::vector<int32_t>& fallback) const {
        if (!has(key)) return fallback;
        const nlohmann::json& value = json.at(key);
        if (!value.is_array()) wrong_type(key, value, "a list of token ids");
        std::vector<int32_t> ids;
        for (const auto& id : value) ids.push_back(vocabulary_id(key, id));
        return ids;
    }
    // A token id: an integer, null (-1), or (where lists_allowed, as in config.json) a list whose first entry is
    // used (generation stops at any of them; the model itself needs one).
    int token_id(const char* key, bool lists_allowed = true) const {
        if (!has(key)) return -1;
        const nlohmann::json* value = &json.at(key);
        const char* expected =
            lists_allowed ? "a token id (an integer, a list of integers or null)" : "a token id (an integer or null)";
        if (value->is_array()) {
            if (!lists_allowed) wrong_type(key, *value, expected);
            if (value->empty()) return -1;
            value = &value->front();
            if (value->is_null()) return -1;
        }
        // An unsigned value is compared as one: 2^64 - 1 read as int64_t would pass as -1.
        const bool in_range = value->is_number_unsigned()
                                  ? value->get<uint64_t>() <= uint64_t(INT_MAX)
                                  : value->is_number_integer() && value->get<int64_t>() >= -1 &&
                                        value->get<int64_t>() <= INT_MAX;
        if (!in_range) wrong_type(key, *value, expected);
        return int(value->get<int64_t>());
    }
};

inline void check_rope_type(const nlohmann::json& parameters, const std::string& source) {
    for (const char* key : {"rope_type", "type"}) {
        const auto found = parameters.find(key);
        if (found == parameters.end() || found->is_null()) continue;
        const std::string type = found->is_string() ? found->get<std::string>() : found->dump();
        C3_CHECK(type == "default", ConfigError, "config '", source, "': rope scaling type ", type,
                 " is not supported (only \"default\")");
    }
}

// rope_parameters (transformers 5) wins over rope_scaling and the top-level rope_theta, as in transformers.
inline double read_rope_theta(const ConfigReader& reader) {
    double theta = reader.optional_number("rope_theta", 10000.0);
    for (const char* key : {"rope_scaling", "rope_parameters"}) {
        if (!reader.has(key)) continue;
        const nlohmann::json& parameters = reader.json.at(key);
        if (!parameters.is_object()) reader.wrong_type(key, parameters, "an object or null");
        for (const auto& [name, value] : parameters.items())
            C3_CHECK(!value.is_object(), ConfigError, "config '", reader.source, "': per-layer-type ", key,
                     " ('", name, "') are not supported");
        check_rope_type(parameters, reader.source);
        const auto found = parameters.find("rope_theta");
        if (found != parameters.end() && !found->is_null()) {
            C3_CHECK(found->is_number(), ConfigError, "config '", reader.source, "': '", key,
                     ".rope_theta' must be a number, got ", found->dump());
            theta = found->get<double>();
        }
    }
    return theta;
}

// head_dim where a config does not give it: hidden_size / the number of heads, which must divide it. heads_key
// names the heads in the config's own words.
inline size_t head_dim_from_heads(size_t hidden_size, size_t num_heads, const char* heads_key,
                                  const std::string& source) {
    C3_CHECK(num_heads > 0 && hidden_size % num_heads == 0, ConfigError, "config '", source, "': hidden_size (",
             hidden_size, ") is not a multiple of ", heads_key, " (", num_heads, ") and there is no head_dim");
    return hidden_size / num_heads;
}

// Validates a parsed config, naming the source in the error.
inline void validate_config(const TransformerConfig& config, const std::string& source) {
    try {
        config.validate();
    } catch (const ConfigError& error) {
        throw ConfigError("config '" + source + "': " + error.what());
    }
}

}  // namespace detail

// Parses a whole JSON file. Every failure (syntax, invalid UTF-8, nesting past kMaxJsonDepth) is a
// FormatError naming the file; the message carries no raw bytes of the input.
inline nlohmann::json read_json_file(const std::string& path) {
    std::ifstream stream = detail::open_for_reading(path);
    std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
    return parse_json_text(text, "'" + path + "'");
}

inline TransformerConfig parse_hf_config(const nlohmann::json& json, const std::string& source_name) {
    C3_CHECK(json.is_object(), FormatError, "config '", source_name, "' must be a JSON object, got ", json.type_name());
    const detail::ConfigReader reader{json, source_name};
    TransformerConfig config;
    const std::string model_type = reader.optional_string("model_type", "");
    C3_CHECK(!model_type.empty(), ConfigError, "config '", source_name, "': missing required key 'model_type'");
    const bool is_qwen2 = model_type == "qwen2" || model_type == "C3" || model_type == "c3";
    C3_CHECK(is_qwen2 || model_type == "llama", ConfigError, "config '", source_name, "': model_type '", model_type,
             "' is not supported (qwen2, llama or C3)");
    config.model_type = is_qwen2 ? "qwen2" : "llama";  // C3's decoder is a Qwen2 with extra tensors

    config.vocab_size = reader.required_size("vocab_size");
    config.hidden_size = reader.required_size("hidden_size");
    config.intermediate_size = reader.required_size("intermediate_size");
    config.num_layers = reader.required_size("num_hidden_layers");
    config.num_heads = reader.required_size("num_attention_heads");
    C3_CHECK(config.num_heads > 0, ConfigError, "config '", source_name, "': num_attention_heads must be positive");
    config.num_kv_heads = reader.optional_size("num_key_value_heads", config.num_heads);
    config.head_dim = reader.has("head_dim") ? reader.required_size("head_dim")
                                             : detail::head_dim_from_heads(config.hidden_size, config.num_heads,
                                                                           "num_attention_heads", source_name);
    config.max_position_embeddings = reader.optional_size("max_position_embeddings", config.max_position_embeddings);
    config.rms_norm_eps = reader.optional_number("rms_norm_eps", 1e-6);
    config.rope_theta = detail::read_rope_theta(reader);
    config.tie_word_embeddings = reader.optional_bool("tie_word_embeddings", false);
    // transformers' Qwen2 attention always has q/k/v biases whatever the config says; Llama follows the key.
    config.attention_bias = is_qwen2 ? true : reader.optional_bool("attention_bias", false);
    config.initializer_range = reader.optional_number("initializer_range", config.initializer_range);
    config.bos_token_id = reader.token_id("bos_token_id");
    config.eos_token_id = reader.token_id("eos_token_id");

    // Features this engine does not implement are refused rather than silently computed wrong.
    const std::string activation = reader.optional_string("hidden_act", "silu");
    C3_CHECK(activation == "silu", ConfigError, "config '", source_name, "': hidden_act '", activation,
             "' is not supported (only silu)");
    C3_CHECK(!reader.optional_bool("mlp_bias", false), ConfigError, "config '", source_name,
             "': mlp_bias true is not supported");
    if (reader.has("layer_types")) {
        const nlohmann::json& layer_types = json.at("layer_types");
        if (!layer_types.is_array()) reader.wrong_type("layer_types", layer_types, "a list of strings");
        for (const auto& type : layer_types)
            C3_CHECK(type == "full_attention", ConfigError, "config '", source_name, "': layer type ", type.dump(),
                     " is not supported (only full_attention)");
    } else if (is_qwen2 && reader.optional_bool("use_sliding_window", false) && reader.has("sliding_window")) {
        C3_CHECK(config.num_layers <= reader.optional_size("max_window_layers", 28), ConfigError, "config '",
                 source_name, "': sliding-window attention is not supported");
    }
    detail::validate_config(config, source_name);
    return config;
}

// c3's own model config: an object keyed by TransformerConfig's field names (model_type, vocab_size, hidden_size,
// intermediate_size, num_layers, num_heads, num_kv_heads, head_dim, ...), as the Python bindings' config dicts
// are. Absent keys keep TransformerConfig's defaults, except head_dim, which is hidden_size / num_heads when absent
// or null; bos_token_id and eos_token_id may be null (none). An unknown key, a wrong type or any other null is a
// ConfigError naming the key and `source`. The result is validated.
inline TransformerConfig parse_model_config(const nlohmann::json& json, const std::string& source) {
    C3_CHECK(json.is_object(), ConfigError, "config '", source, "' must be an object, got ", json.type_name());
    static const char* const known[] = {"model_type", "vocab_size", "hidden_size", "intermediate_size",
                                        "num_layers", "num_heads", "num_kv_heads", "head_dim",
                                        "max_position_embeddings", "rope_theta", "rms_norm_eps", "attention_bias",
                                        "tie_word_embeddings", "initializer_range", "bos_token_id", "eos_token_id"};
    const detail::ConfigReader reader{json, source};
    for (const auto& item : json.items()) {
        const std::string& key = item.key();
        if (std::find(std::begin(known), std::end(known), key) == std::end(known)) {
            std::string names;
            for (const char* name : known) names += (names.empty() ? "" : ", ") + std::string(name);
            throw ConfigError("config '" + source + "': unknown config key '" + key + "' (known: " + names + ")");
        }
        const bool may_be_null = key == "head_dim" || key == "bos_token_id" || key == "eos_token_id";
        C3_CHECK(may_be_null || !item.value().is_null(), ConfigError, "config '", source, "': '", key,
                 "' must not be null");
    }
    TransformerConfig config;
    config.model_type = reader.optional_string("model_type", config.model_type);
    C3_CHECK(config.model_type == "qwen2" || config.model_type == "llama", ConfigError, "config '", source,
             "': model_type must be 'qwen2' or 'llama', got '", config.model_type, "'");
    config.vocab_size = reader.optional_size("vocab_size", config.vocab_size);
    config.hidden_size = reader.optional_size("hidden_size", config.hidden_size);
    config.intermediate_size = reader.optional_size("intermediate_size", config.intermediate_size);
    config.num_layers = reader.optional_size("num_layers", config.num_layers);
    config.num_heads = reader.optional_size("num_heads", config.num_heads);
    config.num_kv_heads = reader.optional_size("num_kv_heads", config.num_kv_heads);
    config.head_dim = reader.has("head_dim")
                          ? reader.required_size("head_dim")
                          : detail::head_dim_from_heads(config.hidden_size, config.num_heads, "num_heads", source);
    config.max_position_embeddings = reader.optional_size("max_position_embeddings", config.max_position_embeddings);
    config.rope_theta = reader.optional_number("rope_theta", config.rope_theta);
    config.rms_norm_eps = reader.optional_number("rms_norm_eps", config.rms_norm_eps);
    config.attention_bias = reader.optional_bool("attention_bias", config.attention_bias);
    config.tie_word_embeddings = reader.optional_bool("tie_word_embeddings", config.tie_word_embeddings);
    config.initializer_range = reader.optional_number("initializer_range", config.initializer_range);
    // One id each: the list form of config.json (generation's stop ids) is not c3's.
    config.bos_token_id = reader.token_id("bos_token_id", false);
    config.eos_token_id = reader.token_id("eos_token_id", false);
    detail::validate_config(config, source);
    return config;
}

// path_or_dir is a config.json or a directory holding one.
inline TransformerConfig read_hf_config(const std::string& path_or_dir) {
    std::error_code error;
    const std::string path = std::filesystem::is_directory(path_or_dir, error)
                                 ? (std::filesystem::path(path_or_dir) / "config.json").string()
                                 : path_or_dir;
    return parse_hf_config(read_json_file(path), path);
}

inline nlohmann::json to_hf_config(const TransformerConfig& config) {
    config.validate();
    const bool is_qwen2 = config.model_type == "qwen2";
    C3_CHECK(is_qwen2 || config.model_type == "llama", ConfigError, "model_type '", config.model_type,
             "' has no Hugging Face config (qwen2 or llama)");
    C3_CHECK(!is_qwen2 || config.attention_bias, ConfigError,
             "a qwen2 model always has q/k/v biases in transformers; use model_type llama for attention_bias false");
    auto token = [](int id) { return id < 0 ? nlohmann::json(nullptr) : nlohmann::json(id); };
    nlohmann::json json = {
        {"architectures", {is_qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
        {"model_type", config.model_type},
        {"vocab_size", config.vocab_size},
        {"hidden_size", config.hidden_size},
        {"intermediate_size", config.intermediate_size},
        {"num_hidden_layers", config.num_layers},
        {"num_attention_heads", config.num_heads},
        {"num_key_value_heads", config.num_kv_heads},
        {"head_dim", config.head_dim},
        {"max_position_embeddings", config.max_position_embeddings},
        {"rms_norm_eps", config.rms_norm_eps},
        {"rope_theta", config.rope_theta},
        {"rope_parameters", {{"rope_theta", config.rope_theta}, {"rope_type", "default"}}},
        {"tie_word_embeddings", config.tie_word_embeddings},
        {"initializer_range", config.initializer_range},
        {"bos_token_id", token(config.bos_token_id)},
        {"eos_token_id", token(config.eos_token_id)},
        {"hidden_act", "silu"},
        {"attention_dropout", 0.0},
        {"use_cache", true},
        {"torch_dtype", "float32"},
    };
    if (is_qwen2) {
        json["use_sliding_window"] = false;
        json["sliding_window"] = nullptr;
        json["max_window_layers"] = config.num_layers;
    } else {
        json["attention_bias"] = config.attention_bias;
        json["mlp_bias"] = false;
        json["pretraining_tp"] = 1;
    }
    return json;
}

// Writes directory/config.json (creating the directory).
inline void write_hf_config(const TransformerConfig& config, const std::string& directory) {
    const std::string text = to_hf_config(config).dump(2) + "\n";
    std::error_code error;
    std::filesystem::create_directories(directory, error);
    C3_CHECK(!error && std::filesystem::is_directory(directory), IOError, "cannot create directory '", directory,
             "': ", error.message());
    detail::write_atomically((std::filesystem::path(directory) / "config.json").string(),
                             [&](std::ostream& out) { out.write(text.data(), std::streamsize(text.size())); });
}

}  // namespace c3::io
