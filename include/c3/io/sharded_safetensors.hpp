// Hugging Face model directories of safetensors, as transformers' save_pretrained lays them out: one
// model.safetensors, or model-0000k-of-0000N.safetensors shards with model.safetensors.index.json naming the
// shard of every tensor. ShardedSafetensorsReader also opens a single .safetensors file.
#pragma once
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/json.hpp"
#include "c3/io/files.hpp"
#include "c3/io/safetensors_reader.hpp"
#include "c3/io/safetensors_writer.hpp"

namespace c3::io {

// The tensors of one .safetensors file or of a model directory (single file or sharded with an index), by name.
class ShardedSafetensorsReader {
public:
    static ShardedSafetensorsReader open(const std::string& path) {
        namespace fs = std::filesystem;
        ShardedSafetensorsReader checkpoint;
        checkpoint.path_ = path;
        std::error_code error;
        if (!fs::is_directory(path, error)) {
            checkpoint.files_.push_back(SafetensorsFile::open(path));
            for (const TensorInfo& tensor : checkpoint.files_[0].tensors()) checkpoint.file_of_[tensor.name] = 0;
            return checkpoint;
        }
        const fs::path directory(path);
        if (fs::exists(directory / "model.safetensors", error)) {
            checkpoint.files_.push_back(SafetensorsFile::open((directory / "model.safetensors").string()));
            for (const TensorInfo& tensor : checkpoint.files_[0].tensors()) checkpoint.file_of_[tensor.name] = 0;
            return checkpoint;
        }
        const fs::path index_path = directory / "model.safetensors.index.json";
        C3_CHECK(fs::exists(index_path, error), IOError, "checkpoint directory '", path,
                 "' has neither model.safetensors nor model.safetensors.index.json");
        checkpoint.open_sharded(directory, index_path.string());
        return checkpoint;
    }

    // The file or directory it was opened from.
    const std::string& path() const { return path_; }
    const std::vector<SafetensorsFile>& files() const { return files_; }
    // Sorted.
    std::vector<std::string> names() const {
        std::vector<std::string> result;
        for (const auto& [name, file] : file_of_) result.push_back(name);
        return result;
    }
    bool contains(const std::string& name) const { return file_of_.count(name) != 0; }
    const TensorInfo& info(const std::string& name) const { return file_for(name).info(name); }
    // The file that holds the tensor.
    const SafetensorsFile& file_for(const std::string& name) const {
        const auto found = file_of_.find(name);
        C3_CHECK(found != file_of_.end(), FormatError, "checkpoint '", path_, "' has no tensor '", name, "'");
        return files_[found->second];
    }
    template <typename T>
    void read_into(const std::string& name, T* destination, size_t count) const {
        file_for(name).read_into(name, destination, count);
    }
    template <typename T>
    std::vector<T> read(const std::string& name) const {
        return file_for(name).template read<T>(name);
    }

private:
    std::string path_;
    std::vector<SafetensorsFile> files_;
    std::map<std::string, size_t> file_of_;

    void open_sharded(const std::filesystem::path& directory, const std::string& index_path) {
        const std::string where = "checkpoint index '" + index_path + "': ";
        nlohmann::json index;
        {
            std::ifstream stream = detail::open_for_reading(index_path);
            const std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
            index = parse_json_text(text, "checkpoint index '" + index_path + "'");
        }
        C3_CHECK(index.is_object(), FormatError, where, "must be a JSON object");
        const auto weight_map = index.find("weight_map");
        C3_CHECK(weight_map != index.end() && weight_map->is_object(), FormatError, where,
                 "missing or non-object 'weight_map'");
        std::map<std::string, size_t> shard_number;
        for (const auto& [name, shard_json] : weight_map->items()) {
            C3_CHECK(shard_json.is_string(), FormatError, where, "weight_map entry for '", name,
                     "' must be a file name string");
            const std::string shard = shard_json.get<std::string>();
            // Shards live next to the index; a path out of the directory is not a shard.
            C3_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                         shard.find('\\') == std::string::npos && shard != "." && shard != "..",
                     FormatError, where, "weight_map names '", shard, "' for '", name,
                     "', which is not a plain file name in the directory");
            auto found = shard_number.find(shard);
            if (found == shard_number.end()) {
                const std::string shard_path = (directory / shard).string();
                std::error_code error;
                C3_CHECK(std::filesystem::is_regular_file(shard_path, error), FormatError, where, "shard '", shard,
                         "' (holding '", name, "') does not exist in '", directory.string(), "'");
                found = shard_number.emplace(shard, files_.size()).first;
                files_.push_back(SafetensorsFile::open(shard_path));
            }
            C3_CHECK(files_[found->second].contains(name), FormatError, where, "tensor '", name,
                     "' is mapped to shard '", shard, "', which does not contain it");
            file_of_[name] = found->second;
        }
    }
};

namespace detail {

inline std::string shard_file_name(size_t number, size_t count) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", number, count);
    return name;
}

// Greedy packing in the given order; a tensor larger than the limit gets a shard of its own.
inline std::vector<std::string> write_sharded_planned(const std::string& directory, std::vector<PlannedTensor> tensors,
                                                      size_t max_shard_bytes, const Metadata& metadata) {
    namespace fs = std::filesystem;
    std::map<std::string, bool> seen;
    for (const PlannedTensor& tensor : tensors)
        C3_CHECK(seen.emplace(tensor.name, true).second, ValueError, "tensor name '", tensor.name,
                 "' appears twice in the checkpoint for '", directory, "'");
    std::vector<std::vector<PlannedTensor>> shards;
    size_t shard_bytes = 0, total_bytes = 0;
    for (PlannedTensor& tensor : tensors) {
        if (shards.empty() || (shard_bytes > 0 && shard_bytes + tensor.byte_count > max_shard_bytes)) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        shard_bytes += tensor.byte_count;
        total_bytes += tensor.byte_count;
        shards.back().push_back(std::move(tensor));
    }
    if (shards.empty()) shards.emplace_back();
    std::vector<std::string> written;
    const fs::path final_directory(directory);
    if (shards.size() == 1) written.push_back((final_directory / "model.safetensors").string());
    // Every file goes into a fresh staging directory that then replaces the old one as a whole, so an old
    // single file or index never mixes with new shards, and a failed write leaves the old checkpoint.
    write_directory_atomically(directory, [&](const std::string& staging) {
        if (shards.size() == 1) {
            write_planned((fs::path(staging) / "model.safetensors").string(), std::move(shards[0]), metadata);
            return;
        }
        nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
        std::map<std::string, std::string> sorted_map;
        for (size_t i = 0; i < shards.size(); ++i) {
            const std::string name = shard_file_name(i + 1, shards.size());
            for (const PlannedTensor& tensor : shards[i]) sorted_map[tensor.name] = name;
            write_planned((fs::path(staging) / name).string(), std::move(shards[i]), metadata);
            written.push_back((final_directory / name).string());
        }
        for (const auto& [tensor, shard] : sorted_map) weight_map[tensor] = shard;
        nlohmann::ordered_json index = nlohmann::ordered_json::object();
        index["metadata"] = {{"total_size", total_bytes}};
        index["weight_map"] = weight_map;
        const std::string text = index.dump(2) + "\n";
        write_atomically((fs::path(staging) / "model.safetensors.index.json").string(),
                         [&](std::ostream& out) { out.write(text.data(), std::streamsize(text.size())); });
        written.push_back((final_directory / "model.safetensors.index.json").string());
    });
    return written;
}

}  // namespace detail

// Writes `directory`/model.safetensors when everything fits in max_shard_bytes, otherwise
// model-0000k-of-0000N.safetensors shards and model.safetensors.index.json. Returns the files written.
inline std::vector<std::string> write_sharded(const std::string& directory, const std::vector<TensorToWrite>& tensors,
                                              size_t max_shard_bytes, const Metadata& metadata = {}) {
    std::vector<detail::PlannedTensor> planned;
    for (const TensorToWrite& tensor : tensors) planned.push_back(detail::plan_raw(tensor));
    return detail::write_sharded_planned(directory, std::move(planned), max_shard_bytes, metadata);
}

template <typename T>
std::vector<std::string> write_sharded(const std::string& directory, const std::vector<NamedTensor<T>>& tensors,
                                       DType dtype, size_t max_shard_bytes, const Metadata& metadata = {}) {
    std::vector<detail::PlannedTensor> planned;
    for (const NamedTensor<T>& tensor : tensors) planned.push_back(detail::plan_converted(tensor, dtype));
    return detail::write_sharded_planned(directory, std::move(planned), max_shard_bytes, metadata);
}

}  // namespace c3::io
