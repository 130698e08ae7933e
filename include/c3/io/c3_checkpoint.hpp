// The official C3 checkpoint layout: a decoder directory (a Qwen2 checkpoint whose config.json says
// model_type "C3", with latent_token_len and contexts_compression_llm_hidden_size) holding the extra tensors
// model.Q.weight and model.mm_projector.*, and the encoder as a full causal LM in the subfolder llm1/.
// c3 also writes what the official layout leaves to code (projector kind, special tokens, prompt) under a
// "c3" key of the decoder config; when it is absent the caller supplies them.
#pragma once
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <type_traits>

#include "c3/cascade/cascade.hpp"
#include "c3/core/float16.hpp"
#include "c3/core/sha256.hpp"
#include "c3/io/hf_model.hpp"

namespace c3::io {

// The official special tokens of the shared Qwen2 tokenizer.
constexpr int32_t kOfficialImageStart = 151857, kOfficialImageEnd = 151858, kOfficialImagePad = 151859;

// The defaults for loading an official checkpoint, whose config.json has no "c3" key: the official special tokens,
// and CascadeConfig's own defaults for the rest (a caller's defaults then replace what they name).
inline CascadeConfig official_cascade_defaults() {
    CascadeConfig defaults;
    defaults.latent_start_token = kOfficialImageStart;
    defaults.latent_end_token = kOfficialImageEnd;
    defaults.latent_pad_token = kOfficialImagePad;
    return defaults;
}

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
    // "identity" is what cascade_identity gave when the directory was saved: a record, recomputed from the weights.
    if (has_extra) read_cascade_settings(*extra_found, config_path, config, {"decoder_model_type", "identity"});
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

// The decoder's config.json of a C3 directory: the Hugging Face config with the C3 keys, and under "c3" what the
// official layout leaves to code.
inline nlohmann::json c3_config_json(const CascadeConfig& c) {
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
    return json;
}

namespace detail {
inline float round_to_dtype(float value, DType dtype) {
    if (dtype == DType::BF16) return bf16_to_float(float_to_bf16(value));
    if (dtype == DType::F16) return half_to_float(float_to_half(value));
    return value;
}
}  // namespace detail

// Which cascade this is, as 16 hex digits: SHA-256 over its configuration (the saved config.json's content and
// the encoder's) and every parameter of encoder, decoder, queries and projector, as float32 values. Two cascades
// that differ in any weight differ here, so latents made by one are refused by the other (c3.load_latents).
// The tensors are hashed one by one in parallel and their digests hashed in layout order, so the result never
// depends on the thread count. `stored` rounds every value as a save in that dtype stores it (save_c3 records
// the identity of the directory it writes, which is the identity of the cascade loaded back from it).
template <typename T>
std::string cascade_identity(const Cascade<T>& cascade, DType stored = DType::F32) {
    std::vector<std::pair<std::string, const Transformer<T>*>> parts = {{"encoder.", &cascade.encoder},
                                                                       {"decoder.", &cascade.decoder}};
    struct Entry {
        std::string name;
        const Transformer<T>* model;
        size_t index;  // layout entry, or the bridge entry when model is null
    };
    std::vector<Entry> entries;
    for (const auto& [prefix, model] : parts)
        for (size_t e = 0; e < model->layout.size(); ++e) entries.push_back({prefix + model->layout[e].name, model, e});
    for (size_t e = 0; e < cascade.bridge.size(); ++e) entries.push_back({cascade.bridge[e].name, nullptr, e});
    std::vector<Sha256::Digest> digests(entries.size());
    parallel_for_checked(entries.size(), [&](size_t k) {
        const Entry& entry = entries[k];
        const ParameterInfo& info = entry.model ? entry.model->layout[entry.index] : cascade.bridge[entry.index];
        // value(i): the tensor's i-th value as a float, from whichever storage holds it.
        const bool bf16_matrix = entry.model && entry.model->stores_bf16() && Bf16Storage<T>::is_matrix(info);
        const uint16_t* bf16_values = bf16_matrix ? entry.model->bf16.matrices.data() + info.offset : nullptr;
        const T* values = bf16_matrix ? nullptr
                          : !entry.model ? cascade.bridge_parameters.data() + info.offset
                          : entry.model->stores_bf16() ? entry.model->bf16.vectors.data() +
                                                             entry.model->bf16.vector_offsets[entry.index]
                                                       : entry.model->parameters.data() + info.offset;
        Sha256 hash;
        if (std::is_same_v<T, float> && values && stored != DType::BF16 && stored != DType::F16) {
            hash.update(values, info.size * sizeof(float));  // the common case: the buffer as it is
        } else {
            std::vector<float> chunk;
            for (size_t begin = 0; begin < info.size; begin += 16384) {
                chunk.resize(std::min<size_t>(16384, info.size - begin));
                for (size_t i = 0; i < chunk.size(); ++i)
                    chunk[i] = detail::round_to_dtype(values ? float(values[begin + i])
                                                             : bf16_to_float(bf16_values[begin + i]), stored);
                hash.update(chunk.data(), chunk.size() * sizeof(float));
            }
        }
        digests[k] = hash.finish();
    }, 1 << 16);
    Sha256 total;
    total.update("c3.identity/1\n");
    total.update(c3_config_json(cascade.config).dump());
    total.update("\n");
    total.update(to_hf_config(cascade.config.encoder).dump());
    for (size_t k = 0; k < entries.size(); ++k) {
        total.update("\n" + entries[k].name + "\n");
        total.update(digests[k].data(), digests[k].size());
    }
    return total.finish_hex().substr(0, 16);
}

// A fast 64-bit fingerprint of every parameter's bytes (encoder, decoder, queries, projector, in either storage), at
// memory speed: what c3.Cascade keys its cached identity on, so that cascade_identity's SHA-256 runs again only
// when a weight changed (through training, set_parameters or a NumPy view alike). Each 64-bit word goes through a
// bijective step ((state ^ word) * odd constant, then an xor-shift), so a change to any one word always changes
// the fingerprint. Chunks of fixed size are hashed in parallel and combined in order: the same on any thread count.
template <typename T>
uint64_t parameters_fingerprint(const Cascade<T>& cascade) {
    struct Buffer {
        const unsigned char* data;
        size_t bytes;
    };
    std::vector<Buffer> buffers;
    auto add = [&](const auto& values) {
        buffers.push_back({reinterpret_cast<const unsigned char*>(values.data()),
                           values.size() * sizeof(values[0])});
    };
    for (const Transformer<T>* model : {&cascade.encoder, &cascade.decoder}) {
        add(model->parameters);
        add(model->bf16.matrices);
        add(model->bf16.vectors);
    }
    add(cascade.bridge_parameters);
    constexpr size_t kChunk = size_t(1) << 20;  // bytes
    struct Piece {
        size_t buffer, offset, bytes;
    };
    std::vector<Piece> pieces;
    for (size_t b = 0; b < buffers.size(); ++b)
        for (size_t offset = 0; offset < buffers[b].bytes; offset += kChunk)
            pieces.push_back({b, offset, std::min(kChunk, buffers[b].bytes - offset)});
    constexpr uint64_t kOdd = 0x9E3779B97F4A7C15ull;
    auto step = [](uint64_t state, uint64_t word) {
        state = (state ^ word) * kOdd;
        return state ^ (state >> 32);
    };
    std::vector<uint64_t> hashes(pieces.size());
    parallel_for(pieces.size(), [&](size_t k) {
        const unsigned char* data = buffers[pieces[k].buffer].data + pieces[k].offset;
        const size_t bytes = pieces[k].bytes;
        uint64_t lanes[4] = {1, 2, 3, 4};
        size_t i = 0;
        for (; i + 32 <= bytes; i += 32)
            for (size_t lane = 0; lane < 4; ++lane) {
                uint64_t word;
                std::memcpy(&word, data + i + 8 * lane, 8);
                lanes[lane] = step(lanes[lane], word);
            }
        for (; i < bytes; ++i) lanes[0] = step(lanes[0], uint64_t(data[i]) | uint64_t(1) << 8);
        uint64_t hash = bytes;
        for (uint64_t lane : lanes) hash = step(hash, lane);
        hashes[k] = hash;
    }, kChunk / 4);
    uint64_t total = buffers.size();
    for (size_t k = 0; k < pieces.size(); ++k) total = step(step(total, pieces[k].buffer), hashes[k]);
    return total;
}

// `extra_files` (name in the directory -> source path), e.g. the tokenizer.json, are copied into the staging
// directory, so they arrive with the weights in the one swap and a failed copy leaves the old directory intact.
template <typename T>
void save_c3(const Cascade<T>& cascade, const std::string& directory, DType dtype = DType::F32,
             const std::map<std::string, std::string>& extra_files = {}) {
    const CascadeConfig& c = cascade.config;
    C3_CHECK(!cascade.encoder.stores_bf16() && !cascade.decoder.stores_bf16(), ValueError,
             "saving a bf16-stored cascade is not supported; load it in float");
    const std::string what = "cannot save '" + directory + "'";
    check_finite_parameters(cascade.encoder.layout, cascade.encoder.parameters.data(), what + " (encoder)");
    check_finite_parameters(cascade.decoder.layout, cascade.decoder.parameters.data(), what + " (decoder)");
    check_finite_parameters(cascade.bridge, cascade.bridge_parameters.data(), what);
    nlohmann::json json = c3_config_json(c);
    json["c3"]["identity"] = cascade_identity(cascade, dtype);
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
