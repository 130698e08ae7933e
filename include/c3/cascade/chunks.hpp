// Chunked compression of documents of any length: each document's token ids are cut into consecutive chunks of
// chunk_tokens tokens (the last one shorter), and each chunk is compressed into its own N latents, exactly as
// Cascade::compress compresses that chunk alone.
//
// The chunks of all documents are compressed in batches of at most batch_chunks, in document order, so that a
// batch may hold chunks of several documents; a shorter chunk is left-padded to the batch's longest, which never
// changes its latents (every method reads only each row's real tokens, and position ids count real tokens).
// Memory is that of one batch: the activations are reused from batch to batch, and only the outputs, K x N x d_dec
// floats per document of K chunks, grow with the documents.
#pragma once
#include <algorithm>
#include <vector>

#include "c3/cascade/cascade.hpp"

namespace c3 {

// One document's token ids, not owned.
struct TokenSpan {
    const int32_t* ids = nullptr;
    size_t length = 0;
};

// One document's chunked latents: K chunks, an empty document giving K = 0.
template <typename T>
struct ChunkedLatents {
    std::vector<T> latents;         // [K, N, d_dec]
    std::vector<int64_t> offsets;   // [K]: the token offset in the document of each chunk's first token
    std::vector<int64_t> lengths;   // [K]: each chunk's tokens (chunk_tokens, the last one possibly fewer)
    size_t chunks() const { return offsets.size(); }
};

// Chunks a document of `length` tokens is cut into.
inline size_t chunk_count(size_t length, size_t chunk_tokens) {
    return chunk_tokens == 0 ? 0 : (length + chunk_tokens - 1) / chunk_tokens;
}

// The settings compress_chunks accepts, or a ValueError that names the limit.
inline void check_chunk_settings(const CascadeConfig& config, size_t chunk_tokens, size_t batch_chunks) {
    // The latents of a document are K blocks of N rows; no_context has no rows, full_context one per token.
    C3_CHECK(config.method != CompressionMethod::NoContext && config.method != CompressionMethod::FullContext,
             ValueError, "chunked compression needs a latent block of N rows per chunk (c3 or a baseline of the "
             "same width); method ", method_name(config.method), " has ",
             config.method == CompressionMethod::NoContext ? "an empty block (the decoder alone)"
                                                           : "a block as wide as its context");
    const size_t limit = config.max_context_length();
    C3_CHECK(chunk_tokens >= 1 && chunk_tokens <= limit, ValueError, "chunk_tokens must be between 1 and ", limit,
             " (the longest context the encoder reads beside its ", config.num_latents,
             " queries and their two markers), got ", chunk_tokens);
    C3_CHECK(batch_chunks >= 1, ValueError, "batch_chunks must be at least 1, got ", batch_chunks);
}

// Every document cut into chunks of chunk_tokens tokens and compressed in batches of at most batch_chunks chunks
// (see the top of this file). Token ids are checked against the encoder's vocabulary. `a` holds one batch's
// activations (reused; pass the same one across calls to keep its buffers).
template <typename T>
std::vector<ChunkedLatents<T>> compress_chunks(const Cascade<T>& cascade, const std::vector<TokenSpan>& documents,
                                               size_t chunk_tokens, size_t batch_chunks, CascadeActivations<T>& a) {
    const CascadeConfig& config = cascade.config;
    check_chunk_settings(config, chunk_tokens, batch_chunks);
    const size_t N = config.num_latents, dd = config.decoder.hidden_size, vocab = config.encoder.vocab_size;
    std::vector<ChunkedLatents<T>> results(documents.size());
    for (size_t d = 0; d < documents.size(); ++d) {
        const TokenSpan& document = documents[d];
        C3_CHECK(document.ids != nullptr || document.length == 0, ValueError, "document ", d, " has no token data");
        for (size_t t = 0; t < document.length; ++t)
            C3_CHECK(document.ids[t] >= 0 && size_t(document.ids[t]) < vocab, ValueError, "document ", d,
                     ": token id ", document.ids[t], " at index ", t, " is outside the encoder vocabulary of ", vocab);
        ChunkedLatents<T>& result = results[d];
        const size_t chunks = chunk_count(document.length, chunk_tokens);
        result.latents.assign(chunks * N * dd, T(0));
        for (size_t k = 0; k < chunks; ++k) {
            const size_t offset = k * chunk_tokens;
            result.offsets.push_back(int64_t(offset));
            result.lengths.push_back(int64_t(std::min(chunk_tokens, document.length - offset)));
        }
    }
    // The batch being filled: (document, chunk) pairs in document order, and their left-padded ids.
    std::vector<std::pair<size_t, size_t>> members;
    members.reserve(std::min(batch_chunks, size_t(1) << 16));
    std::vector<int32_t> ids;
    std::vector<uint8_t> mask;
    auto run_batch = [&]() {
        if (members.empty()) return;
        size_t length = 0;
        for (const auto& [d, k] : members) length = std::max(length, size_t(results[d].lengths[k]));
        const size_t B = members.size();
        ids.assign(B * length, 0);
        mask.assign(B * length, 0);
        for (size_t b = 0; b < B; ++b) {
            const auto [d, k] = members[b];
            const size_t offset = size_t(results[d].offsets[k]), count = size_t(results[d].lengths[k]);
            const size_t start = b * length + length - count;  // left padding
            std::copy(documents[d].ids + offset, documents[d].ids + offset + count, ids.begin() + start);
            std::fill(mask.begin() + start, mask.begin() + (b + 1) * length, uint8_t(1));
        }
        try {
            cascade.compress(ids.data(), mask.data(), B, length, a, false);
        } catch (const ValueError& error) {
            // compress names a row of this batch; say which chunks the batch holds.
            const auto [first_document, first_chunk] = members.front();
            const auto [last_document, last_chunk] = members.back();
            throw ValueError(detail::concat("compressing the batch of chunks from document ", first_document,
                                            " chunk ", first_chunk, " to document ", last_document, " chunk ",
                                            last_chunk, " (", chunk_tokens, " tokens per chunk): ", error.what()));
        }
        C3_CHECK(a.block_width == N && a.latents.size() == B * N * dd, ShapeError, "compress gave a block of ",
                 a.block_width, " rows for ", B, " chunks; chunked compression needs ", N);
        for (size_t b = 0; b < B; ++b) {
            const auto [d, k] = members[b];
            std::copy(a.latents.begin() + b * N * dd, a.latents.begin() + (b + 1) * N * dd,
                      results[d].latents.begin() + k * N * dd);
        }
        members.clear();
    };
    for (size_t d = 0; d < documents.size(); ++d)
        for (size_t k = 0; k < results[d].chunks(); ++k) {
            members.emplace_back(d, k);
            if (members.size() == batch_chunks) run_batch();
        }
    run_batch();
    return results;
}

template <typename T>
std::vector<ChunkedLatents<T>> compress_chunks(const Cascade<T>& cascade, const std::vector<TokenSpan>& documents,
                                               size_t chunk_tokens, size_t batch_chunks) {
    CascadeActivations<T> a;
    return compress_chunks(cascade, documents, chunk_tokens, batch_chunks, a);
}

}  // namespace c3
