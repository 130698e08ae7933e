// Reconstruction metrics, each matching the reference implementation the Fox benchmark uses:
//   - set-based word precision / recall / F1: nltk.metrics precision, recall, f_measure on set(words);
//   - BLEU: nltk.translate.bleu_score.sentence_bleu / corpus_bleu (default weights, method0 or method1);
//   - normalised character edit distance (edit_distance.hpp).
// Plus the strict measures: token and character accuracy, position by position.
//
// Where nltk returns None (precision of an empty hypothesis, recall against an empty reference) these return
// NaN: callers decide how an undefined score enters an average.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "c3/analysis/edit_distance.hpp"
#include "c3/core/errors.hpp"

namespace c3::analysis {

inline constexpr double kUndefined = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------------------
// Words

// The code points Python's str.isspace() accepts, which is what str.split() splits on.
inline bool is_python_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

// Splits UTF-8 text into words exactly as Python's text.split() does (Fox's English tokenisation). The
// words view the text. Invalid UTF-8 throws ValueError.
inline std::vector<std::string_view> split_words(std::string_view text) {
    std::vector<std::string_view> words;
    size_t start = 0, offset = 0;
    bool in_word = false;
    while (offset < text.size()) {
        char32_t c = 0;
        const size_t length = decode_code_point(text, offset, c);
        if (is_python_space(c)) {
            if (in_word) words.push_back(text.substr(start, offset - start));
            in_word = false;
        } else if (!in_word) {
            start = offset;
            in_word = true;
        }
        offset += length;
    }
    if (in_word) words.push_back(text.substr(start));
    return words;
}

// ---------------------------------------------------------------------------------------------------------
// Set overlap (Fox precision)

// Sizes of the two token sets and of their intersection. Duplicates count once, order not at all.
struct SetOverlap {
    size_t reference_distinct = 0;
    size_t hypothesis_distinct = 0;
    size_t common = 0;
};

template <typename T>
SetOverlap set_overlap(std::vector<T> reference, std::vector<T> hypothesis) {
    std::sort(reference.begin(), reference.end());
    reference.erase(std::unique(reference.begin(), reference.end()), reference.end());
    std::sort(hypothesis.begin(), hypothesis.end());
    hypothesis.erase(std::unique(hypothesis.begin(), hypothesis.end()), hypothesis.end());
    SetOverlap overlap{reference.size(), hypothesis.size(), 0};
    for (size_t r = 0, h = 0; r < reference.size() && h < hypothesis.size();) {
        if (reference[r] < hypothesis[h]) {
            ++r;
        } else if (hypothesis[h] < reference[r]) {
            ++h;
        } else {
            ++overlap.common, ++r, ++h;
        }
    }
    return overlap;
}

// |ref ∩ hyp| / |hyp|; NaN for an empty hypothesis (nltk: None).
inline double set_precision(const SetOverlap& overlap) {
    if (overlap.hypothesis_distinct == 0) return kUndefined;
    return double(overlap.common) / double(overlap.hypothesis_distinct);
}

// |ref ∩ hyp| / |ref|; NaN for an empty reference (nltk: None).
inline double set_recall(const SetOverlap& overlap) {
    if (overlap.reference_distinct == 0) return kUndefined;
    return double(overlap.common) / double(overlap.reference_distinct);
}

// nltk f_measure with alpha = 0.5, the same operations in the same order: NaN if either side is undefined,
// 0 if either is 0, else 1 / (0.5 / p + 0.5 / r).
inline double set_f1(const SetOverlap& overlap) {
    const double p = set_precision(overlap), r = set_recall(overlap);
    if (std::isnan(p) || std::isnan(r)) return kUndefined;
    if (p == 0.0 || r == 0.0) return 0.0;
    return 1.0 / (0.5 / p + (1.0 - 0.5) / r);
}

// Fox's precision on raw text: whitespace-split word sets.
inline SetOverlap word_set_overlap(std::string_view reference_text, std::string_view hypothesis_text) {
    return set_overlap(split_words(reference_text), split_words(hypothesis_text));
}

inline double fox_precision(std::string_view reference_text, std::string_view hypothesis_text) {
    return set_precision(word_set_overlap(reference_text, hypothesis_text));
}

// ---------------------------------------------------------------------------------------------------------
// Position-by-position accuracy

// correct: positions i < len(reference) with hypothesis[i] == reference[i]; total: len(reference). Missing
// hypothesis positions count as wrong, extra ones are ignored.
struct MatchCount {
    size_t correct = 0;
    size_t total = 0;
};

// correct / total; NaN for an empty reference.
inline double match_rate(const MatchCount& count) {
    return count.total == 0 ? kUndefined : double(count.correct) / double(count.total);
}

template <typename T>
MatchCount position_matches(const T* reference, size_t reference_size, const T* hypothesis, size_t hypothesis_size) {
    MatchCount count{0, reference_size};
    const size_t shared = std::min(reference_size, hypothesis_size);
    for (size_t i = 0; i < shared; ++i) count.correct += reference[i] == hypothesis[i] ? 1 : 0;
    return count;
}

template <typename Sequence>
double token_accuracy(const Sequence& reference, const Sequence& hypothesis) {
    return match_rate(position_matches(reference.data(), reference.size(), hypothesis.data(), hypothesis.size()));
}

// Position by position over code points of UTF-8 text.
inline double char_accuracy(std::string_view reference_text, std::string_view hypothesis_text) {
    return token_accuracy(decode_utf8(reference_text), decode_utf8(hypothesis_text));
}

// ---------------------------------------------------------------------------------------------------------
// BLEU, as nltk.translate.bleu_score computes it for one reference per hypothesis

enum class BleuSmoothing { None, Method1 };

struct BleuOptions {
    std::vector<double> weights = {0.25, 0.25, 0.25, 0.25};  // one per n-gram order, from unigrams
    BleuSmoothing smoothing = BleuSmoothing::None;            // nltk method0 or method1
    double epsilon = 0.1;                                     // method1's added count
};

// Sufficient statistics; corpus BLEU sums them over sentences before dividing (micro-average).
struct BleuStats {
    std::vector<size_t> matches;  // clipped n-gram matches per order
    std::vector<size_t> totals;   // hypothesis n-grams per order, at least 1 per sentence as in nltk
    size_t hypothesis_length = 0;
    size_t reference_length = 0;
};

inline BleuStats make_bleu_stats(size_t max_order) {
    BleuStats stats;
    stats.matches.assign(max_order, 0);
    stats.totals.assign(max_order, 0);
    return stats;
}

namespace detail {

// Start positions of the n-grams of a sequence, sorted so equal n-grams are adjacent. Needs only < and ==
// on the token type, so ids, words and code points all work without hashing.
template <typename T>
std::vector<size_t> sorted_ngrams(const T* tokens, size_t size, size_t n) {
    std::vector<size_t> starts(size >= n ? size - n + 1 : 0);
    for (size_t i = 0; i < starts.size(); ++i) starts[i] = i;
    std::sort(starts.begin(), starts.end(), [&](size_t a, size_t b) {
        return std::lexicographical_compare(tokens + a, tokens + a + n, tokens + b, tokens + b + n);
    });
    return starts;
}

// Clipped matches: the sum over distinct hypothesis n-grams of min(count in hypothesis, count in reference).
template <typename T>
size_t clipped_ngram_matches(const T* reference, size_t reference_size, const T* hypothesis, size_t hypothesis_size,
                             size_t n) {
    const std::vector<size_t> ref = sorted_ngrams(reference, reference_size, n);
    const std::vector<size_t> hyp = sorted_ngrams(hypothesis, hypothesis_size, n);
    const auto less = [&](const T* a, const T* b) { return std::lexicographical_compare(a, a + n, b, b + n); };
    size_t matches = 0;
    for (size_t r = 0, h = 0; r < ref.size() && h < hyp.size();) {
        const T* ref_gram = reference + ref[r];
        const T* hyp_gram = hypothesis + hyp[h];
        if (less(ref_gram, hyp_gram)) {
            ++r;
        } else if (less(hyp_gram, ref_gram)) {
            ++h;
        } else {
            size_t ref_count = 0, hyp_count = 0;
            while (r < ref.size() && std::equal(ref_gram, ref_gram + n, reference + ref[r])) ++r, ++ref_count;
            while (h < hyp.size() && std::equal(hyp_gram, hyp_gram + n, hypothesis + hyp[h])) ++h, ++hyp_count;
            matches += std::min(ref_count, hyp_count);
        }
    }
    return matches;
}

// math.fsum: the correctly rounded sum (Shewchuk's partials with CPython's final half-even correction),
// so BLEU here is bit-identical to nltk's.
inline double exact_sum(const std::vector<double>& values) {
    std::vector<double> partials;
    for (double x : values) {
        size_t kept = 0;
        for (double y : partials) {
            if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
            const double high = x + y;
            const double low = y - (high - x);
            if (low != 0.0) partials[kept++] = low;
            x = high;
        }
        partials.resize(kept);
        partials.push_back(x);
    }
    size_t n = partials.size();
    if (n == 0) return 0.0;
    double high = partials[--n], low = 0.0;
    while (n > 0) {
        const double x = high, y = partials[--n];
        high = x + y;
        low = y - (high - x);
        if (low != 0.0) break;
    }
    if (n > 0 && ((low < 0.0 && partials[n - 1] < 0.0) || (low > 0.0 && partials[n - 1] > 0.0))) {
        const double y = low * 2.0, x = high + y;
        if (y == x - high) high = x;
    }
    return high;
}

}  // namespace detail

// Adds one (reference, hypothesis) pair: nltk's modified_precision per order and the lengths.
template <typename T>
void add_bleu_stats(BleuStats& stats, const T* reference, size_t reference_size, const T* hypothesis,
                    size_t hypothesis_size) {
    for (size_t order = 0; order < stats.matches.size(); ++order) {
        const size_t n = order + 1;
        const size_t grams = hypothesis_size >= n ? hypothesis_size - n + 1 : 0;
        stats.matches[order] += detail::clipped_ngram_matches(reference, reference_size, hypothesis, hypothesis_size, n);
        stats.totals[order] += std::max<size_t>(1, grams);  // nltk: denominator = max(1, count)
    }
    stats.hypothesis_length += hypothesis_size;
    stats.reference_length += reference_size;
}

// nltk corpus_bleu from summed statistics: 0 when no unigram matches; otherwise brevity penalty times
// exp(fsum(w * log p)). Without smoothing a zero precision becomes DBL_MIN (nltk's method0), which makes
// the score tiny but not 0; method1 replaces it by epsilon / total.
inline double bleu_from_stats(const BleuStats& stats, const BleuOptions& options = {}) {
    C3_CHECK(options.weights.size() == stats.matches.size(), ShapeError, "bleu: ", options.weights.size(),
             " weights for ", stats.matches.size(), " n-gram orders");
    if (stats.matches.empty() || stats.matches[0] == 0) return 0.0;
    const double hyp = double(stats.hypothesis_length), ref = double(stats.reference_length);
    double brevity = 1.0;
    if (stats.hypothesis_length <= stats.reference_length) brevity = std::exp(1.0 - ref / hyp);  // hyp > 0 here
    std::vector<double> terms;
    for (size_t order = 0; order < stats.matches.size(); ++order) {
        double precision;
        if (stats.matches[order] != 0) {
            precision = double(stats.matches[order]) / double(stats.totals[order]);
        } else if (options.smoothing == BleuSmoothing::Method1) {
            precision = (0.0 + options.epsilon) / double(stats.totals[order]);
        } else {
            precision = DBL_MIN;
        }
        if (precision > 0.0) terms.push_back(options.weights[order] * std::log(precision));
    }
    return brevity * std::exp(detail::exact_sum(terms));
}

template <typename T>
double sentence_bleu(const T* reference, size_t reference_size, const T* hypothesis, size_t hypothesis_size,
                     const BleuOptions& options = {}) {
    BleuStats stats = make_bleu_stats(options.weights.size());
    add_bleu_stats(stats, reference, reference_size, hypothesis, hypothesis_size);
    return bleu_from_stats(stats, options);
}

template <typename Sequence>
double sentence_bleu(const Sequence& reference, const Sequence& hypothesis, const BleuOptions& options = {}) {
    return sentence_bleu(reference.data(), reference.size(), hypothesis.data(), hypothesis.size(), options);
}

template <typename T>
double corpus_bleu(const std::vector<SequenceView<T>>& references, const std::vector<SequenceView<T>>& hypotheses,
                   const BleuOptions& options = {}) {
    C3_CHECK(references.size() == hypotheses.size(), ShapeError, "corpus_bleu: ", references.size(),
             " references against ", hypotheses.size(), " hypotheses");
    BleuStats stats = make_bleu_stats(options.weights.size());
    for (size_t k = 0; k < references.size(); ++k)
        add_bleu_stats(stats, references[k].data, references[k].size, hypotheses[k].data, hypotheses[k].size);
    return bleu_from_stats(stats, options);
}

// ---------------------------------------------------------------------------------------------------------
// Fox's per-page scores

struct FoxScores {
    double precision = 0.0;      // set-based word precision (NaN: no hypothesis words)
    double recall = 0.0;         // set-based word recall (NaN: no reference words)
    double f1 = 0.0;             // nltk f_measure on the sets
    double bleu = 0.0;           // sentence BLEU on the word lists, nltk defaults
    double edit_distance = 0.0;  // normalised character-level Levenshtein distance
};

// What Fox's evaluation computes for one page with English text (words: whitespace split). METEOR is left out:
// nltk's needs WordNet data.
inline FoxScores fox_scores(std::string_view reference_text, std::string_view hypothesis_text) {
    const std::vector<std::string_view> reference = split_words(reference_text);
    const std::vector<std::string_view> hypothesis = split_words(hypothesis_text);
    const SetOverlap overlap = set_overlap(reference, hypothesis);
    FoxScores scores;
    scores.precision = set_precision(overlap);
    scores.recall = set_recall(overlap);
    scores.f1 = set_f1(overlap);
    scores.bleu = sentence_bleu(reference, hypothesis);
    scores.edit_distance = normalized_char_edit_distance(reference_text, hypothesis_text);
    return scores;
}

// Many pages in parallel; the first invalid UTF-8 string (lowest index) throws.
inline std::vector<FoxScores> fox_scores_batch(const std::vector<std::string>& references,
                                               const std::vector<std::string>& hypotheses) {
    C3_CHECK(references.size() == hypotheses.size(), ShapeError, "fox_scores_batch: ", references.size(),
             " references against ", hypotheses.size(), " hypotheses");
    std::vector<FoxScores> scores(references.size());
    parallel_for_checked(references.size(),
                                 [&](size_t k) { scores[k] = fox_scores(references[k], hypotheses[k]); });
    return scores;
}

}  // namespace c3::analysis
