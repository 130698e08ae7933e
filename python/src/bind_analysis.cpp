// c3._core analysis functions: edit distance, alignment, Fox metrics, BLEU and position profiles.
//
// Every sequence here is token ids: a 1-d integer array (or list of ints). c3.analysis turns text and word lists
// into ids first (characters as code points, words through a vocabulary of the pair), so that what a str means
// for each metric is decided once, in Python. Fox's page scores (fox_scores, char_accuracy) take text as Fox does.
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

using Ids = Array<int64_t>;

// A checked view of one sequence of ids. The arrays stay owned by the caller's Python objects (arguments of
// the call), so the views may be read with the GIL released.
ca::SequenceView<int64_t> view(const Ids& ids, const char* what) {
    C3_CHECK(ids.ndim() == 1, ShapeError, what, ": token ids must be 1-d, got shape ", shape_string(array_shape(ids)));
    return {ids.data(), size_t(ids.size())};
}

std::vector<ca::SequenceView<int64_t>> views(const std::vector<Ids>& ids, const char* what) {
    std::vector<ca::SequenceView<int64_t>> result;
    for (const Ids& sequence : ids) result.push_back(view(sequence, what));
    return result;
}

struct Pairs {
    std::vector<ca::SequenceView<int64_t>> references, hypotheses;
    Pairs(const std::vector<Ids>& reference_ids, const std::vector<Ids>& hypothesis_ids, const char* what)
        : references(views(reference_ids, what)), hypotheses(views(hypothesis_ids, what)) {
        C3_CHECK(references.size() == hypotheses.size(), ShapeError, what, ": ", references.size(),
                 " references against ", hypotheses.size(), " hypotheses");
    }
    size_t size() const { return references.size(); }
};

// function(reference data, size, hypothesis data, size) for pair k.
template <typename Function>
auto on_pair(const Pairs& pairs, size_t k, Function&& function) {
    return function(pairs.references[k].data, pairs.references[k].size, pairs.hypotheses[k].data,
                    pairs.hypotheses[k].size);
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
ca::PositionProfile profile_of(const Pairs& pairs, size_t bins) {
    ca::PositionProfile total = ca::make_position_profile(bins);
    std::vector<ca::PositionProfile> parts(pairs.size());
    {
        py::gil_scoped_release release;
        c3::parallel_for_checked(pairs.size(), [&](size_t k) {
            parts[k] = ca::make_position_profile(bins);
            ca::add_alignment(parts[k], on_pair(pairs, k, [](const int64_t* a, size_t n, const int64_t* b, size_t m) {
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

// Code points and Levenshtein distances of id sequences, one pair or many in parallel.
void bind_edit_distance(py::module_& m) {
    m.def(
        "decode_utf8",
        [](const py::bytes& text) {
            const std::u32string points = c3::decode_utf8(std::string(text));
            return vector_array(std::vector<int64_t>(points.begin(), points.end()));
        },
        py::arg("text"), "The code points of UTF-8 bytes (int64); invalid UTF-8 is a Utf8Error naming the byte offset.");

    m.def(
        "edit_distance",
        [](const Ids& reference, const Ids& hypothesis) {
            const auto a = view(reference, "edit_distance"), b = view(hypothesis, "edit_distance");
            py::gil_scoped_release release;
            return ca::edit_distance(a.data, a.size, b.data, b.size);
        },
        py::arg("reference"), py::arg("hypothesis"), "Levenshtein distance (unit costs) of two id sequences.");
    m.def(
        "normalized_edit_distance",
        [](const Ids& reference, const Ids& hypothesis) {
            const auto a = view(reference, "normalized_edit_distance"), b = view(hypothesis, "normalized_edit_distance");
            py::gil_scoped_release release;
            return ca::normalized_edit_distance(a.data, a.size, b.data, b.size);
        },
        py::arg("reference"), py::arg("hypothesis"),
        "distance / max(len(reference), len(hypothesis)), Fox's edit_dist; 0.0 when both are empty.");
    m.def(
        "edit_distance_batch",
        [](const std::vector<Ids>& references, const std::vector<Ids>& hypotheses) {
            const Pairs pairs(references, hypotheses, "edit_distance_batch");
            std::vector<int64_t> distances(pairs.size());
            {
                py::gil_scoped_release release;
                parallel_for(pairs.size(), [&](size_t k) {
                    distances[k] = int64_t(on_pair(pairs, k, [](const int64_t* a, size_t n, const int64_t* b, size_t m) {
                        return ca::edit_distance(a, n, b, m);
                    }));
                });
            }
            return vector_array(std::move(distances));
        },
        py::arg("references"), py::arg("hypotheses"), "edit_distance over pairs, in parallel: int64 array.");
    m.def(
        "normalized_edit_distance_batch",
        [](const std::vector<Ids>& references, const std::vector<Ids>& hypotheses) {
            const Pairs pairs(references, hypotheses, "normalized_edit_distance_batch");
            std::vector<double> distances(pairs.size());
            {
                py::gil_scoped_release release;
                parallel_for(pairs.size(), [&](size_t k) {
                    distances[k] = on_pair(pairs, k, [](const int64_t* a, size_t n, const int64_t* b, size_t m) {
                        return ca::normalized_edit_distance(a, n, b, m);
                    });
                });
            }
            return vector_array(std::move(distances));
        },
        py::arg("references"), py::arg("hypotheses"), "normalized_edit_distance over pairs, in parallel: float64 array.");
}

// Levenshtein alignments: which reference tokens were kept, substituted or deleted.
void bind_alignment(py::module_& m) {
    m.def(
        "align",
        [](const Ids& reference, const Ids& hypothesis) {
            const auto a = view(reference, "align"), b = view(hypothesis, "align");
            ca::Alignment alignment;
            {
                py::gil_scoped_release release;
                alignment = ca::align(a.data, a.size, b.data, b.size);
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
        [](const std::vector<Ids>& references, const std::vector<Ids>& hypotheses) {
            const Pairs pairs(references, hypotheses, "align_batch");
            std::vector<ca::Alignment> alignments;
            {
                py::gil_scoped_release release;
                alignments = ca::align_batch(pairs.references, pairs.hypotheses);
            }
            py::list result;
            for (ca::Alignment& alignment : alignments) result.append(alignment_arrays(std::move(alignment)));
            return result;
        },
        py::arg("references"), py::arg("hypotheses"), "align over pairs, in parallel: a list of (ops, insertions_before).");
}

// Fox's set metrics and per-page scores.
void bind_fox_metrics(py::module_& m) {
    const auto set_metric = [&m](const char* name, double (*metric)(const ca::SetOverlap&), const char* doc) {
        m.def(
            name,
            [name, metric](const Ids& reference, const Ids& hypothesis) {
                const auto a = view(reference, name), b = view(hypothesis, name);
                py::gil_scoped_release release;
                return metric(ca::set_overlap(std::vector<int64_t>(a.data, a.data + a.size),
                                              std::vector<int64_t>(b.data, b.data + b.size)));
            },
            py::arg("reference"), py::arg("hypothesis"), doc);
    };
    set_metric("fox_precision", &ca::set_precision,
               "Fox's precision: |set(ref) & set(hyp)| / |set(hyp)| (nltk.metrics.precision). NaN where nltk returns "
               "None (no hypothesis tokens).");
    set_metric("set_recall", &ca::set_recall,
               "|set(ref) & set(hyp)| / |set(ref)| (nltk.metrics.recall); NaN for an empty reference.");
    set_metric("set_f1", &ca::set_f1, "nltk.metrics.f_measure (alpha 0.5) on the sets; NaN where nltk returns None.");

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
}

// Position-by-position exact match.
void bind_accuracy(py::module_& m) {
    m.def(
        "token_accuracy",
        [](const Ids& reference, const Ids& hypothesis) {
            const auto a = view(reference, "token_accuracy"), b = view(hypothesis, "token_accuracy");
            return ca::match_rate(ca::position_matches(a.data, a.size, b.data, b.size));
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
        [](const std::vector<Ids>& references, const std::vector<Ids>& hypotheses) {
            const Pairs pairs(references, hypotheses, "token_accuracy_batch");
            std::vector<int64_t> correct(pairs.size()), total(pairs.size());
            std::vector<double> accuracy(pairs.size());
            {
                py::gil_scoped_release release;
                parallel_for(pairs.size(), [&](size_t k) {
                    const ca::MatchCount count = on_pair(pairs, k, [](const int64_t* a, size_t n, const int64_t* b, size_t m) {
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
}

// BLEU as nltk computes it.
void bind_bleu(py::module_& m) {
    const std::vector<double> default_weights = {0.25, 0.25, 0.25, 0.25};
    m.def(
        "bleu",
        [](const Ids& reference, const Ids& hypothesis, const std::vector<double>& weights, py::object smoothing,
           double epsilon) {
            const ca::BleuOptions options = bleu_options(weights, smoothing, epsilon);
            const auto a = view(reference, "bleu"), b = view(hypothesis, "bleu");
            py::gil_scoped_release release;
            return ca::sentence_bleu(a.data, a.size, b.data, b.size, options);
        },
        py::arg("reference"), py::arg("hypothesis"), py::arg("weights") = default_weights,
        py::arg("smoothing") = py::none(), py::arg("epsilon") = 0.1,
        "nltk sentence_bleu([reference], hypothesis) on ids. smoothing: None / 'method0' (none) or 'method1' "
        "(epsilon added to zero counts).");
    m.def(
        "corpus_bleu",
        [](const std::vector<Ids>& references, const std::vector<Ids>& hypotheses, const std::vector<double>& weights,
           py::object smoothing, double epsilon) {
            const ca::BleuOptions options = bleu_options(weights, smoothing, epsilon);
            const Pairs pairs(references, hypotheses, "corpus_bleu");
            py::gil_scoped_release release;
            return ca::corpus_bleu(pairs.references, pairs.hypotheses, options);
        },
        py::arg("references"), py::arg("hypotheses"), py::arg("weights") = default_weights,
        py::arg("smoothing") = py::none(), py::arg("epsilon") = 0.1,
        "nltk corpus_bleu with one reference per hypothesis (counts summed over the corpus, then divided).");
}

// Alignment-based error profiles by relative reference position.
void bind_position_profiles(py::module_& m) {
    m.def(
        "position_profile",
        [](const std::vector<Ids>& references, const std::vector<Ids>& hypotheses, size_t bins) {
            C3_CHECK(bins > 0, ValueError, "position_profile: bins must be positive");
            return profile_dict(profile_of(Pairs(references, hypotheses, "position_profile"), bins));
        },
        py::arg("references"), py::arg("hypotheses"), py::arg("bins") = 20,
        "Alignment-based error profile over (reference, hypothesis) pairs: reference position p of length n falls "
        "in bin p * bins // n. Returns a dict of arrays [bins]: kept, substituted, deleted, inserted, "
        "reference_tokens (int64 counts summed over samples) and kept_rate, substituted_rate, deleted_rate, "
        "inserted_rate (float64, per reference token in the bin, NaN for empty bins).");
    m.def(
        "position_profile_grid",
        [](const std::vector<std::pair<std::vector<Ids>, std::vector<Ids>>>& groups, size_t bins) {
            C3_CHECK(bins > 0, ValueError, "position_profile_grid: bins must be positive");
            std::vector<ca::PositionProfile> profiles;
            for (const auto& [references, hypotheses] : groups)
                profiles.push_back(profile_of(Pairs(references, hypotheses, "position_profile_grid"), bins));
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
        "position_profile for each group, given as (references, hypotheses) (e.g. one group per compression ratio): dict of [groups, bins] "
        "arrays, counts and rates as in position_profile. For heat maps.");
}

// Per-sample correctness and values by relative position.
void bind_sequence_profiles(py::module_& m) {
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

}  // namespace

void bind_analysis(py::module_& m) {
    bind_edit_distance(m);
    bind_alignment(m);
    bind_fox_metrics(m);
    bind_accuracy(m);
    bind_bleu(m);
    bind_position_profiles(m);
    bind_sequence_profiles(m);
}

}  // namespace c3::python
