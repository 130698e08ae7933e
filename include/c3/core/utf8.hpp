// The one UTF-8 decoder. Strict, as Python's bytes.decode("utf-8") is: overlong forms, surrogates, values past
// U+10FFFF and truncated sequences are refused with the byte offset, so text Python would refuse is refused
// here too. The error is a Utf8Error everywhere (a TokenizerError and a ValueError, core/errors.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "c3/core/errors.hpp"

namespace c3 {

// Decodes the code point starting at text[offset] and returns its byte length.
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
        throw Utf8Error(::c3::detail::concat("invalid UTF-8 at byte offset ", offset, ": unexpected byte 0x", std::hex,
                                         unsigned(lead)));
    }
    for (size_t i = 1; i < length; ++i) {
        C3_CHECK(offset + i < text.size(), Utf8Error, "invalid UTF-8 at byte offset ", offset, ": truncated sequence");
        const uint8_t continuation = byte(offset + i);
        C3_CHECK((continuation & 0xC0) == 0x80, Utf8Error, "invalid UTF-8 at byte offset ", offset + i,
                 ": expected a continuation byte");
        value = (value << 6) | (continuation & 0x3F);
    }
    C3_CHECK(value >= minimum && value <= 0x10FFFF && !(value >= 0xD800 && value <= 0xDFFF), Utf8Error,
             "invalid UTF-8 at byte offset ", offset, ": overlong form, surrogate or value past U+10FFFF");
    code_point = value;
    return length;
}

// The code points of a UTF-8 text.
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

}  // namespace c3
