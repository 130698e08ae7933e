// Hugging Face model directories: config.json + safetensors (single or sharded), mapped by the HF names.
#pragma once
#include <filesystem>

#include "c3/io/hf_config.hpp"
#include "c3/io/safetensors.hpp"
#include "c3/model/transformer.hpp"

namespace c3::io {

// Reads every tensor of `layout` from the checkpoint into `destination` (converted to T), checking shapes.
// `prefix` is prepended to each name (e.g. "" for a plain model). Extra tensors in the file are ignored.
template <typename T>
void read_layout(const Checkpoint& checkpoint, const std::vector<ParameterInfo>& layout, T* destination,
                 const std::string& source, const std::string& prefix = "") {
    for (const ParameterInfo& info : layout) {
        const std::string name = prefix + info.name;
        C3_CHECK(checkpoint.contains(name), FormatError, source, ": checkpoint has no tensor '", name, "'");
        const TensorInfo& stored = checkpoint.info(name);
        C3_CHECK(stored.shape == info.shape, ShapeError, source, ": tensor '", name, "' has shape ",
                 shape_string(stored.shape), ", the config implies ", shape_string(info.shape));
        checkpoint.read_into(name, destination + info.offset, info.size);
    }
}

template <typename T>
Transformer<T> load_transformer(const std::string& directory) {
    const TransformerConfig config = read_hf_config(directory);
    Transformer<T> model(config);
    const Checkpoint checkpoint = Checkpoint::open(directory);
    read_layout(checkpoint, model.layout, model.parameters.data(), directory);
    return model;
}

template <typename T>
std::vector<NamedTensor<T>> named_tensors(const std::vector<ParameterInfo>& layout, const T* base,
                                          const std::string& prefix = "") {
    std::vector<NamedTensor<T>> tensors;
    for (const ParameterInfo& info : layout) tensors.push_back({prefix + info.name, info.shape, base + info.offset});
    return tensors;
}

// config.json + model.safetensors, loadable by transformers' from_pretrained.
template <typename T>
void save_transformer(const Transformer<T>& model, const std::string& directory, DType dtype = DType::F32) {
    std::filesystem::create_directories(directory);
    write_hf_config(model.config, directory);
    write_safetensors(directory + "/model.safetensors", named_tensors(model.layout, model.parameters.data()), dtype,
                      {{"format", "pt"}});
}

}  // namespace c3::io
