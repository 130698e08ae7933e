// Replays the fuzzers' seed corpora and every input kept from a past crash (tests/fuzz/regressions/<target>/)
// through the same code paths as the fuzz targets: each must end in a c3::Error or succeed, never crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "c3/io/c3_checkpoint.hpp"
#include "c3/io/latents.hpp"
#include "c3/io/safetensors_reader.hpp"
#include "c3/text/bpe.hpp"
#include "../fuzz/fuzz_common.hpp"

namespace {
std::vector<std::filesystem::path> inputs(const std::string& target) {
    std::vector<std::filesystem::path> files;
    const std::filesystem::path root = std::filesystem::path(C3_SOURCE_DIR) / "tests" / "fuzz";
    for (const char* kind : {"corpus", "regressions"}) {
        const auto folder = root / kind / target;
        if (!std::filesystem::is_directory(folder)) continue;
        for (const auto& entry : std::filesystem::directory_iterator(folder)) files.push_back(entry.path());
    }
    return files;
}
std::string slurp(const std::filesystem::path& path) {
    std::ifstream stream(path, std::ios::binary);
    std::stringstream buffer;
    buffer << stream.rdbuf();
    return buffer.str();
}
}  // namespace

TEST(FuzzRegressions, Safetensors) {
    const auto files = inputs("safetensors");
    ASSERT_FALSE(files.empty());
    for (const auto& path : files) {
        try {
            const auto file = c3::io::SafetensorsFile::open(path.string());
            for (const auto& tensor : file.tensors())
                if (c3::io::is_float_dtype(tensor.dtype)) (void)file.read<float>(tensor.name);
        } catch (const c3::Error&) {
        }
    }
}

TEST(FuzzRegressions, TokenizerJson) {
    const auto files = inputs("tokenizer_json");
    ASSERT_FALSE(files.empty());
    for (const auto& path : files) {
        try {
            auto tokenizer = c3::text::BpeTokenizer::from_json_string(slurp(path));
            (void)tokenizer.decode(tokenizer.encode("Hello, world! 123"));
        } catch (const c3::Error&) {
        }
    }
}

TEST(FuzzRegressions, HfConfig) {
    const auto files = inputs("hf_config");
    ASSERT_FALSE(files.empty());
    for (const auto& path : files) {
        try {
            const auto config = c3::io::parse_hf_config(c3::parse_json_text(slurp(path), path.string()), path.string());
            (void)c3::transformer_layout(config);
        } catch (const c3::Error&) {
        }
    }
}

TEST(FuzzRegressions, C3Config) {
    const auto files = inputs("c3_config");
    ASSERT_FALSE(files.empty());
    const c3::TransformerConfig encoder = c3::fuzz::small_encoder_config();
    size_t accepted = 0;
    for (const auto& path : files) {
        try {
            (void)c3::io::parse_c3_config(c3::parse_json_text(slurp(path), path.string()), path.string(), encoder, {});
            ++accepted;
        } catch (const c3::Error&) {
        }
    }
    EXPECT_GE(accepted, 1u);  // the valid seed parses
}

TEST(FuzzRegressions, Latents) {
    const auto files = inputs("latents");
    ASSERT_FALSE(files.empty());
    for (const auto& path : files) {
        try {
            (void)c3::io::read_latents(path.string());
        } catch (const c3::Error&) {
        }
    }
}
