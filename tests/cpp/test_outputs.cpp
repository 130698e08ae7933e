// Outputs that must not replace what they name: devices and FIFOs are written into, symbolic links are kept,
// a save never forms its staging folder inside its target, and staging folders of killed saves are cleaned up.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "c3/io/files.hpp"

using namespace c3;
namespace fs = std::filesystem;

namespace {

fs::path fresh_directory(const std::string& name) {
    const fs::path path = fs::temp_directory_path() / ("c3_outputs_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path);
    fs::create_directories(path);
    return path;
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream contents;
    contents << in.rdbuf();
    return contents.str();
}

std::set<std::string> entries(const fs::path& directory) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(directory)) names.insert(entry.path().filename().string());
    return names;
}

void write_text(const std::string& path, const std::string& text) {
    io::detail::write_atomically(path, [&](std::ostream& out) { out << text; });
}

void fill_one_file(const std::string& staging) { std::ofstream(fs::path(staging) / "config.json") << "{}"; }

// The working directory of the test, restored however the test ends.
struct WorkingDirectory {
    fs::path previous = fs::current_path();
    explicit WorkingDirectory(const fs::path& directory) { fs::current_path(directory); }
    ~WorkingDirectory() { fs::current_path(previous); }
};

// A process id that no process has: a child's, once it exited and was reaped.
long dead_process_id() {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
    return long(child);
}

}  // namespace

TEST(Outputs, SymbolicLinkIsKeptAndItsTargetReplaced) {
    const fs::path root = fresh_directory("link");
    std::ofstream(root / "real.txt") << "old";
    fs::create_symlink("real.txt", root / "link.txt");
    write_text((root / "link.txt").string(), "new");
    EXPECT_TRUE(fs::is_symlink(root / "link.txt"));
    EXPECT_EQ(read_text(root / "real.txt"), "new");
    EXPECT_EQ(entries(root), (std::set<std::string>{"link.txt", "real.txt"}));  // no temporary left
    // A dangling link names the file to create; the link stays.
    fs::create_symlink("created.txt", root / "dangling.txt");
    write_text((root / "dangling.txt").string(), "made");
    EXPECT_TRUE(fs::is_symlink(root / "dangling.txt"));
    EXPECT_EQ(read_text(root / "created.txt"), "made");
    fs::remove_all(root);
}

TEST(Outputs, CharacterDeviceIsWrittenIntoNotReplaced) {
    // As root the old writer renamed a regular file over the device. A private node of the null device, where this
    // process may make one (root), keeps a failing test from breaking the machine's /dev/null.
    const fs::path root = fresh_directory("device");
    const fs::path node = root / "null";
    const std::string device = ::mknod(node.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0 ? node.string()
                                                                                           : std::string("/dev/null");
    EXPECT_NO_THROW(write_text(device, "discarded"));
    struct stat status {};
    ASSERT_EQ(::lstat(device.c_str(), &status), 0);
    EXPECT_TRUE(S_ISCHR(status.st_mode));
    // Through a link to the device: the link is kept, and the device too.
    fs::create_symlink(device, root / "sink");
    EXPECT_NO_THROW(write_text((root / "sink").string(), "discarded"));
    EXPECT_TRUE(fs::is_symlink(root / "sink"));
    ASSERT_EQ(::lstat(device.c_str(), &status), 0);
    EXPECT_TRUE(S_ISCHR(status.st_mode));
    EXPECT_EQ(entries(root).count("sink"), 1u);
    EXPECT_EQ(entries(root).size(), device == node.string() ? 2u : 1u);  // no temporary left
    fs::remove_all(root);
}

TEST(Outputs, FifoIsWrittenIntoNotReplaced) {
    const fs::path root = fresh_directory("fifo");
    const std::string fifo = (root / "pipe").string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    // The reader opens first, without blocking, so that the writer's open finds it; the text fits the pipe.
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(reader, 0);
    write_text(fifo, "through the pipe");
    char buffer[64] = {};
    const ssize_t count = ::read(reader, buffer, sizeof buffer);
    ::close(reader);
    EXPECT_EQ(std::string(buffer, size_t(std::max<ssize_t>(count, 0))), "through the pipe");
    struct stat status {};
    ASSERT_EQ(::lstat(fifo.c_str(), &status), 0);
    EXPECT_TRUE(S_ISFIFO(status.st_mode));
    EXPECT_EQ(entries(root), std::set<std::string>{"pipe"});
    fs::remove_all(root);
}

TEST(Outputs, DirectoryIsRefused) {
    const fs::path root = fresh_directory("refused");
    try {
        write_text(root.string(), "x");
        ADD_FAILURE() << "writing over a directory did not throw";
    } catch (const IOError& error) {
        EXPECT_NE(std::string(error.what()).find("it is a directory"), std::string::npos) << error.what();
    }
    fs::remove_all(root);
}

TEST(Outputs, SaveIntoTheCurrentDirectoryIsRefusedWithoutNesting) {
    const fs::path root = fresh_directory("current");
    fs::create_directories(root / "inner");
    {
        const WorkingDirectory working(root / "inner");
        for (const std::string target : {".", "./", "..", "../inner", "/"}) {
            try {
                io::detail::write_directory_atomically(target, fill_one_file);
                ADD_FAILURE() << "saving into '" << target << "' did not throw";
            } catch (const IOError& error) {
                const std::string message = error.what();
                EXPECT_LT(message.size(), 300u) << message;  // one line, not a path 130 folders deep
                EXPECT_EQ(message.find('\n'), std::string::npos) << message;
            }
            EXPECT_TRUE(entries(".").empty()) << target;
            EXPECT_EQ(entries(".."), std::set<std::string>{"inner"}) << target;
        }
        // A folder named with "." and ".." components: its staging folder lies beside it, not inside it.
        fs::create_directories("model");
        for (const std::string target : {"model/.", "model/", "./model/../model/."}) {
            io::detail::write_directory_atomically(target, fill_one_file);
            EXPECT_EQ(entries("."), std::set<std::string>{"model"}) << target;
            EXPECT_EQ(entries("model"), std::set<std::string>{"config.json"}) << target;
        }
    }
    fs::remove_all(root);
}

TEST(Outputs, SymbolicLinkToADirectoryIsKeptAndTheDirectoryReplaced) {
    const fs::path root = fresh_directory("directory_link");
    fs::create_directories(root / "real");
    std::ofstream(root / "real" / "model.safetensors") << "old weights";
    fs::create_directory_symlink("real", root / "link");
    io::detail::write_directory_atomically((root / "link").string(), fill_one_file);
    EXPECT_TRUE(fs::is_symlink(root / "link"));
    EXPECT_EQ(entries(root / "real"), std::set<std::string>{"config.json"});  // old weights are not carried over
    EXPECT_EQ(entries(root), (std::set<std::string>{"link", "real"}));
    fs::remove_all(root);
}

TEST(Outputs, StagingFoldersOfDeadProcessesAreRemovedAndOnlyThose) {
    const fs::path root = fresh_directory("stale");
    const long dead = dead_process_id();
    const std::string dead_staging = "model.saving-" + std::to_string(dead) + "-0-1f";
    const std::string live_staging = "model.saving-" + std::to_string(long(::getpid())) + "-7-ab";
    const std::string dead_replaced = "model.replaced-" + std::to_string(dead) + "-3-c0";
    // Not names unique_sibling makes, or saves of another target: never c3's leftovers of this save.
    const std::set<std::string> foreign = {"model.saving-notes", "model.saving-" + std::to_string(dead),
                                           "other.saving-" + std::to_string(dead) + "-0-1f"};
    for (const std::string& name : {dead_staging, live_staging, dead_replaced}) {
        fs::create_directories(root / name);
        std::ofstream(root / name / "file") << "x";
    }
    for (const std::string& name : foreign) fs::create_directories(root / name);
    // Without the target, a moved-aside old directory may be the only copy: kept.
    io::detail::write_directory_atomically((root / "model").string(), fill_one_file);
    std::set<std::string> expected = foreign;
    expected.insert({"model", live_staging, dead_replaced});
    EXPECT_EQ(entries(root), expected);
    // With the target in place, it is a leftover too.
    io::detail::write_directory_atomically((root / "model").string(), fill_one_file);
    expected.erase(dead_replaced);
    EXPECT_EQ(entries(root), expected);
    fs::remove_all(root);
}

TEST(Outputs, SiblingOwnerReadsOnlyNamesUniqueSiblingMakes) {
    const std::string made = io::detail::unique_sibling("/some/where/model", "saving");
    EXPECT_EQ(io::detail::sibling_owner(fs::path(made).filename().string(), "model", "saving"), long(::getpid()));
    EXPECT_EQ(io::detail::sibling_owner("model.saving-12-3", "model", "saving"), 0);
    EXPECT_EQ(io::detail::sibling_owner("model.saving-12-3-ff-x", "model", "saving"), 0);
    EXPECT_EQ(io::detail::sibling_owner("model.saving-x-3-ff", "model", "saving"), 0);
    EXPECT_EQ(io::detail::sibling_owner("model.replaced-12-3-ff", "model", "saving"), 0);
    EXPECT_EQ(io::detail::sibling_owner("model.saving-12-3-ff", "model", "saving"), 12);
}
