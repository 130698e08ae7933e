// UTF-8 decoding and encoding on code points, and the Unicode classes the pre-tokenizers need.
#pragma once
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/utf8.hpp"
#include "c3/text/unicode_tables.hpp"

namespace c3::text {

// Decodes UTF-8 (c3/core/utf8.hpp); invalid input is a Utf8Error (a TokenizerError) naming the byte offset.
inline std::vector<uint32_t> decode_utf8(std::string_view text) {
    std::vector<uint32_t> points;
    points.reserve(text.size());
    for (size_t offset = 0; offset < text.size();) {
        char32_t point = 0;
        offset += decode_code_point(text, offset, point);
        points.push_back(uint32_t(point));
    }
    return points;
}

inline void append_utf8(std::string& out, uint32_t point) {
    if (point < 0x80) {
        out += char(point);
    } else if (point < 0x800) {
        out += char(0xC0 | (point >> 6));
        out += char(0x80 | (point & 0x3F));
    } else if (point < 0x10000) {
        out += char(0xE0 | (point >> 12));
        out += char(0x80 | ((point >> 6) & 0x3F));
        out += char(0x80 | (point & 0x3F));
    } else {
        out += char(0xF0 | (point >> 18));
        out += char(0x80 | ((point >> 12) & 0x3F));
        out += char(0x80 | ((point >> 6) & 0x3F));
        out += char(0x80 | (point & 0x3F));
    }
}

template <size_t N>
bool in_ranges(const unicode::Range (&table)[N], uint32_t point) {
    const auto* found = std::upper_bound(std::begin(table), std::end(table), point,
                                         [](uint32_t p, const unicode::Range& r) { return p < r.first; });
    return found != std::begin(table) && point <= (found - 1)->last;
}

inline bool is_letter(uint32_t p) { return p < 0x80 ? ((p | 0x20) >= 'a' && (p | 0x20) <= 'z') : in_ranges(unicode::kLetterRanges, p); }
inline bool is_number(uint32_t p) { return p < 0x80 ? (p >= '0' && p <= '9') : in_ranges(unicode::kNumberRanges, p); }
// Unicode White_Space, as \s in the regex engines tokenizers uses.
inline bool is_space(uint32_t p) {
    return (p >= 0x09 && p <= 0x0D) || p == 0x20 || p == 0x85 || p == 0xA0 || p == 0x1680 || (p >= 0x2000 && p <= 0x200A) ||
           p == 0x2028 || p == 0x2029 || p == 0x202F || p == 0x205F || p == 0x3000;
}
inline bool is_other(uint32_t p) { return !is_space(p) && !is_letter(p) && !is_number(p); }
inline bool is_newline(uint32_t p) { return p == '\r' || p == '\n'; }
inline bool nfc_unstable(uint32_t p) { return p >= 0x300 && in_ranges(unicode::kNfcUnstableRanges, p); }

}  // namespace c3::text
