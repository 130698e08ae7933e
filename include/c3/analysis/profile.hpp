// Error profiles by relative position: where in the text information is lost. Reference position p of a
// text of length n falls in bin floor(p * bins / n), so every text, short or long, spreads over the same
// bins and many samples add up. Counts are summed first and turned into rates last, so a bin's rate is
// weighted by its tokens, not by samples.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "c3/analysis/alignment.hpp"
#include "c3/core/errors.hpp"

namespace c3::analysis {

// The bin of reference position `position` in a text of `length` tokens. Position `length` (the insertion
// slot after the last token) and an empty text fall in the last bin.
inline size_t position_bin(size_t position, size_t length, size_t bins) {
    if (length == 0 || position >= length) return bins - 1;
    return position * bins / length;  // exact integer floor; position * bins stays far below 2^64
}

// ---------------------------------------------------------------------------------------------------------
// From alignments (greedy decoding: kept / substituted / deleted per reference token)

struct PositionProfile {
    size_t bins = 0;
    std::vector<uint64_t> kept, substituted, deleted;  // reference tokens per bin, by what happened to them
    std::vector<uint64_t> inserted;                   // extra hypothesis tokens, by the slot they precede
};

inline PositionProfile make_position_profile(size_t bins = 20) {
    C3_CHECK(bins > 0, ValueError, "position profile: bins must be positive");
    PositionProfile profile;
    profile.bins = bins;
    profile.kept.assign(bins, 0);
    profile.substituted.assign(bins, 0);
    profile.deleted.assign(bins, 0);
    profile.inserted.assign(bins, 0);
    return profile;
}

inline void add_alignment(PositionProfile& profile, const Alignment& alignment) {
    const size_t length = alignment.reference_ops.size();
    C3_CHECK(alignment.insertions_before.size() == length + 1, ShapeError, "add_alignment: ",
             alignment.insertions_before.size(), " insertion slots for ", length, " reference tokens");
    for (size_t p = 0; p < length; ++p) {
        const size_t bin = position_bin(p, length, profile.bins);
        switch (alignment.reference_ops[p]) {
            case TokenOp::Kept: ++profile.kept[bin]; break;
            case TokenOp::Substituted: ++profile.substituted[bin]; break;
            case TokenOp::Deleted: ++profile.deleted[bin]; break;
        }
    }
    for (size_t p = 0; p <= length; ++p) profile.inserted[position_bin(p, length, profile.bins)] += alignment.insertions_before[p];
}

inline void add_profile(PositionProfile& total, const PositionProfile& part) {
    C3_CHECK(total.bins == part.bins, ShapeError, "add_profile: ", part.bins, " bins into ", total.bins);
    for (size_t b = 0; b < total.bins; ++b) {
        total.kept[b] += part.kept[b];
        total.substituted[b] += part.substituted[b];
        total.deleted[b] += part.deleted[b];
        total.inserted[b] += part.inserted[b];
    }
}

// Rates per bin over the reference tokens in the bin (inserted too: extra tokens per reference token).
// NaN where a bin holds no reference token.
struct ProfileRates {
    std::vector<uint64_t> reference_tokens;
    std::vector<double> kept, substituted, deleted, inserted;
};

inline ProfileRates profile_rates(const PositionProfile& profile) {
    ProfileRates rates;
    rates.reference_tokens.resize(profile.bins);
    const double undefined = std::numeric_limits<double>::quiet_NaN();
    for (auto* rate : {&rates.kept, &rates.substituted, &rates.deleted, &rates.inserted}) rate->assign(profile.bins, undefined);
    for (size_t b = 0; b < profile.bins; ++b) {
        const uint64_t tokens = profile.kept[b] + profile.substituted[b] + profile.deleted[b];
        rates.reference_tokens[b] = tokens;
        if (tokens == 0) continue;
        rates.kept[b] = double(profile.kept[b]) / double(tokens);
        rates.substituted[b] = double(profile.substituted[b]) / double(tokens);
        rates.deleted[b] = double(profile.deleted[b]) / double(tokens);
        rates.inserted[b] = double(profile.inserted[b]) / double(tokens);
    }
    return rates;
}

// Aligns every pair (in parallel) and sums the profiles in index order, so the counts never depend on the
// thread count.
template <typename T>
PositionProfile position_profile(const std::vector<SequenceView<T>>& references,
                                 const std::vector<SequenceView<T>>& hypotheses, size_t bins = 20) {
    PositionProfile total = make_position_profile(bins);
    C3_CHECK(references.size() == hypotheses.size(), ShapeError, "position_profile: ", references.size(),
             " references against ", hypotheses.size(), " hypotheses");
    std::vector<PositionProfile> parts(references.size());
    parallel_for_checked(references.size(), [&](size_t k) {
        parts[k] = make_position_profile(bins);
        add_alignment(parts[k], align(references[k].data, references[k].size, hypotheses[k].data, hypotheses[k].size));
    });
    for (const PositionProfile& part : parts) add_profile(total, part);
    return total;
}

// ---------------------------------------------------------------------------------------------------------
// From per-position correctness (teacher-forced accuracy: was the argmax right at position p?)

struct CorrectnessProfile {
    size_t bins = 0;
    std::vector<uint64_t> correct, total;
};

inline CorrectnessProfile make_correctness_profile(size_t bins = 20) {
    C3_CHECK(bins > 0, ValueError, "correctness profile: bins must be positive");
    return {bins, std::vector<uint64_t>(bins, 0), std::vector<uint64_t>(bins, 0)};
}

// correct[p] != 0 means position p of a text of `length` tokens was right.
template <typename Flag>
void add_correctness(CorrectnessProfile& profile, const Flag* correct, size_t length) {
    for (size_t p = 0; p < length; ++p) {
        const size_t bin = position_bin(p, length, profile.bins);
        profile.correct[bin] += correct[p] ? 1 : 0;
        ++profile.total[bin];
    }
}

// correct / total per bin; NaN for empty bins.
inline std::vector<double> correctness_rates(const CorrectnessProfile& profile) {
    std::vector<double> rates(profile.bins, std::numeric_limits<double>::quiet_NaN());
    for (size_t b = 0; b < profile.bins; ++b)
        if (profile.total[b] > 0) rates[b] = double(profile.correct[b]) / double(profile.total[b]);
    return rates;
}

// ---------------------------------------------------------------------------------------------------------
// From per-position values (negative log-likelihood, entropy, ...)

struct ValueProfile {
    size_t bins = 0;
    std::vector<double> sum;  // double: a float sum over a million tokens would drift
    std::vector<uint64_t> count;
};

inline ValueProfile make_value_profile(size_t bins = 20) {
    C3_CHECK(bins > 0, ValueError, "value profile: bins must be positive");
    return {bins, std::vector<double>(bins, 0.0), std::vector<uint64_t>(bins, 0)};
}

// Non-finite values throw: one NaN loss would silently poison a whole bin.
template <typename Value>
void add_values(ValueProfile& profile, const Value* values, size_t length) {
    for (size_t p = 0; p < length; ++p) {
        C3_CHECK(std::isfinite(double(values[p])), ValueError, "value profile: non-finite value at position ", p);
        const size_t bin = position_bin(p, length, profile.bins);
        profile.sum[bin] += double(values[p]);
        ++profile.count[bin];
    }
}

inline std::vector<double> value_means(const ValueProfile& profile) {
    std::vector<double> means(profile.bins, std::numeric_limits<double>::quiet_NaN());
    for (size_t b = 0; b < profile.bins; ++b)
        if (profile.count[b] > 0) means[b] = profile.sum[b] / double(profile.count[b]);
    return means;
}

// ---------------------------------------------------------------------------------------------------------
// Grids: one profile per group (compression ratio, length bin) -> [groups, bins] arrays for heat maps.

struct ProfileGrid {
    xt::xtensor<uint64_t, 2> kept, substituted, deleted, inserted;  // [groups, bins]
};

inline ProfileGrid stack_profiles(const std::vector<PositionProfile>& profiles) {
    const size_t groups = profiles.size();
    const size_t bins = groups ? profiles[0].bins : 0;
    ProfileGrid grid;
    for (auto* counts : {&grid.kept, &grid.substituted, &grid.deleted, &grid.inserted})
        *counts = xt::zeros<uint64_t>({groups, bins});
    for (size_t g = 0; g < groups; ++g) {
        C3_CHECK(profiles[g].bins == bins, ShapeError, "stack_profiles: group ", g, " has ", profiles[g].bins,
                 " bins, group 0 has ", bins);
        for (size_t b = 0; b < bins; ++b) {
            grid.kept(g, b) = profiles[g].kept[b];
            grid.substituted(g, b) = profiles[g].substituted[b];
            grid.deleted(g, b) = profiles[g].deleted[b];
            grid.inserted(g, b) = profiles[g].inserted[b];
        }
    }
    return grid;
}

// counts / (kept + substituted + deleted) cell by cell; NaN where a cell holds no reference token.
inline xt::xtensor<double, 2> grid_rate(const ProfileGrid& grid, const xt::xtensor<uint64_t, 2>& counts) {
    const xt::xtensor<double, 2> tokens = xt::cast<double>(grid.kept + grid.substituted + grid.deleted);
    return xt::where(tokens > 0.0, xt::cast<double>(counts) / tokens, std::numeric_limits<double>::quiet_NaN());
}

}  // namespace c3::analysis
