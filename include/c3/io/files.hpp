// File access shared by every reader and writer in io/: opening and exact reads that end in an IOError, never in
// a short read taken for data; and writes that readers never see half done, a file through a temporary sibling
// and a rename, a checkpoint directory through a staging directory that replaces the old one as a whole.
#pragma once
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "c3/core/errors.hpp"

namespace c3::io::detail {

inline std::ifstream open_for_reading(const std::string& path) {
    std::error_code error;
    C3_CHECK(!std::filesystem::is_directory(path, error), IOError, "cannot open '", path,
             "' for reading: it is a directory");
    std::ifstream stream(path, std::ios::binary);
    C3_CHECK(stream.is_open(), IOError, "cannot open '", path, "' for reading: ", std::strerror(errno));
    return stream;
}

// Reads exactly `count` bytes at `offset`.
inline void read_exactly(std::ifstream& stream, const std::string& path, size_t offset, void* destination,
                         size_t count) {
    if (count == 0) return;
    stream.clear();
    stream.seekg(std::streamoff(offset));
    stream.read(static_cast<char*>(destination), std::streamsize(count));
    C3_CHECK(stream && size_t(stream.gcount()) == count, IOError, "cannot read ", count, " bytes at offset ", offset,
             " of '", path, "' (the file is shorter or was changed since it was opened)");
}

inline size_t file_size(std::ifstream& stream, const std::string& path) {
    stream.seekg(0, std::ios::end);
    const std::streamoff size = stream.tellg();
    C3_CHECK(stream && size >= 0, IOError, "cannot determine the size of '", path, "'");
    return size_t(size);
}

// A name for a temporary sibling of `path` that no other writer uses at the same time: process id, a
// per-process counter and a random draw (threads of one process and processes sharing a directory never
// collide, so concurrent writers of one path never mix their bytes).
inline std::string unique_sibling(const std::string& path, const char* kind) {
    static std::atomic<uint64_t> counter{0};
    static const uint64_t salt = std::random_device{}();
    char suffix[96];
    std::snprintf(suffix, sizeof suffix, ".%s-%ld-%llu-%llx", kind, long(::getpid()),
                  static_cast<unsigned long long>(counter.fetch_add(1)), static_cast<unsigned long long>(salt));
    return path + suffix;
}

// Writes `contents` to a uniquely named temporary file next to path, then renames it over path: readers see
// the old file or the new one, never a mixture or half a file.
inline void write_atomically(const std::string& path, const std::function<void(std::ostream&)>& contents) {
    const std::string temporary = unique_sibling(path, "tmp");
    try {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        C3_CHECK(out.is_open(), IOError, "cannot open '", temporary, "' for writing: ", std::strerror(errno));
        contents(out);
        out.flush();
        C3_CHECK(out.good(), IOError, "cannot write '", temporary, "' (disk full?)");
        out.close();
        C3_CHECK(!out.fail(), IOError, "cannot close '", temporary, "'");
        C3_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, IOError, "cannot rename '", temporary, "' to '",
                 path, "': ", std::strerror(errno));
    } catch (...) {
        std::remove(temporary.c_str());
        throw;
    }
}

// Weight files: when a save replaces a directory, the old ones are not carried over (a stale index or shard
// would describe other tensors).
inline bool is_weights_file(const std::string& name) {
    return name == "model.safetensors" || name == "model.safetensors.index.json" ||
           (name.rfind("model-", 0) == 0 && name.find("-of-") != std::string::npos &&
            name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0);
}

// Hard-links (or, across file systems, copies) `from` into `to`, recursively.
inline void link_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
    namespace fs = std::filesystem;
    if (fs::is_directory(from) && !fs::is_symlink(from)) {
        fs::create_directory(to);
        for (const auto& entry : fs::directory_iterator(from)) link_tree(entry.path(), to / entry.path().filename());
        return;
    }
    if (fs::is_symlink(from)) {
        fs::copy_symlink(from, to);
        return;
    }
    std::error_code error;
    fs::create_hard_link(from, to, error);
    if (error) fs::copy_file(from, to);
}

// Writes a multi-file checkpoint as one unit: `fill` writes every file into a fresh temporary sibling directory,
// the entries of an existing `directory` that the save does not produce (tokenizer.json, a README, ...) are
// linked in beside them, and the new directory then takes the old one's place by rename. A save that fails at
// any point leaves the old directory as it was, loadable; readers never see a mixture of old and new files.
inline void write_directory_atomically(const std::string& directory,
                                       const std::function<void(const std::string&)>& fill) {
    namespace fs = std::filesystem;
    std::string target = directory;
    while (target.size() > 1 && (target.back() == '/' || target.back() == '\\')) target.pop_back();
    std::error_code error;
    const bool replacing = fs::exists(target, error);
    C3_CHECK(!replacing || fs::is_directory(target, error), IOError, "cannot save into '", directory,
             "': it exists and is not a directory");
    const fs::path parent = fs::absolute(fs::path(target)).parent_path();
    fs::create_directories(parent, error);
    C3_CHECK(!error, IOError, "cannot create directory '", parent.string(), "': ", error.message());
    std::string staging = unique_sibling(target, "saving");
    C3_CHECK(fs::create_directory(staging, error) && !error, IOError, "cannot create '", staging, "': ",
             error ? error.message() : std::string("it exists"));
    std::string retired;
    try {
        fill(staging);
        if (replacing) {
            for (const auto& entry : fs::directory_iterator(target)) {
                const std::string name = entry.path().filename().string();
                if (is_weights_file(name) || fs::exists(fs::path(staging) / name)) continue;
                link_tree(entry.path(), fs::path(staging) / name);
            }
#if defined(__linux__) && defined(SYS_renameat2)
            // One atomic swap where the kernel and file system offer it: no moment without a directory.
            if (::syscall(SYS_renameat2, AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), 2 /* RENAME_EXCHANGE */) == 0) {
                fs::remove_all(staging, error);
                return;
            }
#endif
            retired = unique_sibling(target, "replaced");
            C3_CHECK(std::rename(target.c_str(), retired.c_str()) == 0, IOError, "cannot move '", target, "' aside: ",
                     std::strerror(errno));
        }
        if (std::rename(staging.c_str(), target.c_str()) != 0) {
            const std::string reason = std::strerror(errno);
            if (!retired.empty()) std::rename(retired.c_str(), target.c_str());  // put the old one back
            throw IOError("cannot rename '" + staging + "' to '" + target + "': " + reason);
        }
    } catch (const fs::filesystem_error& failure) {  // linking or creating a folder failed
        fs::remove_all(staging, error);
        throw IOError("cannot save '" + target + "': " + failure.what());
    } catch (...) {
        fs::remove_all(staging, error);
        throw;
    }
    if (!retired.empty()) fs::remove_all(retired, error);
}

}  // namespace c3::io::detail
