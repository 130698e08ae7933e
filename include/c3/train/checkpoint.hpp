// Exact save and resume of training: every parameter group's flat parameters and AdamW moments, and the step,
// in one safetensors file (F32 or F64, so nothing is rounded). A resumed run continues bit for bit.
#pragma once
#include "c3/io/safetensors_reader.hpp"
#include "c3/io/safetensors_writer.hpp"
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
    size_t step = 0;
    C3_CHECK(!found->second.empty() && found->second.size() < 20 &&
                 found->second.find_first_not_of("0123456789") == std::string::npos,
             FormatError, path, ": c3.step is not a number");
    step = size_t(std::stoull(found->second));
    // Everything is read and checked first; the groups and the optimiser change only when all of it is good.
    std::vector<std::vector<T>> parameters(groups.size()), first(groups.size()), second(groups.size());
    bool has_moments = true;
    for (size_t g = 0; g < groups.size(); ++g) {
        const size_t size = groups[g].size();
        const std::string name = groups[g].name;
        C3_CHECK(file.contains(name + ".parameters"), FormatError, path, ": no tensor '", name, ".parameters'");
        C3_CHECK(file.info(name + ".parameters").element_count() == size, ShapeError, path, ": group '", name,
                 "' holds ", file.info(name + ".parameters").element_count(), " parameters, the model ", size);
        parameters[g] = file.read<T>(name + ".parameters");
        if (!file.contains(name + ".first_moment") || !file.contains(name + ".second_moment")) {
            has_moments = false;
            continue;
        }
        C3_CHECK(file.info(name + ".first_moment").element_count() == size &&
                     file.info(name + ".second_moment").element_count() == size,
                 ShapeError, path, ": optimizer state of group '", name, "' does not match its parameters");
        first[g] = file.read<T>(name + ".first_moment");
        second[g] = file.read<T>(name + ".second_moment");
        check_moments(first[g].data(), second[g].data(), size, path + " (group '" + name + "')");
    }
    for (size_t g = 0; g < groups.size(); ++g)
        std::copy(parameters[g].begin(), parameters[g].end(), groups[g].parameters);
    optimizer.first_moment = has_moments ? std::move(first) : std::vector<std::vector<T>>{};
    optimizer.second_moment = has_moments ? std::move(second) : std::vector<std::vector<T>>{};
    optimizer.step = step;
    return file.metadata();
}

}  // namespace c3
