// File access shared by every reader and writer in io/: opening and exact reads that end in an IOError, never in
// a short read taken for data; and writes that readers never see half done, a file through a temporary sibling
// and a rename, a checkpoint directory through a staging directory that replaces the old one as a whole.
#pragma once
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
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

// The path a write goes through after symbolic links in its last component: a link is kept and the file it
// names is replaced (a dangling link names the file to create).
inline std::string resolve_links(const std::string& path) {
    namespace fs = std::filesystem;
    fs::path current = path;
    std::error_code error;
    for (int hops = 0; fs::is_symlink(current, error); ++hops) {
        C3_CHECK(hops < 40, IOError, "cannot write '", path, "': too many levels of symbolic links");
        const fs::path link = fs::read_symlink(current, error);
        C3_CHECK(!error, IOError, "cannot read the link '", current.string(), "': ", error.message());
        current = (link.is_absolute() ? link : current.parent_path() / link).lexically_normal();
    }
    return current.string();
}

// /dev/stdout, /dev/fd/N and /proc/self/fd/N name a descriptor this process holds open: written into as they
// are, since the file behind one is not the process's to replace.
inline bool names_open_descriptor(const std::string& path) {
    namespace fs = std::filesystem;
    fs::path current = path;
    std::error_code error;
    for (int hops = 0; hops < 40; ++hops) {
        const std::string text = fs::absolute(current, error).lexically_normal().string();
        if (text.rfind("/proc/", 0) == 0 || text.rfind("/dev/fd/", 0) == 0) return true;
        if (!fs::is_symlink(current, error)) return false;
        const fs::path link = fs::read_symlink(current, error);
        if (error) return false;
        current = link.is_absolute() ? link : current.parent_path() / link;
    }
    return false;
}

// Writes `contents` to a uniquely named temporary file next to path, then renames it over path: readers see
// the old file or the new one, never a mixture or half a file. A path that names a character device or a FIFO
// (/dev/null, a named pipe, /dev/stdout) is written into directly, never replaced by a regular file; a symbolic
// link is kept and the file it names is replaced.
inline void write_atomically(const std::string& path, const std::function<void(std::ostream&)>& contents) {
    struct stat status {};
    const bool exists = ::stat(path.c_str(), &status) == 0;
    if (names_open_descriptor(path) || (exists && (S_ISCHR(status.st_mode) || S_ISFIFO(status.st_mode)))) {
        std::ofstream out(path, std::ios::binary);
        C3_CHECK(out.is_open(), IOError, "cannot open '", path, "' for writing: ", std::strerror(errno));
        contents(out);
        out.flush();
        C3_CHECK(out.good(), IOError, "cannot write '", path, "'");
        return;
    }
    C3_CHECK(!exists || S_ISREG(status.st_mode), IOError, "cannot write '", path, "': it is ",
             S_ISDIR(status.st_mode) ? "a directory" : S_ISBLK(status.st_mode) ? "a block device" : "not a file");
    const std::string target = resolve_links(path);
    const std::string temporary = unique_sibling(target, "tmp");
    try {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        C3_CHECK(out.is_open(), IOError, "cannot open '", temporary, "' for writing: ", std::strerror(errno));
        contents(out);
        out.flush();
        C3_CHECK(out.good(), IOError, "cannot write '", temporary, "' (disk full?)");
        out.close();
        C3_CHECK(!out.fail(), IOError, "cannot close '", temporary, "'");
        C3_CHECK(std::rename(temporary.c_str(), target.c_str()) == 0, IOError, "cannot rename '", temporary,
                 "' to '", target, "': ", std::strerror(errno));
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

// The directory a save replaces, as an absolute path without "." or ".." components, a trailing separator or a
// symbolic link in its last component (a link is kept; the directory it names is replaced): its siblings then lie
// beside it, never inside it. The file system root, the current directory and its ancestors have no such sibling
// or hold this process, so a save into them is refused.
inline std::string save_target(const std::string& directory) {
    namespace fs = std::filesystem;
    std::error_code error;
    fs::path target = fs::absolute(directory, error).lexically_normal();
    C3_CHECK(!error, IOError, "cannot save into '", directory, "': ", error.message());
    if (!target.has_filename() && target.has_relative_path()) target = target.parent_path();  // "dir/" -> "dir"
    target = fs::weakly_canonical(fs::path(resolve_links(target.string())), error);
    C3_CHECK(!error, IOError, "cannot save into '", directory, "': ", error.message());
    if (!target.has_filename() && target.has_relative_path()) target = target.parent_path();
    C3_CHECK(target.has_relative_path(), IOError, "cannot save into '", directory,
             "': it is the file system root; name a folder inside it");
    const fs::path current = fs::current_path(error);
    if (!error) {
        const auto difference = std::mismatch(target.begin(), target.end(), current.begin(), current.end());
        C3_CHECK(difference.first != target.end(), IOError, "cannot save into '", directory,
                 "': it is the current directory or holds it, and a save replaces its folder as a whole; name a "
                 "folder inside it");
    }
    return target.string();
}

// The process id in a sibling name that unique_sibling(target, kind) made ("<target>.<kind>-<pid>-<n>-<hex>"),
// or 0 where `name` is not one: nothing that c3 did not name this way is ever removed as its leftover.
inline long sibling_owner(const std::string& name, const std::string& base, const std::string& kind) {
    const std::string prefix = base + "." + kind + "-";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
    size_t position = prefix.size();
    const auto digits = [&](bool hexadecimal) {
        const size_t start = position;
        while (position < name.size() && (hexadecimal ? std::isxdigit((unsigned char)name[position]) != 0
                                                      : std::isdigit((unsigned char)name[position]) != 0))
            ++position;
        return position > start && position - start <= 20;
    };
    const size_t pid_start = position;
    if (!digits(false)) return 0;
    const std::string pid = name.substr(pid_start, position - pid_start);
    if (position >= name.size() || name[position++] != '-' || !digits(false)) return 0;
    if (position >= name.size() || name[position++] != '-' || !digits(true) || position != name.size()) return 0;
    return std::strtol(pid.c_str(), nullptr, 10);
}

// Whether no process has this id any longer (a process of another user still counts as alive).
inline bool process_is_gone(long pid) { return pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH; }

// Removes what saves of `target` by processes that died left beside it: staging directories, and the old
// directory a save had moved aside, once `target` exists again (until then it is the only copy). Those of live
// processes, saves still under way, are left alone.
inline void remove_stale_siblings(const std::string& target) {
    namespace fs = std::filesystem;
    const fs::path path(target);
    const std::string base = path.filename().string();
    std::error_code error;
    const bool target_exists = fs::is_directory(path, error);
    for (fs::directory_iterator entry(path.parent_path(), error), end; !error && entry != end; entry.increment(error)) {
        const std::string name = entry->path().filename().string();
        const long staging_owner = sibling_owner(name, base, "saving");
        const long replaced_owner = target_exists ? sibling_owner(name, base, "replaced") : 0;
        std::error_code ignored;
        if (process_is_gone(staging_owner) || process_is_gone(replaced_owner)) fs::remove_all(entry->path(), ignored);
    }
}

// Writes a multi-file checkpoint as one unit: `fill` writes every file into a fresh temporary sibling directory,
// the entries of an existing `directory` that the save does not produce (tokenizer.json, a README, ...) are
// linked in beside them, and the new directory then takes the old one's place by rename. A save that fails at
// any point leaves the old directory as it was, loadable; readers never see a mixture of old and new files.
// Staging directories that killed saves of the same directory left behind are removed first.
inline void write_directory_atomically(const std::string& directory,
                                       const std::function<void(const std::string&)>& fill) {
    namespace fs = std::filesystem;
    const std::string target = save_target(directory);
    std::error_code error;
    const bool replacing = fs::exists(target, error);
    C3_CHECK(!replacing || fs::is_directory(target, error), IOError, "cannot save into '", directory,
             "': it exists and is not a directory");
    const fs::path parent = fs::path(target).parent_path();
    fs::create_directories(parent, error);
    C3_CHECK(!error, IOError, "cannot create directory '", parent.string(), "': ", error.message());
    remove_stale_siblings(target);
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
