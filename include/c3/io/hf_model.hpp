// Hugging Face model directories: config.json + safetensors (single or sharded), mapped by the HF names.
#pragma once
#include <cmath>
#include <filesystem>

#include "c3/io/hf_config.hpp"
#include "c3/io/sharded_safetensors.hpp"
#include "c3/model/transformer.hpp"

namespace c3::io {

// Checks that the checkpoint holds every tensor of `layout` with its shape. Loaders call it before they
// allocate the model, so a config that claims sizes the file does not hold costs nothing.
inline void check_layout(const ShardedSafetensorsReader& checkpoint, const std::vector<ParameterInfo>& layout,
                         const std::string& source, const std::string& prefix = "") {
    for (const ParameterInfo& info : layout) {
        const std::string name = prefix + info.name;
        C3_CHECK(checkpoint.contains(name), FormatError, source, ": checkpoint has no tensor '", name, "'");
        const TensorInfo& stored = checkpoint.info(name);
        C3_CHECK(stored.shape == info.shape, ShapeError, source, ": tensor '", name, "' has shape ",
                 shape_string(stored.shape), ", the config implies ", shape_string(info.shape));
    }
}

// Reads every tensor of `layout` from the checkpoint into `destination` (converted to T), checking shapes.
// `prefix` is prepended to each name (e.g. "" for a plain model). Extra tensors in the file are ignored.
template <typename T>
void read_layout(const ShardedSafetensorsReader& checkpoint, const std::vector<ParameterInfo>& layout, T* destination,
                 const std::string& source, const std::string& prefix = "") {
    check_layout(checkpoint, layout, source, prefix);
    for (const ParameterInfo& info : layout) checkpoint.read_into(prefix + info.name, destination + info.offset, info.size);
}

// Reads a checkpoint into a bf16-stored model: matrices to bf16 (exact when the file is bf16), the rest to T.
template <typename T>
void read_layout_bf16(const ShardedSafetensorsReader& checkpoint, Transformer<T>& model, const std::string& source) {
    check_layout(checkpoint, model.layout, source);
    for (size_t e = 0; e < model.layout.size(); ++e) {
        const ParameterInfo& info = model.layout[e];
        if (Bf16Storage<T>::is_matrix(info))
            model.bf16.assign(model.layout, e, checkpoint.read<float>(info.name).data());
        else
            checkpoint.read_into(info.name, model.bf16.vectors.data() + model.bf16.vector_offsets[e], info.size);
    }
}

// Loads a Hugging Face directory. With WeightStorage::Bf16 the matrices stay bf16 in memory (compute in T).
template <typename T>
Transformer<T> load_transformer(const std::string& directory, WeightStorage storage = WeightStorage::Float) {
    const TransformerConfig config = read_hf_config(directory);
    const ShardedSafetensorsReader checkpoint = ShardedSafetensorsReader::open(directory);
    check_layout(checkpoint, transformer_layout(config), directory);
    Transformer<T> model(config, storage, /*random_init=*/false);  // every tensor is read below
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

// Refuses to save non-finite weights: a ValueError naming `what`, the first tensor holding a NaN or infinity, and
// the value's index in it. A file of NaN weights loads and runs, and every result made from it is silently wrong.
template <typename T>
void check_finite_parameters(const std::vector<ParameterInfo>& layout, const T* base, const std::string& what) {
    for (const ParameterInfo& info : layout) {
        const T* values = base + info.offset;
        for (size_t i = 0; i < info.size; ++i)
            C3_CHECK(std::isfinite(values[i]), ValueError, what, ": parameter '", info.name, "' holds ", values[i],
                     " at index ", i, "; non-finite weights are never saved (was the learning rate too large?)");
    }
}

namespace detail {
// The files of a model directory, written into `directory` (a staging directory of an atomic save).
template <typename T>
void write_transformer_files(const Transformer<T>& model, const std::string& directory, DType dtype) {
    C3_CHECK(!model.stores_bf16(), ValueError, "saving a bf16-stored model is not supported; load it in float");
    write_hf_config(model.config, directory);
    write_safetensors((std::filesystem::path(directory) / "model.safetensors").string(),
                      named_tensors(model.layout, model.parameters.data()), dtype, {{"format", "pt"}});
}
}  // namespace detail

// config.json + model.safetensors, loadable by transformers' from_pretrained. The directory is replaced as a
// whole (see write_directory_atomically): a failed save leaves the old one loadable.
template <typename T>
void save_transformer(const Transformer<T>& model, const std::string& directory, DType dtype = DType::F32) {
    C3_CHECK(!model.stores_bf16(), ValueError, "saving a bf16-stored model is not supported; load it in float");
    check_finite_parameters(model.layout, model.parameters.data(), "cannot save '" + directory + "'");
    detail::write_directory_atomically(directory, [&](const std::string& staging) {
        detail::write_transformer_files(model, staging, dtype);
    });
}

}  // namespace c3::io
