// The official C3 checkpoint layout: a decoder directory (a Qwen2 checkpoint whose config.json says
// model_type "C3", with latent_token_len and contexts_compression_llm_hidden_size) holding the extra tensors
// model.Q.weight and model.mm_projector.*, and the encoder as a full causal LM in the subfolder llm1/.
// c3 also writes what the official layout leaves to code (projector kind, special tokens, prompt) under a
// "c3" key of the decoder config; when it is absent the caller supplies them.
#pragma once
#include <filesystem>

#include "c3/cascade/cascade.hpp"
#include "c3/io/hf_model.hpp"

namespace c3::io {

// The official special tokens of the shared Qwen2 tokenizer.
constexpr int32_t kOfficialImageStart = 151857, kOfficialImageEnd = 151858, kOfficialImagePad = 151859;

inline nlohmann::json read_json_file(const std::string& path) {
    std::ifstream stream = detail::open_for_reading(path);
    try {
        return nlohmann::json::parse(stream);
    } catch (const nlohmann::json::exception& error) {
        throw FormatError("'" + path + "' is not valid JSON: " + error.what());
    }
}

inline std::vector<int32_t> json_ids(const nlohmann::json& value, const std::string& what) {
    std::vector<int32_t> ids;
    C3_CHECK(value.is_array(), ConfigError, what, " must be a list of token ids");
    for (const auto& id : value) {
        C3_CHECK(id.is_number_integer(), ConfigError, what, " must hold integers, got ", id.dump());
        ids.push_back(id.get<int32_t>());
    }
    return ids;
}

// Reads the cascade configuration of a C3 directory. `defaults` supplies what the files do not say
// (special tokens, prompt, stop tokens, projector) for checkpoints written by the official code.
inline CascadeConfig read_c3_config(const std::string& directory, const CascadeConfig& defaults) {
    const std::string config_path = (std::filesystem::path(directory) / "config.json").string();
    const nlohmann::json json = read_json_file(config_path);
    CascadeConfig config = defaults;
    // The official decoder is a Qwen2 ("C3" parses as qwen2); c3 records other decoder types under "c3".
    nlohmann::json decoder_json = json;
    if (json.contains("c3") && json["c3"].is_object() && json["c3"].contains("decoder_model_type"))
        decoder_json["model_type"] = json["c3"]["decoder_model_type"];
    config.decoder = parse_hf_config(decoder_json, config_path);
    C3_CHECK(json.contains("latent_token_len") && json["latent_token_len"].is_number_integer(), ConfigError,
             config_path, ": a C3 config needs an integer 'latent_token_len'");
    config.num_latents = json["latent_token_len"].get<size_t>();
    const std::string encoder_directory = (std::filesystem::path(directory) / "llm1").string();
    C3_CHECK(std::filesystem::is_directory(encoder_directory), FormatError, directory,
             ": a C3 checkpoint needs the encoder in the subfolder llm1/");
    config.encoder = read_hf_config(encoder_directory);
    if (json.contains("contexts_compression_llm_hidden_size")) {
        C3_CHECK(json["contexts_compression_llm_hidden_size"].is_number_integer() &&
                     json["contexts_compression_llm_hidden_size"].get<size_t>() == config.encoder.hidden_size,
                 ConfigError, config_path, ": contexts_compression_llm_hidden_size does not match llm1/'s hidden size ",
                 config.encoder.hidden_size);
    }
    if (json.contains("c3") && json["c3"].is_object()) {
        const nlohmann::json& extra = json["c3"];
        if (extra.contains("method")) {
            C3_CHECK(extra["method"].is_string(), ConfigError, config_path, ": c3.method must be a string");
            config.method = method_from_name(extra["method"].get<std::string>());
        }
        if (extra.contains("projector"))
            config.projector = extra["projector"] == "mlp" ? ProjectorKind::Mlp : ProjectorKind::Linear;
        if (extra.contains("latent_start_token")) config.latent_start_token = extra["latent_start_token"].get<int32_t>();
        if (extra.contains("latent_end_token")) config.latent_end_token = extra["latent_end_token"].get<int32_t>();
        if (extra.contains("latent_pad_token")) config.latent_pad_token = extra["latent_pad_token"].get<int32_t>();
        if (extra.contains("prompt_prefix")) config.prompt_prefix = json_ids(extra["prompt_prefix"], "c3.prompt_prefix");
        if (extra.contains("prompt_suffix")) config.prompt_suffix = json_ids(extra["prompt_suffix"], "c3.prompt_suffix");
        if (extra.contains("stop_tokens")) config.stop_tokens = json_ids(extra["stop_tokens"], "c3.stop_tokens");
    }
    config.validate();
    return config;
}

// With WeightStorage::Bf16 the encoder and decoder matrices stay bf16 in memory (a 1.5B + 3B pair in ~9 GB).
template <typename T>
Cascade<T> load_c3(const std::string& directory, const CascadeConfig& defaults,
                   WeightStorage storage = WeightStorage::Float) {
    Cascade<T> cascade(read_c3_config(directory, defaults), storage);
    const Checkpoint decoder_checkpoint = Checkpoint::open(directory);
    const std::string encoder_directory = (std::filesystem::path(directory) / "llm1").string();
    const Checkpoint encoder_checkpoint = Checkpoint::open(encoder_directory);
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

template <typename T>
void save_c3(const Cascade<T>& cascade, const std::string& directory, DType dtype = DType::F32) {
    const CascadeConfig& c = cascade.config;
    std::filesystem::create_directories(directory);
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
    detail::write_atomically((std::filesystem::path(directory) / "config.json").string(),
                             [&](std::ostream& out) { out.write(text.data(), std::streamsize(text.size())); });
    auto tensors = named_tensors(cascade.decoder.layout, cascade.decoder.parameters.data());
    auto bridge = named_tensors(cascade.bridge, cascade.bridge_parameters.data());
    tensors.insert(tensors.end(), bridge.begin(), bridge.end());
    write_safetensors(directory + "/model.safetensors", tensors, dtype, {{"format", "pt"}});
    save_transformer(cascade.encoder, (std::filesystem::path(directory) / "llm1").string(), dtype);
}

}  // namespace c3::io
