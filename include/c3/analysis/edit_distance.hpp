// Levenshtein distance between token sequences, and the character-level distance the Fox benchmark reports.
// Fox computes nltk.edit_distance on Python str values, i.e. on code points, so the text versions here decode
// UTF-8 first: "é" is one character, not two bytes.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/parallel.hpp"
#include "c3/core/utf8.hpp"

namespace c3::analysis {

// A non-owning run of tokens: how batch functions take many sequences without copying them (NumPy buffers,
// slices of one flat array).
template <typename T>
struct SequenceView {
    const T* data = nullptr;
    size_t size = 0;
};

template <typename Sequence>
SequenceView<typename Sequence::value_type> view_of(const Sequence& sequence) {
    return {sequence.data(), sequence.size()};
}

// UTF-8, decoded as Python decodes it (c3/core/utf8.hpp); invalid text is a Utf8Error (a ValueError)
// naming the byte offset.
using c3::decode_code_point;
using c3::decode_utf8;

// ---------------------------------------------------------------------------------------------------------
// Levenshtein distance: unit costs for insertion, deletion and substitution (nltk.edit_distance's defaults,
// no transpositions).

// The textbook dynamic programme, one row of O(min(len(a), len(b))) memory: the scalar reference the fast
// version is tested against.
template <typename T>
size_t edit_distance_reference(const T* a, size_t a_size, const T* b, size_t b_size) {
    if (a_size < b_size) std::swap(a, b), std::swap(a_size, b_size);  // the row runs over the shorter one
    std::vector<size_t> row(b_size + 1);
    for (size_t j = 0; j <= b_size; ++j) row[j] = j;
    for (size_t i = 1; i <= a_size; ++i) {
        size_t diagonal = row[0];  // distance(a[:i-1], b[:j-1])
        row[0] = i;
        for (size_t j = 1; j <= b_size; ++j) {
            const size_t above = row[j];
            const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            row[j] = std::min(substitute, std::min(above, row[j - 1]) + 1);
            diagonal = above;
        }
    }
    return row[b_size];
}

namespace detail {

// Myers' bit-parallel algorithm in Hyyrö's multi-word form (as in edlib): one column of the table is the
// vertical deltas of 64 rows per word, so a column costs a few word operations per 64 pattern tokens instead
// of 64 cell updates. Pattern = the shorter sequence (m >= 1 tokens).
template <typename T>
size_t myers_edit_distance(const T* pattern, size_t m, const T* text, size_t n) {
    // Match masks per distinct pattern token: bit i of block i / 64 is set where pattern[i] equals it. Only <
    // and == on tokens are needed, so ids, words and code points all work.
    std::vector<T> alphabet(pattern, pattern + m);
    std::sort(alphabet.begin(), alphabet.end());
    alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
    const auto find = [&](const T& token) -> size_t {
        const auto it = std::lower_bound(alphabet.begin(), alphabet.end(), token);
        return it != alphabet.end() && *it == token ? size_t(it - alphabet.begin()) : alphabet.size();
    };
    const size_t blocks = (m + 63) / 64;
    std::vector<uint64_t> match((alphabet.size() + 1) * blocks, 0);  // the last row: tokens not in the pattern
    for (size_t i = 0; i < m; ++i) match[find(pattern[i]) * blocks + i / 64] |= uint64_t(1) << (i % 64);

    std::vector<uint64_t> plus(blocks, ~uint64_t(0)), minus(blocks, 0);  // vertical deltas +1 / -1 (column 0: +1)
    const uint64_t last_row = uint64_t(1) << ((m - 1) % 64);              // row m within the last block
    const uint64_t high = uint64_t(1) << 63;
    size_t score = m;  // distance(pattern, text[:j]) at row m
    for (size_t j = 0; j < n; ++j) {
        const uint64_t* equal = &match[find(text[j]) * blocks];
        int carry = 1;  // horizontal delta entering the block from above; row 0 grows by 1 per column
        for (size_t block = 0; block < blocks; ++block) {
            const uint64_t carry_negative = carry < 0 ? 1 : 0;
            const uint64_t pv = plus[block], mv = minus[block];
            uint64_t eq = equal[block];
            const uint64_t xv = eq | mv;
            eq |= carry_negative;
            const uint64_t xh = (((eq & pv) + pv) ^ pv) | eq;
            uint64_t ph = mv | ~(xh | pv);
            uint64_t mh = pv & xh;
            const uint64_t out_bit = block + 1 == blocks ? last_row : high;  // padding rows never flow upwards
            const int carry_out = (ph & out_bit) ? 1 : (mh & out_bit) ? -1 : 0;
            ph = (ph << 1) | (carry > 0 ? 1 : 0);
            mh = (mh << 1) | carry_negative;
            plus[block] = mh | ~(xv | ph);
            minus[block] = ph & xv;
            carry = carry_out;
        }
        score = size_t(int64_t(score) + carry);
    }
    return score;
}

}  // namespace detail

// O(len(a) * len(b) / 64) time (bit-parallel), O(len(a) + len(b)) memory.
template <typename T>
size_t edit_distance(const T* a, size_t a_size, const T* b, size_t b_size) {
    // A common prefix or suffix never changes the distance, and near-copies (the common case when scoring a
    // good decoder) are mostly prefix and suffix.
    while (a_size > 0 && b_size > 0 && a[0] == b[0]) ++a, ++b, --a_size, --b_size;
    while (a_size > 0 && b_size > 0 && a[a_size - 1] == b[b_size - 1]) --a_size, --b_size;
    if (a_size < b_size) std::swap(a, b), std::swap(a_size, b_size);  // the pattern is the shorter one
    if (b_size == 0) return a_size;
    return detail::myers_edit_distance(b, b_size, a, a_size);
}

// Any container with data() and size(): std::vector<int32_t> ids, std::vector<std::string> words,
// std::u32string code points. A std::string here is compared byte by byte; use char_edit_distance for text.
template <typename Sequence>
size_t edit_distance(const Sequence& a, const Sequence& b) {
    return edit_distance(a.data(), a.size(), b.data(), b.size());
}

// distance / max(len(a), len(b)), Fox's edit_dist; 0 when both are empty (Fox would divide by zero).
template <typename T>
double normalized_edit_distance(const T* a, size_t a_size, const T* b, size_t b_size) {
    const size_t longest = std::max(a_size, b_size);
    if (longest == 0) return 0.0;
    return double(edit_distance(a, a_size, b, b_size)) / double(longest);
}

template <typename Sequence>
double normalized_edit_distance(const Sequence& a, const Sequence& b) {
    return normalized_edit_distance(a.data(), a.size(), b.data(), b.size());
}

// Character level: both strings are UTF-8, compared as code points.
inline size_t char_edit_distance(std::string_view a, std::string_view b) {
    return edit_distance(decode_utf8(a), decode_utf8(b));
}

inline double normalized_char_edit_distance(std::string_view a, std::string_view b) {
    return normalized_edit_distance(decode_utf8(a), decode_utf8(b));
}

// ---------------------------------------------------------------------------------------------------------
// Batches

template <typename T>
std::vector<size_t> edit_distances(const std::vector<SequenceView<T>>& a, const std::vector<SequenceView<T>>& b) {
    C3_CHECK(a.size() == b.size(), ShapeError, "edit_distances: ", a.size(), " sequences against ", b.size());
    std::vector<size_t> distances(a.size());
    parallel_for(a.size(), [&](size_t i) { distances[i] = edit_distance(a[i].data, a[i].size, b[i].data, b[i].size); });
    return distances;
}

// Normalised character-level distances of UTF-8 string pairs, in parallel.
inline std::vector<double> normalized_char_edit_distances(const std::vector<std::string>& a,
                                                         const std::vector<std::string>& b) {
    C3_CHECK(a.size() == b.size(), ShapeError, "normalized_char_edit_distances: ", a.size(), " strings against ",
             b.size());
    std::vector<double> distances(a.size());
    parallel_for_checked(a.size(), [&](size_t i) { distances[i] = normalized_char_edit_distance(a[i], b[i]); });
    return distances;
}

}  // namespace c3::analysis
