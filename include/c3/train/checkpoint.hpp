// Exact save and resume of training: every parameter group's flat parameters and AdamW moments, and the step,
// in one safetensors file (F32 or F64, so nothing is rounded). A resumed run continues bit for bit.
#pragma once
#include "c3/io/hf_model.hpp"
#include "c3/io/safetensors_reader.hpp"
#include "c3/io/safetensors_writer.hpp"
#include "c3/train/adamw.hpp"

namespace c3 {

// Writes "<group>.parameters" for every group and the optimiser's state (AdamW::state: "<group>.first_moment",
// "<group>.second_moment", the step as metadata c3.step), atomically: a failed write leaves the old file.
template <typename T>
void save_training_checkpoint(const std::string& path, const std::vector<ParameterGroup<T>>& groups,
                              const AdamW<T>& optimizer, io::Metadata metadata = {}) {
    const io::DType dtype = std::is_same_v<T, double> ? io::DType::F64 : io::DType::F32;
    for (const ParameterGroup<T>& group : groups)  // a checkpoint of NaN weights would resume into NaN
        io::check_finite_parameters(*group.layout, group.parameters,
                                    "cannot save checkpoint '" + path + "' (group '" + group.name + "')");
    const AdamWState<T> state = optimizer.state(groups);
    std::vector<io::NamedTensor<T>> tensors;
    for (const ParameterGroup<T>& group : groups)
        tensors.push_back({group.name + ".parameters", {group.size()}, group.parameters});
    for (const auto& [name, values] : state.moments) tensors.push_back({name, {values.size()}, values.data()});
    metadata["c3.step"] = std::to_string(state.step);
    io::write_safetensors(path, tensors, dtype, metadata);
}

// Restores what save_training_checkpoint wrote into groups of the same layout; returns the file's metadata.
// Everything is read and checked first: the groups and the optimiser change only when all of it is good. A file
// without moments (written before the first step) leaves the optimiser to start afresh at its step.
template <typename T>
io::Metadata load_training_checkpoint(const std::string& path, std::vector<ParameterGroup<T>>& groups,
                                      AdamW<T>& optimizer) {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    const auto found = file.metadata().find("c3.step");
    C3_CHECK(found != file.metadata().end(), FormatError, path, ": not a c3 training checkpoint (no c3.step)");
    C3_CHECK(!found->second.empty() && found->second.size() < 20 &&
                 found->second.find_first_not_of("0123456789") == std::string::npos,
             FormatError, path, ": c3.step is not a number");
    AdamWState<T> state;
    state.step = size_t(std::stoull(found->second));
    std::vector<std::vector<T>> parameters;
    bool has_moments = true;
    for (const ParameterGroup<T>& group : groups) {
        const std::string name = group.name + ".parameters";
        C3_CHECK(file.contains(name), FormatError, path, ": not a checkpoint of this model (missing tensors: '",
                 name, "')");
        C3_CHECK(file.info(name).element_count() == group.size(), ShapeError, path, ": group '", group.name,
                 "' holds ", file.info(name).element_count(), " parameters, the model ", group.size());
        parameters.push_back(file.read<T>(name));
        for (const char* kind : {".first_moment", ".second_moment"}) {
            if (!file.contains(group.name + kind)) {
                has_moments = false;
                continue;
            }
            C3_CHECK(file.info(group.name + kind).element_count() == group.size(), ShapeError, path,
                     ": optimizer state of group '", group.name, "' does not match its parameters");
            state.moments[group.name + kind] = file.read<T>(group.name + kind);
        }
    }
    AdamW<T> loaded = optimizer;
    if (has_moments) {
        loaded.load_state(groups, std::move(state), path);
    } else {
        loaded.first_moment.clear();
        loaded.second_moment.clear();
        loaded.step = state.step;
    }
    for (size_t g = 0; g < groups.size(); ++g) std::copy(parameters[g].begin(), parameters[g].end(), groups[g].parameters);
    optimizer = std::move(loaded);
    return file.metadata();
}

}  // namespace c3
