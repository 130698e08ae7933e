// Results that must never be silently wrong: SHA-256 against the FIPS 180-4 vectors, latents files written in C++
// with a checksum that read_latents checks (bit flips refused), cascade identities that cover every weight,
// non-finite weights refused at save, and the trainer's NaN guard for a step that makes a parameter non-finite.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "c3/core/sha256.hpp"
#include "c3/io/c3_checkpoint.hpp"
#include "c3/io/latents.hpp"
#include "c3/train/checkpoint.hpp"
#include "c3/train/trainer.hpp"
#include "small_models.hpp"

namespace {

namespace fs = std::filesystem;
using namespace c3;

class TempDir {
public:
    TempDir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("c3_test_integrity_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code error;
        fs::remove_all(path_, error);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    fs::path path_;
};

CascadeConfig tiny_cascade() {
    CascadeConfig c = c3::testing::small_cascade_config(32);
    c.stop_tokens = {4};
    return c;
}

std::string sha256_of(const std::string& text) { return sha256_hex(text.data(), text.size()); }

}  // namespace

TEST(Sha256, FipsVectors) {
    EXPECT_EQ(sha256_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha256_of(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PiecesHashAsTheWhole) {
    std::string text;
    for (int i = 0; i < 300; ++i) text += char(i * 31 + 7);
    const std::string whole = sha256_of(text);
    for (size_t cut : {size_t(0), size_t(1), size_t(55), size_t(56), size_t(63), size_t(64), size_t(65), size_t(200)}) {
        Sha256 hash;
        hash.update(text.data(), cut).update(text.data() + cut, text.size() - cut);
        EXPECT_EQ(hash.finish_hex(), whole) << cut;
    }
}

TEST(Latents, WrittenInCppAndReadBackWithTheirChecksum) {
    TempDir directory;
    const std::string path = directory.file("latents.safetensors");
    const Shape shape{2, 3, 4};
    std::vector<float> latents(24);
    for (size_t i = 0; i < latents.size(); ++i) latents[i] = 0.25f * float(i) - 1.0f;
    io::write_latents(path, shape, latents.data(), {5, 9}, true, {{"c3.cascade", "0123456789abcdef"}});
    const io::LatentsFile file = io::read_latents(path);
    EXPECT_EQ(file.shape, shape);
    EXPECT_EQ(file.latents, latents);
    EXPECT_EQ(file.source_tokens, (std::vector<int64_t>{5, 9}));
    EXPECT_EQ(file.metadata.at("c3.cascade"), "0123456789abcdef");
    ASSERT_EQ(file.metadata.at("c3.checksum").size(), 64u);
    io::write_latents(directory.file("again.safetensors"), file);
    EXPECT_EQ(io::read_latents(directory.file("again.safetensors")).latents, latents);

    // One flipped bit in the data, which leaves every value finite, is refused.
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = header << 8 | uint8_t(bytes[size_t(i)]);
    bytes[8 + header] = char(bytes[8 + header] ^ 1);
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), std::streamsize(bytes.size()));
    }
    EXPECT_THROW(io::read_latents(path), FormatError);

    latents[5] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(io::write_latents(path, shape, latents.data(), {}, false), ValueError);
    EXPECT_THROW(io::write_latents(path, Shape{2, 12}, latents.data(), {}, false), ShapeError);
}

TEST(CascadeIdentity, CoversEveryWeightAndIsRecordedAtSave) {
    Cascade<float> cascade(tiny_cascade());
    cascade.init_random(3);
    const std::string identity = io::cascade_identity(cascade);
    const uint64_t fingerprint = io::parameters_fingerprint(cascade);
    EXPECT_EQ(identity.size(), 16u);
    for (float* weight : {&cascade.encoder.parameters.back(), &cascade.decoder.parameters.front(),
                          &cascade.decoder.parameters[cascade.decoder.parameters.size() / 2],
                          &cascade.bridge_parameters.back()}) {
        const float old = *weight;
        *weight = std::nextafter(old, 1.0f);
        EXPECT_NE(io::cascade_identity(cascade), identity);
        EXPECT_NE(io::parameters_fingerprint(cascade), fingerprint);
        *weight = old;
        EXPECT_EQ(io::cascade_identity(cascade), identity);
        EXPECT_EQ(io::parameters_fingerprint(cascade), fingerprint);
    }
    TempDir directory;
    io::save_c3(cascade, directory.file("cascade"));
    const nlohmann::json config = io::read_json_file(directory.file("cascade") + "/config.json");
    EXPECT_EQ(config["c3"]["identity"], identity);
    const Cascade<float> loaded = io::load_c3<float>(directory.file("cascade"), CascadeConfig{});
    EXPECT_EQ(io::cascade_identity(loaded), identity);
}

TEST(NonFiniteWeights, AreNeverSaved) {
    TempDir directory;
    Cascade<float> cascade(tiny_cascade());
    cascade.init_random(1);
    io::save_c3(cascade, directory.file("cascade"));
    cascade.decoder.parameters[7] = std::numeric_limits<float>::infinity();
    try {
        io::save_c3(cascade, directory.file("cascade"));
        FAIL() << "saved an infinite weight";
    } catch (const ValueError& error) {
        EXPECT_NE(std::string(error.what()).find(cascade.decoder.layout.front().name), std::string::npos)
            << error.what();
    }
    EXPECT_EQ(io::cascade_identity(io::load_c3<float>(directory.file("cascade"), CascadeConfig{})).size(), 16u);
    EXPECT_THROW(io::save_transformer(cascade.decoder, directory.file("decoder")), ValueError);
    EXPECT_FALSE(fs::exists(directory.file("decoder")));
}

TEST(NanGuard, AStepThatMakesAParameterNonFiniteIsReported) {
    Transformer<float> model(c3::testing::small_config());
    model.init_random(2);
    TrainingOptions options;
    options.adamw.learning_rate = 1e300;
    options.warmup_steps = 0;
    LanguageModelTrainer<float> trainer(model, options);
    const size_t B = 2, L = 5;
    std::vector<int32_t> ids(B * L), targets(B * L);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i % 20), targets[i] = int32_t((i + 1) % 20);
    try {
        trainer.step({{B, L, ids.data(), nullptr, nullptr, nullptr}}, {targets.data()});
        FAIL() << "a step to infinite weights passed";
    } catch (const ValueError& error) {
        EXPECT_NE(std::string(error.what()).find("NaN guard: step 1"), std::string::npos) << error.what();
    }
    TempDir directory;
    std::vector<ParameterGroup<float>> groups = trainer.parameter_groups();
    EXPECT_THROW(save_training_checkpoint(directory.file("checkpoint.safetensors"), groups, trainer.trainer.optimizer),
                 ValueError);
    EXPECT_FALSE(fs::exists(directory.file("checkpoint.safetensors")));
}
