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

// Reads a checkpoint into a bf16-stored model: matrices to bf16 (exact when the file is bf16), the rest to T.
template <typename T>
void read_layout_bf16(const Checkpoint& checkpoint, Transformer<T>& model, const std::string& source) {
    for (size_t e = 0; e < model.layout.size(); ++e) {
        const ParameterInfo& info = model.layout[e];
        C3_CHECK(checkpoint.contains(info.name), FormatError, source, ": checkpoint has no tensor '", info.name, "'");
        const TensorInfo& stored = checkpoint.info(info.name);
        C3_CHECK(stored.shape == info.shape, ShapeError, source, ": tensor '", info.name, "' has shape ",
                 shape_string(stored.shape), ", the config implies ", shape_string(info.shape));
        if (Transformer<T>::is_matrix(info)) {
            const std::vector<float> values = checkpoint.read<float>(info.name);
            uint16_t* target = model.bf16_parameters.data() + info.offset;
            for (size_t i = 0; i < info.size; ++i) target[i] = float_to_bf16(values[i]);
        } else {
            checkpoint.read_into(info.name, model.small_parameters.data() + model.small_offsets[e], info.size);
        }
    }
}

// Loads a Hugging Face directory. With WeightStorage::Bf16 the matrices stay bf16 in memory (compute in T).
template <typename T>
Transformer<T> load_transformer(const std::string& directory, WeightStorage storage = WeightStorage::Float) {
    const TransformerConfig config = read_hf_config(directory);
    Transformer<T> model(config, storage, /*random_init=*/false);  // every tensor is read below
    const Checkpoint checkpoint = Checkpoint::open(directory);
    if (storage == WeightStorage::Bf16) read_layout_bf16(checkpoint, model, directory);
    else read_layout(checkpoint, model.layout, model.parameters.data(), directory);
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
    C3_CHECK(!model.stores_bf16(), ValueError, "saving a bf16-stored model is not supported; load it in float");
    std::filesystem::create_directories(directory);
    write_hf_config(model.config, directory);
    write_safetensors(directory + "/model.safetensors", named_tensors(model.layout, model.parameters.data()), dtype,
                      {{"format", "pt"}});
}

}  // namespace c3::io
