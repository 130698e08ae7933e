#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "c3/analysis/alignment.hpp"
#include "c3/analysis/edit_distance.hpp"
#include "c3/analysis/metrics.hpp"
#include "c3/analysis/profile.hpp"
#include "c3/core/rng.hpp"

namespace ca = c3::analysis;

namespace {

std::vector<int32_t> ids(std::initializer_list<int32_t> values) { return values; }

// Replays an alignment: walks the hypothesis with the ops and checks that it consumes exactly the hypothesis,
// that Kept means equal and Substituted means different, and that the distance is the number of edits.
void expect_consistent(const std::vector<int32_t>& reference, const std::vector<int32_t>& hypothesis,
                       const ca::Alignment& alignment) {
    ASSERT_EQ(alignment.reference_ops.size(), reference.size());
    ASSERT_EQ(alignment.insertions_before.size(), reference.size() + 1);
    size_t j = 0, edits = 0;
    for (size_t i = 0; i <= reference.size(); ++i) {
        j += alignment.insertions_before[i];
        edits += alignment.insertions_before[i];
        if (i == reference.size()) break;
        switch (alignment.reference_ops[i]) {
            case ca::TokenOp::Kept:
                ASSERT_LT(j, hypothesis.size());
                EXPECT_EQ(reference[i], hypothesis[j]);
                ++j;
                break;
            case ca::TokenOp::Substituted:
                ASSERT_LT(j, hypothesis.size());
                EXPECT_NE(reference[i], hypothesis[j]);
                ++j, ++edits;
                break;
            case ca::TokenOp::Deleted: ++edits; break;
        }
    }
    EXPECT_EQ(j, hypothesis.size());
    EXPECT_EQ(edits, alignment.distance);
}

// The cheapest of all alignments, enumerated: at each step consume both (cost 0 or 1), only the reference
// (deletion) or only the hypothesis (insertion). Exponential; fine for lengths <= 5.
size_t brute_force_cost(const std::vector<int32_t>& a, const std::vector<int32_t>& b, size_t i = 0, size_t j = 0) {
    if (i == a.size()) return b.size() - j;
    if (j == b.size()) return a.size() - i;
    size_t best = brute_force_cost(a, b, i + 1, j + 1) + (a[i] == b[j] ? 0 : 1);
    best = std::min(best, brute_force_cost(a, b, i + 1, j) + 1);
    best = std::min(best, brute_force_cost(a, b, i, j + 1) + 1);
    return best;
}

// Every sequence over {0, 1, 2} of length <= 5.
std::vector<std::vector<int32_t>> all_sequences(size_t max_length) {
    std::vector<std::vector<int32_t>> sequences{{}};
    std::vector<std::vector<int32_t>> frontier{{}};
    for (size_t length = 1; length <= max_length; ++length) {
        std::vector<std::vector<int32_t>> next;
        for (const auto& prefix : frontier)
            for (int32_t letter = 0; letter < 3; ++letter) {
                next.push_back(prefix);
                next.back().push_back(letter);
            }
        sequences.insert(sequences.end(), next.begin(), next.end());
        frontier = std::move(next);
    }
    return sequences;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Edit distance

TEST(EditDistance, HandWorkedCases) {
    EXPECT_EQ(ca::char_edit_distance("kitten", "sitting"), 3u);
    EXPECT_EQ(ca::char_edit_distance("sitting", "kitten"), 3u);
    EXPECT_EQ(ca::char_edit_distance("rain", "shine"), 3u);
    EXPECT_EQ(ca::char_edit_distance("", ""), 0u);
    EXPECT_EQ(ca::char_edit_distance("", "abc"), 3u);
    EXPECT_EQ(ca::char_edit_distance("abc", ""), 3u);
    EXPECT_EQ(ca::char_edit_distance("same text", "same text"), 0u);
    EXPECT_EQ(ca::char_edit_distance("flaw", "lawn"), 2u);
    EXPECT_EQ(ca::edit_distance(ids({1, 2, 3}), ids({1, 3})), 1u);
    EXPECT_EQ(ca::edit_distance(std::vector<std::string>{"the", "cat"}, std::vector<std::string>{"a", "cat"}), 1u);
}

TEST(EditDistance, Normalized) {
    EXPECT_DOUBLE_EQ(ca::normalized_char_edit_distance("kitten", "sitting"), 3.0 / 7.0);
    EXPECT_EQ(ca::normalized_char_edit_distance("", ""), 0.0);
    EXPECT_EQ(ca::normalized_char_edit_distance("", "ab"), 1.0);
    EXPECT_EQ(ca::normalized_char_edit_distance("abc", "abc"), 0.0);
}

TEST(EditDistance, CountsCodePointsNotBytes) {
    // "é" is two bytes, "中" three, "😀" four: one character each, as in Python.
    EXPECT_EQ(ca::decode_utf8("aé中😀").size(), 4u);
    EXPECT_EQ(ca::char_edit_distance("café", "cafe"), 1u);
    EXPECT_EQ(ca::char_edit_distance("中文", "中国"), 1u);
    EXPECT_EQ(ca::char_edit_distance("😀", "😁"), 1u);  // share three of four bytes
    EXPECT_DOUBLE_EQ(ca::normalized_char_edit_distance("日本語", "日本"), 1.0 / 3.0);
    EXPECT_EQ(ca::decode_utf8("\xF4\x8F\xBF\xBF")[0], char32_t(0x10FFFF));
}

TEST(EditDistance, InvalidUtf8NamesTheOffset) {
    const std::vector<std::pair<std::string, size_t>> cases = {
        {std::string("ab\xFF"), 2},          // never valid
        {std::string("a\xC3"), 1},           // truncated
        {std::string("ab\xC3\x28"), 3},      // bad continuation
        {std::string("\xC0\xAF"), 0},        // overlong lead
        {std::string("x\xE0\x80\xAF"), 1},   // overlong 3-byte form
        {std::string("\xED\xA0\x80"), 0},    // surrogate
        {std::string("\xF4\x90\x80\x80"), 0} // past U+10FFFF
    };
    for (const auto& [text, offset] : cases) {
        try {
            ca::char_edit_distance(text, "a");
            ADD_FAILURE() << "accepted invalid UTF-8";
        } catch (const c3::ValueError& e) {
            EXPECT_NE(std::string(e.what()).find("byte offset " + std::to_string(offset)), std::string::npos) << e.what();
        }
    }
}

TEST(EditDistance, MatchesFullTableOnRandomInputs) {
    c3::Rng rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<int32_t> a(rng.below(12)), b(rng.below(12));
        for (auto& x : a) x = int32_t(rng.below(3));
        for (auto& x : b) x = int32_t(rng.below(3));
        // The textbook full table, without prefix/suffix stripping or row swapping.
        std::vector<std::vector<size_t>> table(a.size() + 1, std::vector<size_t>(b.size() + 1));
        for (size_t i = 0; i <= a.size(); ++i) table[i][0] = i;
        for (size_t j = 0; j <= b.size(); ++j) table[0][j] = j;
        for (size_t i = 1; i <= a.size(); ++i)
            for (size_t j = 1; j <= b.size(); ++j)
                table[i][j] = std::min({table[i - 1][j] + 1, table[i][j - 1] + 1,
                                        table[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        EXPECT_EQ(ca::edit_distance(a, b), table[a.size()][b.size()]);
    }
}

TEST(EditDistance, BitParallelMatchesReferenceAcrossWordBoundaries) {
    // Lengths around multiples of 64 (one, two, five blocks), small and large alphabets, near-copies and
    // unrelated pairs.
    c3::Rng rng(19);
    const size_t lengths[] = {1, 2, 63, 64, 65, 127, 128, 129, 200, 320};
    for (size_t m : lengths)
        for (size_t trial = 0; trial < 12; ++trial) {
            const int32_t alphabet = trial % 3 == 0 ? 2 : trial % 3 == 1 ? 4 : 1000;
            const size_t n = trial % 2 ? m + rng.below(40) : rng.below(2 * m + 5);
            std::vector<int32_t> a(m), b(n);
            for (auto& x : a) x = int32_t(rng.below(uint64_t(alphabet)));
            for (auto& x : b) x = int32_t(rng.below(uint64_t(alphabet)));
            if (trial % 4 == 3) {  // a near-copy with a few edits inside
                b = a;
                for (size_t e = 0; e < 5 && !b.empty(); ++e) b[rng.below(b.size())] = int32_t(rng.below(uint64_t(alphabet)));
                if (b.size() > 2) b.erase(b.begin() + rng.below(b.size()));
            }
            const size_t expected = ca::edit_distance_reference(a.data(), a.size(), b.data(), b.size());
            ASSERT_EQ(ca::edit_distance(a, b), expected) << "m=" << m << " n=" << n << " trial=" << trial;
            ASSERT_EQ(ca::edit_distance(b, a), expected);
        }
    const std::u32string long_text = ca::decode_utf8(std::string(500, 'a') + "中文" + std::string(300, 'b'));
    const std::u32string other = ca::decode_utf8(std::string(450, 'a') + "中" + std::string(320, 'b'));
    EXPECT_EQ(ca::edit_distance(long_text, other),
              ca::edit_distance_reference(long_text.data(), long_text.size(), other.data(), other.size()));
}

TEST(EditDistance, BatchMatchesSingle) {
    const std::vector<std::string> a = {"kitten", "", "abc", "héllo"}, b = {"sitting", "", "", "hello"};
    const std::vector<double> batch = ca::normalized_char_edit_distances(a, b);
    for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(batch[k], ca::normalized_char_edit_distance(a[k], b[k]));
    EXPECT_THROW(ca::normalized_char_edit_distances({"ok", "bad\xFF"}, {"ok", "x"}), c3::ValueError);
    EXPECT_THROW(ca::normalized_char_edit_distances({"a"}, {}), c3::ShapeError);
}

// ---------------------------------------------------------------------------------------------------------
// Alignment

TEST(Alignment, HandWorkedCases) {
    // kitten -> sitting: k->s, e->i substituted, g inserted after the end.
    const ca::Alignment kitten = ca::align_chars("kitten", "sitting");
    EXPECT_EQ(kitten.distance, 3u);
    using Op = ca::TokenOp;
    EXPECT_EQ(kitten.reference_ops,
              (std::vector<Op>{Op::Substituted, Op::Kept, Op::Kept, Op::Kept, Op::Substituted, Op::Kept}));
    EXPECT_EQ(kitten.insertions_before, (std::vector<size_t>{0, 0, 0, 0, 0, 0, 1}));

    const ca::Alignment empty = ca::align(ids({}), ids({}));
    EXPECT_EQ(empty.distance, 0u);
    EXPECT_EQ(empty.insertions_before, std::vector<size_t>{0});

    const ca::Alignment all_inserted = ca::align(ids({}), ids({4, 5}));
    EXPECT_EQ(all_inserted.insertions_before, std::vector<size_t>{2});
    const ca::Alignment all_deleted = ca::align(ids({4, 5}), ids({}));
    EXPECT_EQ(all_deleted.reference_ops, (std::vector<Op>{Op::Deleted, Op::Deleted}));
    EXPECT_EQ(all_deleted.distance, 2u);
}

TEST(Alignment, TieBreakKeepsEarlyAndBlamesLate) {
    using Op = ca::TokenOp;
    // A truncated copy of a repeated text: the first copy is kept, the second deleted.
    const ca::Alignment truncated = ca::align(ids({1, 2, 3, 1, 2, 3}), ids({1, 2, 3}));
    EXPECT_EQ(truncated.reference_ops, (std::vector<Op>{Op::Kept, Op::Kept, Op::Kept, Op::Deleted, Op::Deleted, Op::Deleted}));
    // "a a" -> "a": keep the first.
    EXPECT_EQ(ca::align(ids({1, 1}), ids({1})).reference_ops, (std::vector<Op>{Op::Kept, Op::Deleted}));
    // Substitution preferred to a deletion plus an insertion, and deletion to insertion on ties:
    // [1, 2] -> [2, 1] costs 2 either as two substitutions or as delete + insert; substitution wins.
    EXPECT_EQ(ca::align(ids({1, 2}), ids({2, 1})).reference_ops, (std::vector<Op>{Op::Substituted, Op::Substituted}));
    // [1] -> [2, 1]: the extra token is an insertion before position 0.
    const ca::Alignment inserted = ca::align(ids({1}), ids({2, 1}));
    EXPECT_EQ(inserted.reference_ops, std::vector<Op>{Op::Kept});
    EXPECT_EQ(inserted.insertions_before, (std::vector<size_t>{1, 0}));
}

TEST(Alignment, OptimalAndConsistentOnAllSmallInputs) {
    // Every pair of sequences of length <= 4 over three letters, and random pairs of length 5.
    const auto sequences = all_sequences(4);
    for (const auto& reference : sequences)
        for (const auto& hypothesis : sequences) {
            const ca::Alignment alignment = ca::align(reference, hypothesis);
            ASSERT_EQ(alignment.distance, brute_force_cost(reference, hypothesis));
            ASSERT_EQ(alignment.distance, ca::edit_distance(reference, hypothesis));
            expect_consistent(reference, hypothesis, alignment);
            if (HasFatalFailure() || HasFailure()) return;
        }
    c3::Rng rng(11);
    const auto length5 = all_sequences(5);
    for (int trial = 0; trial < 3000; ++trial) {
        const auto& reference = length5[rng.below(length5.size())];
        const auto& hypothesis = length5[rng.below(length5.size())];
        const ca::Alignment alignment = ca::align(reference, hypothesis);
        ASSERT_EQ(alignment.distance, brute_force_cost(reference, hypothesis));
        expect_consistent(reference, hypothesis, alignment);
    }
}

TEST(Alignment, BatchMatchesSingleAndLongInputs) {
    c3::Rng rng(3);
    std::vector<std::vector<int32_t>> refs(16), hyps(16);
    for (size_t k = 0; k < refs.size(); ++k) {
        refs[k].resize(50 + rng.below(300));
        for (auto& x : refs[k]) x = int32_t(rng.below(20));
        hyps[k] = refs[k];
        for (size_t e = 0; e < 10; ++e) {  // a few random edits
            const size_t at = rng.below(hyps[k].size());
            if (e % 3 == 0) hyps[k].erase(hyps[k].begin() + at);
            else if (e % 3 == 1) hyps[k].insert(hyps[k].begin() + at, 99);
            else hyps[k][at] = 77;
        }
    }
    std::vector<ca::SequenceView<int32_t>> ref_views, hyp_views;
    for (size_t k = 0; k < refs.size(); ++k) ref_views.push_back(ca::view_of(refs[k])), hyp_views.push_back(ca::view_of(hyps[k]));
    const auto batch = ca::align_batch(ref_views, hyp_views);
    const auto distances = ca::edit_distances(ref_views, hyp_views);
    for (size_t k = 0; k < refs.size(); ++k) {
        const ca::Alignment single = ca::align(refs[k], hyps[k]);
        EXPECT_EQ(batch[k].reference_ops, single.reference_ops);
        EXPECT_EQ(batch[k].insertions_before, single.insertions_before);
        EXPECT_EQ(single.distance, distances[k]);
        expect_consistent(refs[k], hyps[k], single);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Metrics

TEST(Metrics, SplitWordsLikePython) {
    const auto words = ca::split_words("  the\tcat\u00A0sat\u3000on\n\nthe mat  ");
    EXPECT_EQ(words, (std::vector<std::string_view>{"the", "cat", "sat", "on", "the", "mat"}));
    EXPECT_TRUE(ca::split_words("").empty());
    EXPECT_TRUE(ca::split_words(" \t\n").empty());
    // U+200B (zero width space) is not whitespace to Python.
    EXPECT_EQ(ca::split_words("a\u200Bb").size(), 1u);
    EXPECT_THROW(ca::split_words("ok \xFF"), c3::ValueError);
}

TEST(Metrics, FoxSetPrecision) {
    // Sets: duplicates count once, order not at all.
    const ca::SetOverlap overlap = ca::word_set_overlap("the cat sat on the mat", "the the cat ran");
    EXPECT_EQ(overlap.reference_distinct, 5u);
    EXPECT_EQ(overlap.hypothesis_distinct, 3u);
    EXPECT_EQ(overlap.common, 2u);
    EXPECT_DOUBLE_EQ(ca::set_precision(overlap), 2.0 / 3.0);
    EXPECT_DOUBLE_EQ(ca::set_recall(overlap), 2.0 / 5.0);
    EXPECT_DOUBLE_EQ(ca::set_f1(overlap), 1.0 / (0.5 / (2.0 / 3.0) + 0.5 / (2.0 / 5.0)));
    EXPECT_EQ(ca::fox_precision("a b c", "c b a"), 1.0);  // order-blind: why strict measures are needed too
    EXPECT_TRUE(std::isnan(ca::fox_precision("a b", "")));
    EXPECT_TRUE(std::isnan(ca::set_recall(ca::word_set_overlap("", "a"))));
    EXPECT_TRUE(std::isnan(ca::set_f1(ca::word_set_overlap("a", ""))));
    EXPECT_EQ(ca::set_f1(ca::word_set_overlap("a", "b")), 0.0);
}

TEST(Metrics, TokenAndCharAccuracy) {
    EXPECT_DOUBLE_EQ(ca::token_accuracy(ids({1, 2, 3, 4}), ids({1, 2, 9, 4})), 0.75);
    EXPECT_DOUBLE_EQ(ca::token_accuracy(ids({1, 2, 3, 4}), ids({1, 2})), 0.5);           // missing = wrong
    EXPECT_DOUBLE_EQ(ca::token_accuracy(ids({1, 2}), ids({1, 2, 3, 4, 5})), 1.0);        // extra ignored
    EXPECT_DOUBLE_EQ(ca::token_accuracy(ids({1, 2, 3}), ids({0, 1, 2, 3})), 0.0);        // strict: a shift is fatal
    EXPECT_TRUE(std::isnan(ca::token_accuracy(ids({}), ids({1}))));
    EXPECT_DOUBLE_EQ(ca::char_accuracy("héllo", "hello"), 0.8);
}

TEST(Metrics, BleuHandWorked) {
    // nltk's doctest: sentence_bleu([reference1], hypothesis1) = 0.4118...
    const std::vector<std::string> hypothesis = {"It", "is", "a", "guide", "to", "action", "which", "ensures", "that",
                                                 "the", "military", "always", "obeys", "the", "commands", "of", "the",
                                                 "party"};
    const std::vector<std::string> reference = {"It", "is", "a", "guide", "to", "action", "that", "ensures",
                                                "that", "the", "military", "will", "forever", "heed", "Party",
                                                "commands"};
    EXPECT_NEAR(ca::sentence_bleu(reference, hypothesis), 0.41180376356915777, 1e-15);
    // Identical sentences of >= 4 tokens score 1; no common unigram scores exactly 0.
    EXPECT_DOUBLE_EQ(ca::sentence_bleu(ids({1, 2, 3, 4, 5}), ids({1, 2, 3, 4, 5})), 1.0);
    EXPECT_EQ(ca::sentence_bleu(ids({1, 2, 3}), ids({4, 5, 6})), 0.0);
    EXPECT_EQ(ca::sentence_bleu(ids({1, 2, 3}), ids({})), 0.0);
    // Unigrams only, no 4-grams: method0 leaves a tiny positive score, method1 smooths it.
    const double unsmoothed = ca::sentence_bleu(ids({1, 2, 3, 4}), ids({4, 3, 2, 1}));
    EXPECT_GT(unsmoothed, 0.0);
    EXPECT_LT(unsmoothed, 1e-100);
    ca::BleuOptions method1;
    method1.smoothing = ca::BleuSmoothing::Method1;
    // p1 = 1, p2 = 0.1 / 3, p3 = 0.1 / 2, p4 = 0.1 / 1, brevity 1.
    const double expected = std::exp(0.25 * (std::log(0.1 / 3) + std::log(0.1 / 2) + std::log(0.1)));
    EXPECT_NEAR(ca::sentence_bleu(ids({1, 2, 3, 4}), ids({4, 3, 2, 1}), method1), expected, 1e-15);
}

TEST(Metrics, ExactSumIsCorrectlyRounded) {
    EXPECT_EQ(ca::detail::exact_sum({1e100, 1.0, -1e100}), 1.0);
    EXPECT_EQ(ca::detail::exact_sum({0.1, 0.2, 0.3}), 0.6);  // naive left-to-right gives 0.6000000000000001
    EXPECT_EQ(ca::detail::exact_sum({}), 0.0);
}

TEST(Metrics, FoxScores) {
    const ca::FoxScores scores = ca::fox_scores("the cat sat on the mat", "the cat sat on a mat");
    EXPECT_DOUBLE_EQ(scores.precision, 5.0 / 6.0);  // "a" is new; "the" is still in the set
    EXPECT_DOUBLE_EQ(scores.recall, 1.0);
    EXPECT_DOUBLE_EQ(scores.edit_distance, 3.0 / 22.0);
    const auto batch = ca::fox_scores_batch({"the cat sat on the mat", "x"}, {"the cat sat on a mat", ""});
    EXPECT_EQ(batch[0].bleu, scores.bleu);
    EXPECT_TRUE(std::isnan(batch[1].precision));
    EXPECT_EQ(batch[1].edit_distance, 1.0);
}

// ---------------------------------------------------------------------------------------------------------
// Profiles

TEST(Profile, BinsEvenly) {
    // 10 tokens in 5 bins: two per bin; 3 tokens in 4 bins: floor(p * 4 / 3) = 0, 1, 2.
    for (size_t p = 0; p < 10; ++p) EXPECT_EQ(ca::position_bin(p, 10, 5), p / 2);
    EXPECT_EQ(ca::position_bin(0, 3, 4), 0u);
    EXPECT_EQ(ca::position_bin(1, 3, 4), 1u);
    EXPECT_EQ(ca::position_bin(2, 3, 4), 2u);
    EXPECT_EQ(ca::position_bin(3, 3, 4), 3u);  // the slot after the end
    EXPECT_EQ(ca::position_bin(0, 0, 4), 3u);
}

TEST(Profile, CountsCraftedAlignment) {
    // Reference of 8 tokens, 4 bins of 2: keep bin 0, substitute one in bin 1, delete the last bin, and insert
    // one token before position 3 (bin 1) and two after the end (last bin).
    // Built by hand rather than aligned, so the binning is what is tested.
    using Op = ca::TokenOp;
    ca::Alignment alignment;
    alignment.reference_ops = {Op::Kept, Op::Kept, Op::Kept, Op::Substituted, Op::Kept, Op::Kept, Op::Deleted, Op::Deleted};
    alignment.insertions_before = {0, 0, 0, 1, 0, 0, 0, 0, 2};
    alignment.distance = 5;
    ca::PositionProfile profile = ca::make_position_profile(4);
    ca::add_alignment(profile, alignment);
    EXPECT_EQ(profile.kept, (std::vector<uint64_t>{2, 1, 2, 0}));
    EXPECT_EQ(profile.substituted, (std::vector<uint64_t>{0, 1, 0, 0}));
    EXPECT_EQ(profile.deleted, (std::vector<uint64_t>{0, 0, 0, 2}));
    EXPECT_EQ(profile.inserted, (std::vector<uint64_t>{0, 1, 0, 2}));
    const ca::ProfileRates rates = ca::profile_rates(profile);
    EXPECT_EQ(rates.reference_tokens, (std::vector<uint64_t>{2, 2, 2, 2}));
    EXPECT_EQ(rates.kept, (std::vector<double>{1.0, 0.5, 1.0, 0.0}));
    EXPECT_EQ(rates.inserted, (std::vector<double>{0.0, 0.5, 0.0, 1.0}));
}

TEST(Profile, AggregatesCountsBeforeRates) {
    // A truncated long sample and a perfect short one: the rate weights tokens, not samples.
    std::vector<int32_t> long_reference(100), short_reference(10);
    for (size_t i = 0; i < 100; ++i) long_reference[i] = int32_t(i);
    for (size_t i = 0; i < 10; ++i) short_reference[i] = int32_t(i);
    const std::vector<int32_t> long_hypothesis(long_reference.begin(), long_reference.begin() + 50);
    const std::vector<ca::SequenceView<int32_t>> refs = {ca::view_of(long_reference), ca::view_of(short_reference)};
    const std::vector<ca::SequenceView<int32_t>> hyps = {ca::view_of(long_hypothesis), ca::view_of(short_reference)};
    const ca::PositionProfile profile = ca::position_profile(refs, hyps, 2);
    EXPECT_EQ(profile.kept, (std::vector<uint64_t>{55, 5}));
    EXPECT_EQ(profile.deleted, (std::vector<uint64_t>{0, 50}));
    const ca::ProfileRates rates = ca::profile_rates(profile);
    EXPECT_DOUBLE_EQ(rates.kept[1], 5.0 / 55.0);
    // Empty bins are NaN: a reference of one token only fills bin 0 of 3.
    const auto one = ids({1});
    const ca::PositionProfile sparse = ca::position_profile<int32_t>({ca::view_of(one)}, {ca::view_of(one)}, 3);
    EXPECT_TRUE(std::isnan(ca::profile_rates(sparse).kept[1]));
    EXPECT_THROW(ca::make_position_profile(0), c3::ValueError);
}

TEST(Profile, CorrectnessAndValues) {
    ca::CorrectnessProfile correctness = ca::make_correctness_profile(2);
    const std::vector<uint8_t> flags = {1, 1, 1, 0};
    ca::add_correctness(correctness, flags.data(), flags.size());
    const std::vector<uint8_t> more = {1, 0};
    ca::add_correctness(correctness, more.data(), more.size());
    EXPECT_EQ(correctness.correct, (std::vector<uint64_t>{3, 1}));
    EXPECT_EQ(correctness.total, (std::vector<uint64_t>{3, 3}));
    EXPECT_EQ(ca::correctness_rates(correctness), (std::vector<double>{1.0, 1.0 / 3.0}));

    ca::ValueProfile values = ca::make_value_profile(2);
    const std::vector<float> nll = {0.5f, 1.5f, 2.0f, 4.0f};
    ca::add_values(values, nll.data(), nll.size());
    EXPECT_EQ(ca::value_means(values), (std::vector<double>{1.0, 3.0}));
    const std::vector<float> bad = {1.0f, std::nanf("")};
    EXPECT_THROW(ca::add_values(values, bad.data(), bad.size()), c3::ValueError);
}

TEST(Profile, GridStacksGroups) {
    ca::PositionProfile low = ca::make_position_profile(2), high = ca::make_position_profile(2);
    low.kept = {4, 2};
    low.deleted = {0, 2};
    high.kept = {1, 0};
    high.substituted = {1, 0};
    const ca::ProfileGrid grid = ca::stack_profiles({low, high});
    ASSERT_EQ(grid.kept.shape()[0], 2u);
    ASSERT_EQ(grid.kept.shape()[1], 2u);
    const auto kept = ca::grid_rate(grid, grid.kept);
    EXPECT_EQ(kept(0, 0), 1.0);
    EXPECT_EQ(kept(0, 1), 0.5);
    EXPECT_EQ(kept(1, 0), 0.5);
    EXPECT_TRUE(std::isnan(kept(1, 1)));
    EXPECT_THROW(ca::stack_profiles({low, ca::make_position_profile(3)}), c3::ShapeError);
}
