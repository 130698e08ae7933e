// JSON text -> nlohmann::json for every file c3 reads (safetensors headers, config.json, shard indexes,
// tokenizer.json): one parser entry point, so every malformed input ends in the same typed FormatError.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "c3/core/errors.hpp"

namespace c3 {

// Real files nest at most 6 deep; the bound keeps parser and destructor recursion independent of the input.
constexpr size_t kMaxJsonDepth = 16;

// Deepest bracket nesting outside strings. Checked before parsing so that no parser or destructor recursion
// ever depends on a depth the file chooses.
inline size_t json_nesting_depth(const std::string& text) {
    size_t depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if ((c == '}' || c == ']') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

// Parses JSON text: a FormatError for anything nlohmann rejects (syntax, invalid UTF-8) or nesting deeper
// than kMaxJsonDepth. nlohmann's message quotes the bytes it stopped at, which may be invalid UTF-8, so
// they are replaced by escapes: the message stays readable text.
inline nlohmann::json parse_json_text(const std::string& text, const std::string& what) {
    C3_CHECK(json_nesting_depth(text) <= kMaxJsonDepth, FormatError, what, ": JSON nests more than ",
             kMaxJsonDepth, " levels deep");
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& error) {
        std::string message;
        for (unsigned char c : std::string(error.what())) {
            if (c >= 0x20 && c < 0x7f) {
                message += char(c);
            } else {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
                message += escaped;
            }
        }
        throw FormatError(what + " is not valid JSON: " + message);
    }
}

// A JSON integer >= 0 that fits size_t; false for negative numbers, floats and anything else.
inline bool json_to_size(const nlohmann::json& value, size_t& out) {
    if (value.is_number_unsigned()) {
        const uint64_t number = value.get<uint64_t>();
        if (number > uint64_t(SIZE_MAX)) return false;
        out = size_t(number);
        return true;
    }
    if (value.is_number_integer()) {
        const int64_t number = value.get<int64_t>();
        if (number < 0) return false;
        out = size_t(number);
        return true;
    }
    return false;
}

}  // namespace c3
