// Exact save and resume of training: every parameter group's flat parameters and AdamW moments, and the step,
// in one safetensors file (F32 or F64, so nothing is rounded). A resumed run continues bit for bit.
#pragma once
#include "c3/io/safetensors.hpp"
#include "c3/train/adamw.hpp"

namespace c3 {

template <typename T>
void save_training_checkpoint(const std::string& path, const std::vector<ParameterGroup<T>>& groups,
                              const AdamW<T>& optimizer, io::Metadata metadata = {}) {
    const io::DType dtype = std::is_same_v<T, double> ? io::DType::F64 : io::DType::F32;
    std::vector<io::NamedTensor<T>> tensors;
    for (size_t g = 0; g < groups.size(); ++g) {
        const Shape shape = {groups[g].size()};
        tensors.push_back({groups[g].name + ".parameters", shape, groups[g].parameters});
        if (g < optimizer.first_moment.size()) {
            tensors.push_back({groups[g].name + ".first_moment", shape, optimizer.first_moment[g].data()});
            tensors.push_back({groups[g].name + ".second_moment", shape, optimizer.second_moment[g].data()});
        }
    }
    metadata["c3.step"] = std::to_string(optimizer.step);
    io::write_safetensors(path, tensors, dtype, metadata);
}

// Restores what save_training_checkpoint wrote into groups of the same layout; returns the file's metadata.
template <typename T>
io::Metadata load_training_checkpoint(const std::string& path, std::vector<ParameterGroup<T>>& groups,
                                      AdamW<T>& optimizer) {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    const auto found = file.metadata().find("c3.step");
    C3_CHECK(found != file.metadata().end(), FormatError, path, ": not a c3 training checkpoint (no c3.step)");
    optimizer.first_moment.assign(groups.size(), {});
    optimizer.second_moment.assign(groups.size(), {});
    bool has_moments = true;
    for (size_t g = 0; g < groups.size(); ++g) {
        const size_t size = groups[g].size();
        file.read_into(groups[g].name + ".parameters", groups[g].parameters, size);
        if (!file.contains(groups[g].name + ".first_moment")) {
            has_moments = false;
            continue;
        }
        optimizer.first_moment[g] = file.read<T>(groups[g].name + ".first_moment");
        optimizer.second_moment[g] = file.read<T>(groups[g].name + ".second_moment");
        C3_CHECK(optimizer.first_moment[g].size() == size && optimizer.second_moment[g].size() == size, ShapeError,
                 path, ": optimizer state of group '", groups[g].name, "' does not match its parameters");
    }
    if (!has_moments) optimizer.first_moment.clear(), optimizer.second_moment.clear();
    try {
        optimizer.step = size_t(std::stoull(found->second));
    } catch (const std::exception&) {
        throw FormatError(path + ": c3.step is not a number");
    }
    return file.metadata();
}

}  // namespace c3
