// c3._core analysis functions: edit distance, alignment, Fox metrics, BLEU and position profiles.
//
// A sequence argument may be text (str, or bytes holding UTF-8), a list of words (list/tuple of str) or token
// ids (a 1-d integer array or a list of ints). What a str means depends on the metric, as in Fox: edit
// distance, alignment and accuracy read it as characters (code points); set precision/recall and BLEU read
// it as whitespace-split words. Both sides of a pair must be of one kind (an empty list fits any kind).
#include <cmath>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "c3/analysis/alignment.hpp"
#include "c3/analysis/edit_distance.hpp"
#include "c3/analysis/metrics.hpp"
#include "c3/analysis/profile.hpp"

namespace c3::python {
namespace {
namespace ca = c3::analysis;

enum class TextAs { Chars, Words };

// One converted sequence. It owns what it points to (or holds the NumPy array that does), so it can be used
// with the GIL released.
struct Tokens {
    enum Kind { Chars, Words, Ids } kind = Ids;
    std::u32string chars;
    std::vector<std::string> owned_words;
    std::vector<std::string_view> words;  // views into owned_words, or into `text`
    std::string text;
    Array<int64_t> ids_array;
    const int64_t* ids = nullptr;
    size_t size = 0;
};

bool is_text(py::handle object) { return py::isinstance<py::str>(object) || py::isinstance<py::bytes>(object); }

std::string text_bytes(py::handle object) {
    if (py::isinstance<py::bytes>(object)) return std::string(py::reinterpret_borrow<py::bytes>(object));
    return py::reinterpret_borrow<py::str>(object).cast<std::string>();
}

// Not copyable cheaply (views into its own strings), so it is built in place.
void to_tokens(py::handle object, TextAs text_as, const char* what, Tokens& tokens) {
    if (is_text(object)) {
        tokens.text = text_bytes(object);
        if (text_as == TextAs::Chars) {
            tokens.kind = Tokens::Chars;
            tokens.chars = ca::decode_utf8(tokens.text);
            tokens.size = tokens.chars.size();
        } else {
            tokens.kind = Tokens::Words;
            tokens.words = ca::split_words(tokens.text);
            tokens.size = tokens.words.size();
        }
        return;
    }
    if ((py::isinstance<py::list>(object) || py::isinstance<py::tuple>(object)) && py::len(object) > 0 &&
        py::isinstance<py::str>(object[py::int_(0)])) {
        tokens.kind = Tokens::Words;
        for (py::handle word : object) {
            if (!py::isinstance<py::str>(word))
                throw py::type_error(std::string(what) + ": a list of words must hold only str");
            tokens.owned_words.push_back(word.cast<std::string>());
        }
        for (const std::string& word : tokens.owned_words) tokens.words.emplace_back(word);
        tokens.size = tokens.words.size();
        return;
    }
    py::array array = py::array::ensure(object);
    if (!array) {
        PyErr_Clear();
        throw py::type_error(std::string(what) + ": expected str, a list of str, or a 1-d sequence of integer ids");
    }
    if (array.size() > 0) {
        const char kind = array.dtype().kind();
        if (kind != 'i' && kind != 'u' && kind != 'b')
            throw py::type_error(std::string(what) + ": token ids must be integers, got dtype " +
                                 std::string(py::str(array.dtype())));
        if (array.ndim() != 1)
            throw ShapeError(std::string(what) + ": token ids must be 1-d, got shape " + shape_string(array_shape(array)));
    }
    tokens.kind = Tokens::Ids;
    tokens.ids_array = Array<int64_t>::ensure(array.size() > 0 ? array : py::array_t<int64_t>(py::ssize_t(0)));
    tokens.ids = tokens.ids_array.data();
    tokens.size = size_t(tokens.ids_array.size());
}

// An empty sequence takes the kind of the other side ([] against text is an empty text).
void match_kinds(Tokens& a, Tokens& b, const char* what) {
    if (a.kind == b.kind) return;
    if (a.size == 0) {
        a.kind = b.kind;
        return;
    }
    if (b.size == 0) {
        b.kind = a.kind;
        return;
    }
    static const char* names[] = {"characters", "words", "token ids"};
    throw py::type_error(std::string(what) + ": reference is " + names[a.kind] + " but hypothesis is " + names[b.kind]);
}

// Calls function(reference data, size, hypothesis data, size) with the pair's token type.
template <typename Function>
auto visit_pair(const Tokens& a, const Tokens& b, Function&& function) {
    switch (a.kind) {
        case Tokens::Chars: return function(a.chars.data(), a.size, b.chars.data(), b.size);
        case Tokens::Words: return function(a.words.data(), a.size, b.words.data(), b.size);
        default: return function(a.ids, a.size, b.ids, b.size);
    }
}

struct TokenPair {
    Tokens reference, hypothesis;
};

void to_pair(py::handle reference, py::handle hypothesis, TextAs text_as, const char* what, TokenPair& pair) {
    to_tokens(reference, text_as, what, pair.reference);
    to_tokens(hypothesis, text_as, what, pair.hypothesis);
    match_kinds(pair.reference, pair.hypothesis, what);
}

std::vector<TokenPair> to_pairs(py::handle references, py::handle hypotheses, TextAs text_as, const char* what) {
    const py::sequence refs = py::reinterpret_borrow<py::sequence>(references);
    const py::sequence hyps = py::reinterpret_borrow<py::sequence>(hypotheses);
    C3_CHECK(py::len(refs) == py::len(hyps), ShapeError, what, ": ", py::len(refs), " references against ",
             py::len(hyps), " hypotheses");
    std::vector<TokenPair> pairs(py::len(refs));
    for (size_t k = 0; k < pairs.size(); ++k) to_pair(refs[k], hyps[k], text_as, what, pairs[k]);
    return pairs;
}

// From an iterable of (reference, hypothesis) tuples.
std::vector<TokenPair> to_pairs(py::handle samples, TextAs text_as, const char* what) {
    const py::list list = py::list(py::reinterpret_borrow<py::iterable>(samples));
    std::vector<TokenPair> pairs(list.size());
    for (size_t k = 0; k < pairs.size(); ++k) {
        const py::sequence sample = py::reinterpret_borrow<py::sequence>(list[k]);
        if (!py::isinstance<py::sequence>(list[k]) || is_text(list[k]) || py::len(sample) != 2)
            throw py::type_error(std::string(what) + ": sample " + std::to_string(k) +
                                 " is not a (reference, hypothesis) pair");
        to_pair(sample[0], sample[1], text_as, what, pairs[k]);
    }
    return pairs;
}

ca::BleuOptions bleu_options(const std::vector<double>& weights, const py::object& smoothing, double epsilon) {
    ca::BleuOptions options;
    options.weights = weights;
    options.epsilon = epsilon;
    if (!smoothing.is_none()) {
        const std::string name = smoothing.cast<std::string>();
        if (name == "method1") options.smoothing = ca::BleuSmoothing::Method1;
        else if (name != "method0") throw ValueError("bleu: smoothing must be None, 'method0' or 'method1', got '" + name + "'");
    }
    return options;
}

template <typename T>
py::array_t<T> vector_array(std::vector<T>&& values) {
    const size_t size = values.size();
    return move_to_array(std::move(values), {size});
}

py::array_t<int64_t> int64_array(const std::vector<uint64_t>& counts) {
    return vector_array(std::vector<int64_t>(counts.begin(), counts.end()));
}

py::tuple alignment_arrays(ca::Alignment&& alignment) {
    std::vector<int8_t> ops(alignment.reference_ops.size());
    for (size_t i = 0; i < ops.size(); ++i) ops[i] = int8_t(alignment.reference_ops[i]);
    std::vector<int64_t> insertions(alignment.insertions_before.begin(), alignment.insertions_before.end());
    return py::make_tuple(vector_array(std::move(ops)), vector_array(std::move(insertions)));
}

py::dict profile_dict(const ca::PositionProfile& profile) {
    const ca::ProfileRates rates = ca::profile_rates(profile);
    py::dict result;
    result["kept"] = int64_array(profile.kept);
    result["substituted"] = int64_array(profile.substituted);
    result["deleted"] = int64_array(profile.deleted);
    result["inserted"] = int64_array(profile.inserted);
    result["reference_tokens"] = int64_array(rates.reference_tokens);
    result["kept_rate"] = vector_array(std::vector<double>(rates.kept));
    result["substituted_rate"] = vector_array(std::vector<double>(rates.substituted));
    result["deleted_rate"] = vector_array(std::vector<double>(rates.deleted));
    result["inserted_rate"] = vector_array(std::vector<double>(rates.inserted));
    return result;
}

// Aligns every pair with the GIL released and sums the profiles in sample order.
ca::PositionProfile profile_of(const std::vector<TokenPair>& pairs, size_t bins) {
    ca::PositionProfile total = ca::make_position_profile(bins);
    std::vector<ca::PositionProfile> parts(pairs.size());
    {
        py::gil_scoped_release release;
        c3::parallel_for_checked(pairs.size(), [&](size_t k) {
            parts[k] = ca::make_position_profile(bins);
            ca::add_alignment(parts[k], visit_pair(pairs[k].reference, pairs[k].hypothesis,
                                                   [](const auto* a, size_t n, const auto* b, size_t m) {
                                                       return ca::align(a, n, b, m);
                                                   }));
        });
    }
    for (const ca::PositionProfile& part : parts) ca::add_profile(total, part);
    return total;
}

template <typename T>
py::array_t<T> grid_array(const xt::xtensor<T, 2>& grid) {
    return move_to_array(std::vector<T>(grid.begin(), grid.end()), {grid.shape()[0], grid.shape()[1]});
}

py::array_t<int64_t> grid_counts(const xt::xtensor<uint64_t, 2>& grid) {
    return move_to_array(std::vector<int64_t>(grid.begin(), grid.end()), {grid.shape()[0], grid.shape()[1]});
}

// Per-sample rows: a list of 1-d arrays, or a 2-d array; row k is cut to lengths[k] when lengths is given
// (a padded batch).
template <typename T>
struct Row {
    Array<T> array;
    size_t size = 0;
};

template <typename T>
std::vector<Row<T>> to_rows(py::handle rows, const py::object& lengths, const char* what) {
    std::vector<Row<T>> result;
    for (py::handle row : rows) {
        Array<T> array = Array<T>::ensure(row);
        if (!array) throw py::error_already_set();
        C3_CHECK(array.ndim() == 1, ShapeError, what, ": each sample must be 1-d, got shape ",
                 shape_string(array_shape(array)));
        const size_t size = size_t(array.size());
        result.push_back({std::move(array), size});
    }
    if (!lengths.is_none()) {
        const std::vector<int64_t> cut = lengths.cast<std::vector<int64_t>>();
        C3_CHECK(cut.size() == result.size(), ShapeError, what, ": ", cut.size(), " lengths for ", result.size(),
                 " samples");
        for (size_t k = 0; k < cut.size(); ++k) {
            C3_CHECK(cut[k] >= 0 && size_t(cut[k]) <= result[k].size, ValueError, what, ": length ", cut[k],
                     " of sample ", k, " is outside [0, ", result[k].size, "]");
            result[k].size = size_t(cut[k]);
        }
    }
    return result;
}

}  // namespace

void bind_analysis(py::module_& m) {
    // Edit distance and alignment --------------------------------------------------------------------------
    m.def(
        "edit_distance",
        [](py::object reference, py::object hypothesis) {
            TokenPair pair;
            to_pair(reference, hypothesis, TextAs::Chars, "edit_distance", pair);
            py::gil_scoped_release release;
            return visit_pair(pair.reference, pair.hypothesis,
                              [](const auto* a, size_t n, const auto* b, size_t m) { return ca::edit_distance(a, n, b, m); });
        },
        py::arg("reference"), py::arg("hypothesis"),
        "Levenshtein distance (unit costs). str: characters (code points); list of str: words; ints: token ids.");
    m.def(
        "normalized_edit_distance",
        [](py::object reference, py::object hypothesis) {
            TokenPair pair;
            to_pair(reference, hypothesis, TextAs::Chars, "normalized_edit_distance", pair);
            py::gil_scoped_release release;
            return visit_pair(pair.reference, pair.hypothesis, [](const auto* a, size_t n, const auto* b, size_t m) {
                return ca::normalized_edit_distance(a, n, b, m);
            });
        },
        py::arg("reference"), py::arg("hypothesis"),
        "distance / max(len(reference), len(hypothesis)), Fox's edit_dist on str; 0.0 when both are empty.");
    m.def(
        "edit_distance_batch",
        [](py::object references, py::object hypotheses) {
            const std::vector<TokenPair> pairs = to_pairs(references, hypotheses, TextAs::Chars, "edit_distance_batch");
            std::vector<int64_t> distances(pairs.size());
            {
                py::gil_scoped_release release;
                parallel_for(pairs.size(), [&](size_t k) {
                    distances[k] = int64_t(visit_pair(pairs[k].reference, pairs[k].hypothesis,
                                                      [](const auto* a, size_t n, const auto* b, size_t m) {
                                                          return ca::edit_distance(a, n, b, m);
                                                      }));
                });
            }
            return vector_array(std::move(distances));
        },
        py::arg("references"), py::arg("hypotheses"), "edit_distance over pairs, in parallel: int64 array.");
    m.def(
        "normalized_edit_distance_batch",
        [](py::object references, py::object hypotheses) {
            const std::vector<TokenPair> pairs =
                to_pairs(references, hypotheses, TextAs::Chars, "normalized_edit_distance_batch");
            std::vector<double> distances(pairs.size());
            {
                py::gil_scoped_release release;
                parallel_for(pairs.size(), [&](size_t k) {
                    distances[k] = visit_pair(pairs[k].reference, pairs[k].hypothesis,
                                              [](const auto* a, size_t n, const auto* b, size_t m) {
                                                  return ca::normalized_edit_distance(a, n, b, m);
                                              });
                });
            }
            return vector_array(std::move(distances));
        },
        py::arg("references"), py::arg("hypotheses"), "normalized_edit_distance over pairs, in parallel: float64 array.");
    m.def(
        "align",
        [](py::object reference, py::object hypothesis) {
            TokenPair pair;
            to_pair(reference, hypothesis, TextAs::Chars, "align", pair);
            ca::Alignment alignment;
            {
                py::gil_scoped_release release;
                alignment = visit_pair(pair.reference, pair.hypothesis,
                                       [](const auto* a, size_t n, const auto* b, size_t m) { return ca::align(a, n, b, m); });
            }
            return alignment_arrays(std::move(alignment));
        },
        py::arg("reference"), py::arg("hypothesis"),
        "Levenshtein alignment: (ops, insertions_before). ops: int8 per reference token, 0 kept, 1 substituted, "
        "2 deleted. insertions_before: int64 [len(reference) + 1], hypothesis tokens inserted before each reference "
        "position (the last entry: after the end). Ties prefer substitution, then deletion, then insertion, reading "
        "left to right, so tokens are kept as early as possible.");
    m.def(
        "align_batch",
        [](py::object references, py::object hypotheses) {
            const std::vector<TokenPair> pairs = to_pairs(references, hypotheses, TextAs::Chars, "align_batch");
            std::vector<ca::Alignment> alignments(pairs.size());
            {
                py::gil_scoped_release release;
                c3::parallel_for_checked(pairs.size(), [&](size_t k) {
                    alignments[k] = visit_pair(pairs[k].reference, pairs[k].hypothesis,
                                               [](const auto* a, size_t n, const auto* b, size_t m) { return ca::align(a, n, b, m); });
                });
            }
            py::list result;
            for (ca::Alignment& alignment : alignments) result.append(alignment_arrays(std::move(alignment)));
            return result;
        },
        py::arg("references"), py::arg("hypotheses"), "align over pairs, in parallel: a list of (ops, insertions_before).");

    // Set metrics (Fox) -----------------------------------------------------------------------------------
    const auto set_metric = [&m](const char* name, double (*metric)(const ca::SetOverlap&), const char* doc) {
        m.def(
            name,
            [name, metric](py::object reference, py::object hypothesis) {
                TokenPair pair;
                to_pair(reference, hypothesis, TextAs::Words, name, pair);
                py::gil_scoped_release release;
                return metric(visit_pair(pair.reference, pair.hypothesis, [](const auto* a, size_t n, const auto* b, size_t m) {
                    using T = std::decay_t<decltype(*a)>;
                    return ca::set_overlap(std::vector<T>(a, a + n), std::vector<T>(b, b + m));
                }));
            },
            py::arg("reference"), py::arg("hypothesis"), doc);
    };
    set_metric("fox_precision", &ca::set_precision,
               "Fox's precision: |set(ref words) & set(hyp words)| / |set(hyp words)| (nltk.metrics.precision on "
               "str.split() sets). NaN where nltk returns None (no hypothesis words).");
    set_metric("set_recall", &ca::set_recall,
               "|set(ref) & set(hyp)| / |set(ref)| (nltk.metrics.recall); NaN for an empty reference.");
    set_metric("set_f1", &ca::set_f1,
               "nltk.metrics.f_measure (alpha 0.5) on the word sets; NaN where nltk returns None.");

    m.def(
        "fox_scores",
        [](const std::string& reference_text, const std::string& hypothesis_text) {
            ca::FoxScores scores;
            {
                py::gil_scoped_release release;
                scores = ca::fox_scores(reference_text, hypothesis_text);
            }
            py::dict result;
            result["precision"] = scores.precision;
            result["recall"] = scores.recall;
            result["f1"] = scores.f1;
            result["bleu"] = scores.bleu;
            result["edit_distance"] = scores.edit_distance;
            return result;
        },
        py::arg("reference_text"), py::arg("hypothesis_text"),
        "Fox's per-page scores (English: whitespace words): precision, recall, f1 (word sets), bleu (sentence "
        "BLEU, nltk defaults), edit_distance (normalised, characters). NaN where nltk returns None.");
    m.def(
        "fox_scores_batch",
        [](const std::vector<std::string>& references, const std::vector<std::string>& hypotheses) {
            std::vector<ca::FoxScores> scores;
            {
                py::gil_scoped_release release;
                scores = ca::fox_scores_batch(references, hypotheses);
            }
            std::vector<double> precision(scores.size()), recall(scores.size()), f1(scores.size()),
                bleu(scores.size()), edit(scores.size());
            for (size_t k = 0; k < scores.size(); ++k) {
                precision[k] = scores[k].precision, recall[k] = scores[k].recall, f1[k] = scores[k].f1;
                bleu[k] = scores[k].bleu, edit[k] = scores[k].edit_distance;
            }
            py::dict result;
            result["precision"] = vector_array(std::move(precision));
            result["recall"] = vector_array(std::move(recall));
            result["f1"] = vector_array(std::move(f1));
            result["bleu"] = vector_array(std::move(bleu));
            result["edit_distance"] = vector_array(std::move(edit));
            return result;
        },
        py::arg("references"), py::arg("hypotheses"),
        "fox_scores over many pages, in parallel: a dict of float64 arrays, one entry per page.");

    // Accuracy --------------------------------------------------------------------------------------------
    m.def(
        "token_accuracy",
        [](py::object reference, py::object hypothesis) {
            TokenPair pair;
            to_pair(reference, hypothesis, TextAs::Chars, "token_accuracy", pair);
            return ca::match_rate(visit_pair(pair.reference, pair.hypothesis, [](const auto* a, size_t n, const auto* b, size_t m) {
                return ca::position_matches(a, n, b, m);
            }));
        },
        py::arg("reference"), py::arg("hypothesis"),
        "Position-by-position exact match over the reference length (missing positions are wrong, extra ones "
        "ignored). NaN for an empty reference.");
    m.def(
        "char_accuracy",
        [](const std::string& reference_text, const std::string& hypothesis_text) {
            return ca::char_accuracy(reference_text, hypothesis_text);
        },
        py::arg("reference_text"), py::arg("hypothesis_text"), "token_accuracy over the code points of two texts.");
    m.def(
        "token_accuracy_batch",
        [](py::object references, py::object hypotheses) {
            const std::vector<TokenPair> pairs = to_pairs(references, hypotheses, TextAs::Chars, "token_accuracy_batch");
            std::vector<int64_t> correct(pairs.size()), total(pairs.size());
            std::vector<double> accuracy(pairs.size());
            {
                py::gil_scoped_release release;
                parallel_for(pairs.size(), [&](size_t k) {
                    const ca::MatchCount count = visit_pair(pairs[k].reference, pairs[k].hypothesis,
                                                            [](const auto* a, size_t n, const auto* b, size_t m) {
                                                                return ca::position_matches(a, n, b, m);
                                                            });
                    correct[k] = int64_t(count.correct), total[k] = int64_t(count.total);
                    accuracy[k] = ca::match_rate(count);
                });
            }
            py::dict result;
            result["correct"] = vector_array(std::move(correct));
            result["total"] = vector_array(std::move(total));
            result["accuracy"] = vector_array(std::move(accuracy));
            return result;
        },
        py::arg("references"), py::arg("hypotheses"),
        "token_accuracy over pairs: dict of correct, total (int64) and accuracy (float64). The token-weighted "
        "mean is correct.sum() / total.sum().");

    // BLEU ------------------------------------------------------------------------------------------------
    const std::vector<double> default_weights = {0.25, 0.25, 0.25, 0.25};
    m.def(
        "bleu",
        [](py::object reference, py::object hypothesis, const std::vector<double>& weights, py::object smoothing,
           double epsilon) {
            const ca::BleuOptions options = bleu_options(weights, smoothing, epsilon);
            TokenPair pair;
            to_pair(reference, hypothesis, TextAs::Words, "bleu", pair);
            py::gil_scoped_release release;
            return visit_pair(pair.reference, pair.hypothesis, [&](const auto* a, size_t n, const auto* b, size_t m) {
                return ca::sentence_bleu(a, n, b, m, options);
            });
        },
        py::arg("reference"), py::arg("hypothesis"), py::arg("weights") = default_weights,
        py::arg("smoothing") = py::none(), py::arg("epsilon") = 0.1,
        "nltk sentence_bleu([reference], hypothesis): str is split into words. smoothing: None / 'method0' "
        "(none) or 'method1' (epsilon added to zero counts).");
    m.def(
        "corpus_bleu",
        [](py::object references, py::object hypotheses, const std::vector<double>& weights, py::object smoothing,
           double epsilon) {
            const ca::BleuOptions options = bleu_options(weights, smoothing, epsilon);
            const std::vector<TokenPair> pairs = to_pairs(references, hypotheses, TextAs::Words, "corpus_bleu");
            py::gil_scoped_release release;
            ca::BleuStats stats = ca::make_bleu_stats(options.weights.size());
            for (const TokenPair& pair : pairs)
                visit_pair(pair.reference, pair.hypothesis, [&](const auto* a, size_t n, const auto* b, size_t m) {
                    ca::add_bleu_stats(stats, a, n, b, m);
                    return 0;
                });
            return ca::bleu_from_stats(stats, options);
        },
        py::arg("references"), py::arg("hypotheses"), py::arg("weights") = default_weights,
        py::arg("smoothing") = py::none(), py::arg("epsilon") = 0.1,
        "nltk corpus_bleu with one reference per hypothesis (counts summed over the corpus, then divided).");

    // Profiles --------------------------------------------------------------------------------------------
    m.def(
        "position_profile",
        [](py::object samples, size_t bins) {
            C3_CHECK(bins > 0, ValueError, "position_profile: bins must be positive");
            return profile_dict(profile_of(to_pairs(samples, TextAs::Chars, "position_profile"), bins));
        },
        py::arg("samples"), py::arg("bins") = 20,
        "Alignment-based error profile over (reference, hypothesis) pairs: reference position p of length n falls "
        "in bin p * bins // n. Returns a dict of arrays [bins]: kept, substituted, deleted, inserted, "
        "reference_tokens (int64 counts summed over samples) and kept_rate, substituted_rate, deleted_rate, "
        "inserted_rate (float64, per reference token in the bin, NaN for empty bins).");
    m.def(
        "position_profile_grid",
        [](py::object groups, size_t bins) {
            C3_CHECK(bins > 0, ValueError, "position_profile_grid: bins must be positive");
            std::vector<ca::PositionProfile> profiles;
            for (py::handle group : groups) profiles.push_back(profile_of(to_pairs(group, TextAs::Chars, "position_profile_grid"), bins));
            const ca::ProfileGrid grid = ca::stack_profiles(profiles);
            py::dict result;
            if (profiles.empty()) {
                for (const char* key : {"kept", "substituted", "deleted", "inserted"}) result[key] = py::array_t<int64_t>(std::vector<py::ssize_t>{0, py::ssize_t(bins)});
                for (const char* key : {"kept_rate", "substituted_rate", "deleted_rate", "inserted_rate"})
                    result[key] = py::array_t<double>(std::vector<py::ssize_t>{0, py::ssize_t(bins)});
                return result;
            }
            result["kept"] = grid_counts(grid.kept);
            result["substituted"] = grid_counts(grid.substituted);
            result["deleted"] = grid_counts(grid.deleted);
            result["inserted"] = grid_counts(grid.inserted);
            result["kept_rate"] = grid_array<double>(ca::grid_rate(grid, grid.kept));
            result["substituted_rate"] = grid_array<double>(ca::grid_rate(grid, grid.substituted));
            result["deleted_rate"] = grid_array<double>(ca::grid_rate(grid, grid.deleted));
            result["inserted_rate"] = grid_array<double>(ca::grid_rate(grid, grid.inserted));
            return result;
        },
        py::arg("groups"), py::arg("bins") = 20,
        "position_profile for each group of pairs (e.g. one group per compression ratio): dict of [groups, bins] "
        "arrays, counts and rates as in position_profile. For heat maps.");
    m.def(
        "correctness_profile",
        [](py::object correct, size_t bins, py::object lengths) {
            const std::vector<Row<uint8_t>> rows = to_rows<uint8_t>(correct, lengths, "correctness_profile");
            ca::CorrectnessProfile profile = ca::make_correctness_profile(bins);
            for (const Row<uint8_t>& row : rows) ca::add_correctness(profile, row.array.data(), row.size);
            py::dict result;
            result["correct"] = int64_array(profile.correct);
            result["total"] = int64_array(profile.total);
            result["rate"] = vector_array(ca::correctness_rates(profile));
            return result;
        },
        py::arg("correct"), py::arg("bins") = 20, py::arg("lengths") = py::none(),
        "Per-position correctness (e.g. teacher-forced argmax == target) by relative position. correct: a list of "
        "1-d 0/1 arrays, or a 2-d padded array with lengths. Returns correct, total (int64) and rate (float64).");
    m.def(
        "value_profile",
        [](py::object values, size_t bins, py::object lengths) {
            const std::vector<Row<double>> rows = to_rows<double>(values, lengths, "value_profile");
            ca::ValueProfile profile = ca::make_value_profile(bins);
            for (const Row<double>& row : rows) ca::add_values(profile, row.array.data(), row.size);
            py::dict result;
            result["sum"] = vector_array(std::vector<double>(profile.sum));
            result["count"] = int64_array(profile.count);
            result["mean"] = vector_array(ca::value_means(profile));
            return result;
        },
        py::arg("values"), py::arg("bins") = 20, py::arg("lengths") = py::none(),
        "Per-position values (e.g. NLL) by relative position: sum, count and mean per bin. Non-finite values raise.");
}

}  // namespace c3::python
