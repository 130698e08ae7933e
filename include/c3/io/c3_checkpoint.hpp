// The official C3 checkpoint layout: a decoder directory (a Qwen2 checkpoint whose config.json says
// model_type "C3", with latent_token_len and contexts_compression_llm_hidden_size) holding the extra tensors
// model.Q.weight and model.mm_projector.*, and the encoder as a full causal LM in the subfolder llm1/.
// c3 also writes what the official layout leaves to code (projector kind, special tokens, prompt) under a
// "c3" key of the decoder config; when it is absent the caller supplies them.
#pragma once
#include <algorithm>
#include <filesystem>
#include <initializer_list>
#include <map>

#include "c3/cascade/cascade.hpp"
#include "c3/io/hf_model.hpp"

namespace c3::io {

// The official special tokens of the shared Qwen2 tokenizer.
constexpr int32_t kOfficialImageStart = 151857, kOfficialImageEnd = 151858, kOfficialImagePad = 151859;

// The one parser of the cascade settings that a model config does not hold: projector, method, special tokens,
// prompt and stop tokens. It reads the "c3" object of a C3 config.json and the dicts of the Python bindings
// (CascadeModel(config), Cascade.load's defaults), so both accept and refuse the same things: an unknown key or
// value is a ConfigError naming it. Keys absent (or null) keep config's values; `also_known` are keys the caller
// reads itself.
inline void read_cascade_settings(const nlohmann::json& settings, const std::string& source, CascadeConfig& config,
                                  std::initializer_list<const char*> also_known = {}) {
    const detail::ConfigReader reader{settings, source};
    C3_CHECK(settings.is_object(), ConfigError, "config '", source, "': the cascade settings must be an object, got ",
             settings.type_name());
    static const char* const known[] = {"projector",        "method",        "latent_start_token",
                                        "latent_end_token", "latent_pad_token", "prompt_prefix",
                                        "prompt_suffix",    "stop_tokens"};
    for (const auto& item : settings.items()) {
        bool found = std::find_if(std::begin(known), std::end(known),
                                  [&](const char* key) { return item.key() == key; }) != std::end(known);
        for (const char* key : also_known) found = found || item.key() == key;
        C3_CHECK(found, ConfigError, "config '", source, "': unknown cascade config key '", item.key(), "'");
    }
    const std::string projector =
        reader.optional_string("projector", config.projector == ProjectorKind::Mlp ? "mlp" : "linear");
    C3_CHECK(projector == "mlp" || projector == "linear", ConfigError, "config '", source,
             "': projector must be \"linear\" or \"mlp\", got \"", projector, "\"");
    config.projector = projector == "mlp" ? ProjectorKind::Mlp : ProjectorKind::Linear;
    config.method = method_from_name(reader.optional_string("method", method_name(config.method)));
    config.latent_start_token = reader.optional_vocabulary_id("latent_start_token", config.latent_start_token);
    config.latent_end_token = reader.optional_vocabulary_id("latent_end_token", config.latent_end_token);
    config.latent_pad_token = reader.optional_vocabulary_id("latent_pad_token", config.latent_pad_token);
    config.prompt_prefix = reader.optional_id_list("prompt_prefix", config.prompt_prefix);
    config.prompt_suffix = reader.optional_id_list("prompt_suffix", config.prompt_suffix);
    config.stop_tokens = reader.optional_id_list("stop_tokens", config.stop_tokens);
}

// The cascade configuration from a C3 decoder config.json (already parsed) and the encoder's config.
// `defaults` supplies what the file does not say (special tokens, prompt, stop tokens, projector) for
// checkpoints written by the official code. Every value goes through detail::ConfigReader: integers are
// range-checked before they are narrowed, and the result is validated (sizes, products, token ranges).
inline CascadeConfig parse_c3_config(const nlohmann::json& json, const std::string& config_path,
                                     const TransformerConfig& encoder, const CascadeConfig& defaults) {
    C3_CHECK(json.is_object(), FormatError, "config '", config_path, "' must be a JSON object, got ", json.type_name());
    const detail::ConfigReader reader{json, config_path};
    CascadeConfig config = defaults;
    const auto extra_found = json.find("c3");
    const bool has_extra = extra_found != json.end() && !extra_found->is_null();
    if (has_extra && !extra_found->is_object()) reader.wrong_type("c3", *extra_found, "an object");
    // The official decoder is a Qwen2 ("C3" parses as qwen2); c3 records other decoder types under "c3".
    nlohmann::json decoder_json = json;
    if (has_extra && extra_found->contains("decoder_model_type"))
        decoder_json["model_type"] = (*extra_found)["decoder_model_type"];
    config.decoder = parse_hf_config(decoder_json, config_path);
    config.encoder = encoder;
    C3_CHECK(reader.has("latent_token_len"), ConfigError, "config '", config_path,
             "': a C3 config needs an integer 'latent_token_len'");
    config.num_latents = reader.required_size("latent_token_len");
    if (reader.has("contexts_compression_llm_hidden_size"))
        C3_CHECK(reader.required_size("contexts_compression_llm_hidden_size") == encoder.hidden_size, ConfigError,
                 "config '", config_path, "': contexts_compression_llm_hidden_size does not match llm1/'s hidden size ",
                 encoder.hidden_size);
    if (has_extra) read_cascade_settings(*extra_found, config_path, config, {"decoder_model_type"});
    try {
        config.validate();
    } catch (const ConfigError& error) {
        throw ConfigError("config '" + config_path + "': " + error.what());
    }
    return config;
}

// Reads the cascade configuration of a C3 directory (config.json and llm1/config.json).
inline CascadeConfig read_c3_config(const std::string& directory, const CascadeConfig& defaults) {
    const std::string config_path = (std::filesystem::path(directory) / "config.json").string();
    const nlohmann::json json = read_json_file(config_path);
    const std::string encoder_directory = (std::filesystem::path(directory) / "llm1").string();
    C3_CHECK(std::filesystem::is_directory(encoder_directory), FormatError, directory,
             ": a C3 checkpoint needs the encoder in the subfolder llm1/");
    return parse_c3_config(json, config_path, read_hf_config(encoder_directory), defaults);
}

// With WeightStorage::Bf16 the encoder and decoder matrices stay bf16 in memory (a 1.5B + 3B pair in ~9 GB).
template <typename T>
Cascade<T> load_c3(const std::string& directory, const CascadeConfig& defaults,
                   WeightStorage storage = WeightStorage::Float) {
    const CascadeConfig config = read_c3_config(directory, defaults);
    const ShardedSafetensorsReader decoder_checkpoint = ShardedSafetensorsReader::open(directory);
    const std::string encoder_directory = (std::filesystem::path(directory) / "llm1").string();
    const ShardedSafetensorsReader encoder_checkpoint = ShardedSafetensorsReader::open(encoder_directory);
    check_layout(decoder_checkpoint, transformer_layout(config.decoder), directory);
    check_layout(decoder_checkpoint, bridge_layout(config), directory);
    check_layout(encoder_checkpoint, transformer_layout(config.encoder), encoder_directory);
    Cascade<T> cascade(config, storage);  // allocated only once the files are known to hold every tensor
    if (storage == WeightStorage::Bf16) {
        read_layout_bf16(decoder_checkpoint, cascade.decoder, directory);
        read_layout_bf16(encoder_checkpoint, cascade.encoder, encoder_directory);
    } else {
        read_layout(decoder_checkpoint, cascade.decoder.layout, cascade.decoder.parameters.data(), directory);
        read_layout(encoder_checkpoint, cascade.encoder.layout, cascade.encoder.parameters.data(), encoder_directory);
    }
    read_layout(decoder_checkpoint, cascade.bridge, cascade.bridge_parameters.data(), directory);
    return cascade;
}

// `extra_files` (name in the directory -> source path), e.g. the tokenizer.json, are copied into the staging
// directory, so they arrive with the weights in the one swap and a failed copy leaves the old directory intact.
template <typename T>
void save_c3(const Cascade<T>& cascade, const std::string& directory, DType dtype = DType::F32,
             const std::map<std::string, std::string>& extra_files = {}) {
    const CascadeConfig& c = cascade.config;
    C3_CHECK(!cascade.encoder.stores_bf16() && !cascade.decoder.stores_bf16(), ValueError,
             "saving a bf16-stored cascade is not supported; load it in float");
    nlohmann::json json = to_hf_config(c.decoder);
    json["model_type"] = "C3";
    json["architectures"] = {"C3QwenForCausalLM"};
    json["latent_token_len"] = c.num_latents;
    json["contexts_compression_llm_hidden_size"] = c.encoder.hidden_size;
    json["c3"] = {{"projector", c.projector == ProjectorKind::Mlp ? "mlp" : "linear"},
                  {"method", method_name(c.method)},
                  {"decoder_model_type", c.decoder.model_type},
                  {"latent_start_token", c.latent_start_token},
                  {"latent_end_token", c.latent_end_token},
                  {"latent_pad_token", c.latent_pad_token},
                  {"prompt_prefix", c.prompt_prefix},
                  {"prompt_suffix", c.prompt_suffix},
                  {"stop_tokens", c.stop_tokens}};
    const std::string text = json.dump(2) + "\n";
    auto tensors = named_tensors(cascade.decoder.layout, cascade.decoder.parameters.data());
    auto bridge = named_tensors(cascade.bridge, cascade.bridge_parameters.data());
    tensors.insert(tensors.end(), bridge.begin(), bridge.end());
    // Decoder, bridge and encoder are one unit: written into a staging directory that replaces the old one.
    detail::write_directory_atomically(directory, [&](const std::string& staging) {
        const std::filesystem::path root(staging);
        detail::write_atomically((root / "config.json").string(),
                                 [&](std::ostream& out) { out.write(text.data(), std::streamsize(text.size())); });
        write_safetensors((root / "model.safetensors").string(), tensors, dtype, {{"format", "pt"}});
        std::filesystem::create_directory(root / "llm1");
        detail::write_transformer_files(cascade.encoder, (root / "llm1").string(), dtype);
        for (const auto& [name, source] : extra_files) {
            C3_CHECK(!name.empty() && std::filesystem::path(name).filename() == std::filesystem::path(name), ValueError,
                     "extra file name '", name, "' must be a plain file name");
            std::error_code error;
            std::filesystem::copy_file(source, root / name, std::filesystem::copy_options::overwrite_existing, error);
            C3_CHECK(!error, IOError, "cannot copy '", source, "' into '", directory, "': ", error.message());
        }
    });
}

}  // namespace c3::io
