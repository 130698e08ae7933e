// Hand-written scanners for the pre-tokenization regexes of byte-level BPE tokenizers (std::regex has no
// \p{L}). Each returns [begin, end) code-point spans in order; together they cover the input.
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Qwen2:   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Llama-3: the Qwen2 pattern with \p{N}{1,3}
#pragma once
#include <utility>

#include "c3/text/utf8.hpp"

namespace c3::text {

using Span = std::pair<size_t, size_t>;

enum class PreTokenizer { Gpt2, Qwen2, Llama3 };

namespace detail {

// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
inline size_t contraction(const std::vector<uint32_t>& p, size_t i, bool ignore_case) {
    if (p[i] != '\'' || i + 1 >= p.size()) return 0;
    auto lower = [&](size_t k) -> uint32_t {
        if (k >= p.size()) return 0;
        return ignore_case && p[k] >= 'A' && p[k] <= 'Z' ? p[k] + 32 : p[k];
    };
    const uint32_t a = lower(i + 1), b = lower(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// The whitespace alternatives shared by all patterns: \s+(?!\S) then \s+. Returns the end of the match at i.
inline size_t whitespace(const std::vector<uint32_t>& p, size_t i) {
    size_t end = i;
    while (end < p.size() && is_space(p[end])) ++end;
    if (end == p.size()) return end;       // trailing whitespace: all of it
    if (end - i >= 2) return end - 1;      // leave the last one to prefix the next token
    return end;                            // a single one before a non-space: \s+
}

template <typename Predicate>
size_t run(const std::vector<uint32_t>& p, size_t i, Predicate predicate) {
    while (i < p.size() && predicate(p[i])) ++i;
    return i;
}

}  // namespace detail

inline std::vector<Span> pretokenize(const std::vector<uint32_t>& p, PreTokenizer kind) {
    std::vector<Span> spans;
    const size_t n = p.size();
    for (size_t i = 0; i < n;) {
        size_t end = 0;
        if (kind == PreTokenizer::Gpt2) {
            if (size_t c = detail::contraction(p, i, false)) {
                end = i + c;
            } else {
                const size_t start = (p[i] == ' ' && i + 1 < n && !is_space(p[i + 1])) ? i + 1 : i;
                if (start < n && is_letter(p[start])) end = detail::run(p, start, is_letter);
                else if (start < n && is_number(p[start])) end = detail::run(p, start, is_number);
                else if (start < n && is_other(p[start])) end = detail::run(p, start, is_other);
                else end = detail::whitespace(p, i);
            }
        } else {
            const size_t max_digits = kind == PreTokenizer::Llama3 ? 3 : 1;
            if (size_t c = detail::contraction(p, i, true)) {
                end = i + c;
            } else if (is_letter(p[i])) {
                end = detail::run(p, i, is_letter);
            } else if (!is_newline(p[i]) && !is_number(p[i]) && i + 1 < n && is_letter(p[i + 1])) {
                end = detail::run(p, i + 1, is_letter);  // [^\r\n\p{L}\p{N}]?\p{L}+
            } else if (is_number(p[i])) {
                end = i;
                while (end < n && end - i < max_digits && is_number(p[end])) ++end;
            } else if (is_other(p[i]) || (p[i] == ' ' && i + 1 < n && is_other(p[i + 1]))) {
                end = detail::run(p, p[i] == ' ' ? i + 1 : i, is_other);  //  ?[^\s\p{L}\p{N}]+[\r\n]*
                end = detail::run(p, end, is_newline);
            } else {
                // \s*[\r\n]+ : the longest whitespace prefix that ends in a newline; else the \s+ rules.
                const size_t space_end = detail::run(p, i, is_space);
                size_t last_newline = space_end;
                for (size_t k = i; k < space_end; ++k)
                    if (is_newline(p[k])) last_newline = k;
                end = last_newline < space_end ? last_newline + 1 : detail::whitespace(p, i);
            }
        }
        spans.emplace_back(i, end);
        i = end;
    }
    return spans;
}

}  // namespace c3::text
