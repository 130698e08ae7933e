// Levenshtein distance between token sequences, and the character-level distance the Fox benchmark reports.
// Fox computes nltk.edit_distance on Python str values, i.e. on code points, so the text versions here decode
// UTF-8 first: "é" is one character, not two bytes.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/parallel.hpp"

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

// ---------------------------------------------------------------------------------------------------------
// UTF-8

// Decodes the code point starting at text[offset] and returns its byte length. Strict, as Python's
// bytes.decode("utf-8") is: overlong forms, surrogates, values past U+10FFFF and truncated sequences throw
// ValueError naming the byte offset, so text Python would refuse is refused here too.
inline size_t decode_code_point(std::string_view text, size_t offset, char32_t& code_point) {
    const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
    const uint8_t lead = byte(offset);
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    }
    size_t length = 0;
    char32_t value = 0, minimum = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2, value = lead & 0x1F, minimum = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3, value = lead & 0x0F, minimum = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4, value = lead & 0x07, minimum = 0x10000;
    } else {
        throw ValueError(::c3::detail::concat("invalid UTF-8 at byte offset ", offset, ": unexpected byte 0x", std::hex,
                                        unsigned(lead)));
    }
    for (size_t i = 1; i < length; ++i) {
        C3_CHECK(offset + i < text.size(), ValueError, "invalid UTF-8 at byte offset ", offset,
                 ": truncated sequence");
        const uint8_t continuation = byte(offset + i);
        C3_CHECK((continuation & 0xC0) == 0x80, ValueError, "invalid UTF-8 at byte offset ", offset + i,
                 ": expected a continuation byte");
        value = (value << 6) | (continuation & 0x3F);
    }
    C3_CHECK(value >= minimum && value <= 0x10FFFF && !(value >= 0xD800 && value <= 0xDFFF), ValueError,
             "invalid UTF-8 at byte offset ", offset, ": overlong form, surrogate or value past U+10FFFF");
    code_point = value;
    return length;
}

inline std::u32string decode_utf8(std::string_view text) {
    std::u32string code_points;
    code_points.reserve(text.size());
    for (size_t offset = 0; offset < text.size();) {
        char32_t code_point = 0;
        offset += decode_code_point(text, offset, code_point);
        code_points.push_back(code_point);
    }
    return code_points;
}

// ---------------------------------------------------------------------------------------------------------
// Levenshtein distance: unit costs for insertion, deletion and substitution (nltk.edit_distance's defaults,
// no transpositions). O(len(a) * len(b)) time, one row of O(min(len(a), len(b))) memory.

template <typename T>
size_t edit_distance(const T* a, size_t a_size, const T* b, size_t b_size) {
    // A common prefix or suffix never changes the distance, and near-copies (the common case when scoring a
    // good decoder) are mostly prefix and suffix.
    while (a_size > 0 && b_size > 0 && a[0] == b[0]) ++a, ++b, --a_size, --b_size;
    while (a_size > 0 && b_size > 0 && a[a_size - 1] == b[b_size - 1]) --a_size, --b_size;
    if (a_size < b_size) std::swap(a, b), std::swap(a_size, b_size);  // the row runs over the shorter one
    if (b_size == 0) return a_size;
    std::vector<size_t> row(b_size + 1);
    for (size_t j = 0; j <= b_size; ++j) row[j] = j;
    for (size_t i = 1; i <= a_size; ++i) {
        size_t diagonal = row[0];  // distance(a[:i-1], b[:j-1])
        row[0] = i;
        const T& a_token = a[i - 1];
        for (size_t j = 1; j <= b_size; ++j) {
            const size_t above = row[j];
            const size_t substitute = diagonal + (a_token == b[j - 1] ? 0 : 1);
            row[j] = std::min(substitute, std::min(above, row[j - 1]) + 1);
            diagonal = above;
        }
    }
    return row[b_size];
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

namespace detail {
// parallel_for for bodies that may throw: an exception must not leave an OpenMP region, so each index keeps
// its own and the one at the lowest index is rethrown afterwards (the same error whatever the thread count).
template <typename Body>
void parallel_for_checked(size_t count, Body&& body) {
    std::vector<std::exception_ptr> errors(count);
    parallel_for(count, [&](size_t i) {
        try {
            body(i);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    });
    for (const std::exception_ptr& error : errors)
        if (error) std::rethrow_exception(error);
}
}  // namespace detail

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
    detail::parallel_for_checked(a.size(), [&](size_t i) { distances[i] = normalized_char_edit_distance(a[i], b[i]); });
    return distances;
}

}  // namespace c3::analysis
