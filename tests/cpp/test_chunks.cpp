// Chunked compression (cascade/chunks.hpp) and chunked latents files (io/latents.hpp): each chunk's latents equal
// Cascade::compress of that chunk alone, batches run across documents, and chunk offsets and lengths survive a file
// and are checked when read.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "c3/cascade/chunks.hpp"
#include "c3/io/latents.hpp"
#include "small_models.hpp"

namespace {

using namespace c3;
namespace fs = std::filesystem;

CascadeConfig chunk_cascade(CompressionMethod method = CompressionMethod::C3) {
    return c3::testing::small_cascade_config(24, method);
}

std::vector<int32_t> document(size_t length, int32_t seed) {
    std::vector<int32_t> ids(length);
    for (size_t t = 0; t < length; ++t) ids[t] = int32_t((size_t(seed) * 7 + t * 5 + t * t) % 17);
    return ids;
}

std::string temp_file(const std::string& name) {
    return (fs::temp_directory_path() / ("c3_chunks_" + std::to_string(::getpid()) + "_" + name)).string();
}

}  // namespace

TEST(Chunks, EachChunkEqualsCompressOfThatChunkAlone) {
    for (CompressionMethod method : {CompressionMethod::C3, CompressionMethod::MeanPoolHidden,
                                     CompressionMethod::Truncate}) {
        Cascade<float> cascade(chunk_cascade(method));
        cascade.init_random(5);
        const size_t chunk = 7, N = 3, d = cascade.config.decoder.hidden_size;
        // Full chunks, short tails (>= N), an empty document; batches of 3 run across documents.
        const std::vector<std::vector<int32_t>> documents = {document(24, 1), document(0, 2), document(7, 3),
                                                             document(4, 4), document(17, 5)};
        std::vector<TokenSpan> spans;
        for (const auto& ids : documents) spans.push_back({ids.data(), ids.size()});
        const std::vector<ChunkedLatents<float>> results = compress_chunks(cascade, spans, chunk, 3);
        ASSERT_EQ(results.size(), documents.size());
        for (size_t i = 0; i < documents.size(); ++i) {
            const ChunkedLatents<float>& result = results[i];
            const size_t K = chunk_count(documents[i].size(), chunk);
            ASSERT_EQ(result.chunks(), K);
            ASSERT_EQ(result.latents.size(), K * N * d);
            for (size_t k = 0; k < K; ++k) {
                EXPECT_EQ(result.offsets[k], int64_t(k * chunk));
                EXPECT_EQ(result.lengths[k], int64_t(std::min(chunk, documents[i].size() - k * chunk)));
                CascadeActivations<float> a;
                cascade.compress(documents[i].data() + result.offsets[k], nullptr, 1, size_t(result.lengths[k]), a,
                                 false);
                for (size_t j = 0; j < N * d; ++j)
                    ASSERT_NEAR(result.latents[k * N * d + j], a.latents[j], 1e-5)
                        << method_name(method) << " document " << i << " chunk " << k;
            }
        }
    }
}

TEST(Chunks, BadSettingsAndMethodsAreValueErrors) {
    Cascade<float> cascade(chunk_cascade());
    const std::vector<int32_t> ids = document(10, 1);
    const std::vector<TokenSpan> spans = {{ids.data(), ids.size()}};
    const size_t limit = cascade.config.max_context_length();
    EXPECT_EQ(limit, 24u - 3u - 2u);
    EXPECT_THROW(compress_chunks(cascade, spans, 0, 4), ValueError);
    EXPECT_THROW(compress_chunks(cascade, spans, limit + 1, 4), ValueError);
    EXPECT_NO_THROW(compress_chunks(cascade, spans, limit, 4));
    EXPECT_THROW(compress_chunks(cascade, spans, 4, 0), ValueError);
    try {
        compress_chunks(cascade, spans, limit + 1, 4);
    } catch (const ValueError& error) {
        EXPECT_NE(std::string(error.what()).find("between 1 and " + std::to_string(limit)), std::string::npos);
    }
    const std::vector<int32_t> outside = {1, 2, 25};
    EXPECT_THROW(compress_chunks(cascade, {{outside.data(), outside.size()}}, 2, 4), ValueError);
    for (CompressionMethod method : {CompressionMethod::NoContext, CompressionMethod::FullContext}) {
        Cascade<float> other(chunk_cascade(method));
        EXPECT_THROW(compress_chunks(other, spans, 4, 4), ValueError) << method_name(method);
    }
}

TEST(Chunks, OffsetsSurviveALatentsFileAndAreCheckedOnReading) {
    const std::string path = temp_file("latents.safetensors");
    const Shape shape{3, 2, 4};
    std::vector<float> latents(24);
    for (size_t i = 0; i < latents.size(); ++i) latents[i] = 0.5f * float(i) - 3.0f;
    const io::LatentChunks chunks{{0, 8, 16}, {8, 8, 5}};
    io::write_latents(path, shape, latents.data(), {8, 8, 5}, true, {}, &chunks);
    const io::LatentsFile file = io::read_latents(path);
    ASSERT_TRUE(file.has_chunks);
    EXPECT_EQ(file.chunks.offsets, chunks.offsets);
    EXPECT_EQ(file.chunks.lengths, chunks.lengths);
    EXPECT_EQ(file.metadata.at("c3.chunk_offsets"), "[0,8,16]");
    // Written again from what was read: the same chunks.
    const std::string again = temp_file("again.safetensors");
    io::write_latents(again, file);
    EXPECT_EQ(io::read_latents(again).chunks.lengths, chunks.lengths);
    // Without chunks: no chunk keys, even when the metadata given carries them, and the checksum of the data alone.
    io::write_latents(again, shape, latents.data(), {}, false, file.metadata);
    const io::LatentsFile plain = io::read_latents(again);
    EXPECT_FALSE(plain.has_chunks);
    EXPECT_EQ(plain.metadata.count("c3.chunk_offsets"), 0u);
    EXPECT_EQ(plain.metadata.at("c3.checksum"), sha256_hex(latents.data(), latents.size() * sizeof(float)));
    // Chunks that are not consecutive, or do not match the rows or the source tokens, are refused when written.
    for (const io::LatentChunks& bad : {io::LatentChunks{{0, 8, 17}, {8, 8, 5}}, io::LatentChunks{{0, 8}, {8, 8}},
                                        io::LatentChunks{{0, 8, 16}, {8, 8, 0}},
                                        io::LatentChunks{{-1, 7, 15}, {8, 8, 5}}})
        EXPECT_THROW(io::write_latents(again, shape, latents.data(), {}, false, {}, &bad), ValueError);
    EXPECT_THROW(io::write_latents(again, shape, latents.data(), {8, 8, 4}, true, {}, &chunks), ValueError);
    fs::remove(path);
    fs::remove(again);
}

// The decoder prompt of K blocks: every block in its own <img> ... </img> at DecoderLayout's slots, the task's
// suffix (left-padded, masked) in place of the prompt's, and one block with no task is the plain prompt.
TEST(DocumentPrompt, BlocksSitAtTheLayoutsSlotsAndTheTaskReplacesTheSuffix) {
    CascadeConfig config = c3::testing::small_cascade_config(64);
    config.prompt_prefix = {1, 2};
    config.prompt_suffix = {3};
    Cascade<float> cascade(config);
    cascade.init_random(5);
    const size_t N = config.num_latents, K = 3, dd = config.decoder.hidden_size, B = 2;
    std::vector<float> latents(B * K * N * dd);
    for (size_t i = 0; i < latents.size(); ++i) latents[i] = float(i) * 1e-3f;
    const std::vector<int32_t> task = {0, 4, 5, 6, 7, 8};  // row 0: "4 5"... left-padded by one
    const std::vector<uint8_t> task_mask = {0, 1, 1, 1, 1, 1};
    const std::vector<int32_t> answers = {9, 10, 11, 12};
    CascadeActivations<float> a;
    cascade.build_decoder_input(latents.data(), N, K, nullptr, TaskSuffix{task.data(), task_mask.data(), 3},
                                answers.data(), nullptr, B, 2, a);
    const DecoderLayout& layout = a.layout;
    ASSERT_EQ(layout.prompt_length(), 2 + K * (N + 2) + 3);
    const size_t Ld = layout.prompt_length() + 2;
    for (size_t b = 0; b < B; ++b) {
        const int32_t* row = a.decoder_ids.data() + b * Ld;
        EXPECT_EQ(row[0], 1);
        EXPECT_EQ(row[1], 2);
        for (size_t k = 0; k < K; ++k) {
            EXPECT_EQ(row[layout.slot(k) - 1], config.latent_start_token);
            EXPECT_EQ(row[layout.slot(k) + N], config.latent_end_token);
            for (size_t i = 0; i < N; ++i) {
                EXPECT_TRUE(layout.is_slot(layout.slot(k) + i));
                const float* input = a.decoder_input.data() + (b * Ld + layout.slot(k) + i) * dd;
                EXPECT_EQ(input[0], latents[((b * K + k) * N + i) * dd]);
            }
            EXPECT_FALSE(layout.is_slot(layout.slot(k) - 1));
            EXPECT_FALSE(layout.is_slot(layout.slot(k) + N));
        }
        for (size_t i = 0; i < 3; ++i) {
            EXPECT_EQ(a.decoder_mask[b * Ld + layout.suffix_start() + i], task_mask[b * 3 + i]);
            if (task_mask[b * 3 + i]) {
                EXPECT_EQ(row[layout.suffix_start() + i], task[b * 3 + i]);
            }
        }
        EXPECT_EQ(row[layout.prompt_length()], answers[b * 2]);
    }
    // One block, no task: the plain prompt of the config.
    CascadeActivations<float> plain, one;
    cascade.build_decoder_input(latents.data(), answers.data(), nullptr, B, 2, plain);
    cascade.build_decoder_input(latents.data(), N, 1, nullptr, TaskSuffix{}, answers.data(), nullptr, B, 2, one);
    EXPECT_EQ(plain.decoder_ids, one.decoder_ids);
    EXPECT_EQ(plain.decoder_input, one.decoder_input);
    EXPECT_EQ(plain.layout.prompt_length(), config.prompt_length());
}

TEST(DocumentPrompt, TaskPromptsAreTextAndUnknownTasksAreValueErrors) {
    EXPECT_EQ(task_prompt("chunk", 7), "<chunk 7>");
    EXPECT_EQ(task_prompt("continue"), "<continue>");
    EXPECT_THROW(task_prompt("summary"), ValueError);
    EXPECT_THROW(task_prompt("continue", 1), ValueError);
    EXPECT_EQ(task_names().size(), 2u);
}
