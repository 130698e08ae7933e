// Levenshtein alignment of a hypothesis against its reference: what happened to each reference token (kept,
// substituted, deleted) and where the hypothesis inserted extra tokens. This is the strict, order-aware view
// of reconstruction that set-based Fox precision cannot give, and the input of the per-position profiles.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "c3/analysis/edit_distance.hpp"
#include "c3/core/errors.hpp"

namespace c3::analysis {

enum class TokenOp : uint8_t { Kept = 0, Substituted = 1, Deleted = 2 };

struct Alignment {
    std::vector<TokenOp> reference_ops;     // one per reference token
    std::vector<size_t> insertions_before;  // [reference length + 1]: hypothesis tokens inserted before reference
                                            // position i; the last entry counts those after the end
    size_t distance = 0;                    // substitutions + deletions + insertions
};

// Aligns hypothesis to reference with unit costs.
//
// Ties between optimal alignments are broken the same way every time: reading both sequences left to right,
// each step prefers a match or substitution, then a deletion, then an insertion, among the moves that stay on
// an optimal path. So tokens are kept as early as possible and ambiguous errors land as late as possible:
// a truncated hypothesis "a b c" of "a b c a b c" keeps the first three tokens and deletes the last three,
// which is how a decoder that stops early fails. (The mirror rule would blame the start instead; when
// reading a profile of a text with repeats, remember that an ambiguous error's position is a convention.)
//
// Cost: O(n * m) time, one byte per cell of (n + 1) x (m + 1) for the backtrace (36 MB for two 6,000
// character pages) and two rows of distances. A common prefix is skipped before the table is built.
template <typename T>
Alignment align(const T* reference, size_t reference_size, const T* hypothesis, size_t hypothesis_size) {
    Alignment alignment;
    alignment.reference_ops.assign(reference_size, TokenOp::Kept);
    alignment.insertions_before.assign(reference_size + 1, 0);

    // The preference above always keeps a matching first token, so a common prefix needs no table.
    size_t prefix = 0;
    while (prefix < reference_size && prefix < hypothesis_size && reference[prefix] == hypothesis[prefix]) ++prefix;
    const T* ref = reference + prefix;
    const T* hyp = hypothesis + prefix;
    const size_t n = reference_size - prefix, m = hypothesis_size - prefix;

    // Distances over suffixes, cost(i, j) = distance(ref[i:], hyp[j:]), filled from the bottom right so the
    // trace can run forwards from (0, 0) with the preference applied at each step.
    enum : uint8_t { Diagonal = 0, Delete = 1, Insert = 2 };
    const size_t width = m + 1;
    std::vector<uint8_t> moves((n + 1) * width);
    std::vector<size_t> below(width), current(width);  // cost rows i + 1 and i
    for (size_t j = 0; j <= m; ++j) {
        below[j] = m - j;
        moves[n * width + j] = Insert;
    }
    for (size_t i = n; i-- > 0;) {
        current[m] = n - i;
        moves[i * width + m] = Delete;
        for (size_t j = m; j-- > 0;) {
            const size_t diagonal = below[j + 1] + (ref[i] == hyp[j] ? 0 : 1);
            const size_t deletion = below[j] + 1;
            const size_t insertion = current[j + 1] + 1;
            uint8_t move = Diagonal;
            size_t best = diagonal;
            if (deletion < best) move = Delete, best = deletion;
            if (insertion < best) move = Insert, best = insertion;
            current[j] = best;
            moves[i * width + j] = move;
        }
        std::swap(below, current);
    }
    alignment.distance = below[0];

    size_t i = 0, j = 0;
    while (i < n || j < m) {
        const uint8_t move = moves[i * width + j];
        if (move == Diagonal) {
            alignment.reference_ops[prefix + i] = ref[i] == hyp[j] ? TokenOp::Kept : TokenOp::Substituted;
            ++i, ++j;
        } else if (move == Delete) {
            alignment.reference_ops[prefix + i] = TokenOp::Deleted;
            ++i;
        } else {
            ++alignment.insertions_before[prefix + i];
            ++j;
        }
    }
    return alignment;
}

template <typename Sequence>
Alignment align(const Sequence& reference, const Sequence& hypothesis) {
    return align(reference.data(), reference.size(), hypothesis.data(), hypothesis.size());
}

// Character level on UTF-8 text (code points).
inline Alignment align_chars(std::string_view reference, std::string_view hypothesis) {
    return align(decode_utf8(reference), decode_utf8(hypothesis));
}

template <typename T>
std::vector<Alignment> align_batch(const std::vector<SequenceView<T>>& references,
                                   const std::vector<SequenceView<T>>& hypotheses) {
    C3_CHECK(references.size() == hypotheses.size(), ShapeError, "align_batch: ", references.size(),
             " references against ", hypotheses.size(), " hypotheses");
    std::vector<Alignment> alignments(references.size());
    parallel_for_checked(references.size(), [&](size_t k) {
        alignments[k] = align(references[k].data, references[k].size, hypotheses[k].data, hypotheses[k].size);
    });
    return alignments;
}

}  // namespace c3::analysis
