// The hierarchical baseline's ops (conv1d, group_norm, adaptive_avg_pool): forward against their scalar twins,
// backward against central differences in double (and accumulating into what the buffers held); the hierarchical
// encoder's block rule and its whole backward.
#include <gtest/gtest.h>

#include <type_traits>

#include "c3/cascade/hierarchical.hpp"
#include "c3/ops/adaptive_avg_pool.hpp"
#include "c3/ops/conv1d.hpp"
#include "c3/ops/group_norm.hpp"
#include "gradcheck.hpp"

using namespace c3;
using c3::testing::expect_gradient;
using c3::testing::random_vector;
using c3::testing::weighted_sum;

namespace {
std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tolerance, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tolerance) << what << " at " << i;
}

// The hierarchical encoder's two convolutions and a few edge shapes: a row shorter than the kernel, odd lengths.
std::vector<ops::Conv1dShape> conv_shapes() {
    return {{7, 5, 6, 5, 1, 2}, {7, 5, 6, 3, 2, 1}, {8, 4, 4, 3, 2, 1}, {1, 3, 2, 5, 1, 2},
            {2, 3, 3, 3, 2, 1}, {9, 2, 3, 4, 3, 0}, {33, 16, 16, 5, 1, 2}};
}
}  // namespace

TEST(Conv1d, ForwardMatchesReference) {
    for (const ops::Conv1dShape& s : conv_shapes()) {
        const auto x = random_vector(s.length * s.in_channels, 1);
        const auto w = random_vector(s.out_channels * s.unfolded_width(), 2);
        const size_t out = s.output_length() * s.out_channels;
        std::vector<double> fast(out), slow(out);
        ops::conv1d_forward(fast.data(), x.data(), w.data(), s);
        ops::reference::conv1d_forward(slow.data(), x.data(), w.data(), s);
        for (size_t i = 0; i < out; ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12) << s.length << " " << s.kernel;
        const auto xf = to_float(x), wf = to_float(w);
        std::vector<float> fast_float(out), slow_float(out);
        ops::conv1d_forward(fast_float.data(), xf.data(), wf.data(), s);
        ops::reference::conv1d_forward(slow_float.data(), xf.data(), wf.data(), s);
        expect_close(fast_float, slow_float, 1e-4f, "conv1d forward (float)");
    }
    // torch's output length: floor((L + 2p - k) / s) + 1, ceil(L / 2) for the strided kernel-3 convolution.
    for (size_t L = 1; L < 40; ++L) EXPECT_EQ((ops::Conv1dShape{L, 1, 1, 3, 2, 1}.output_length()), (L + 1) / 2);
    EXPECT_THROW((ops::Conv1dShape{1, 1, 1, 5, 1, 1}.output_length()), ShapeError);
}

TEST(Conv1d, BackwardAccumulatesAndMatchesCentralDifferences) {
    for (const ops::Conv1dShape& s : conv_shapes()) {
        if (s.length * s.in_channels > 64) continue;  // the finite differences perturb every entry
        auto x = random_vector(s.length * s.in_channels, 3), w = random_vector(s.out_channels * s.unfolded_width(), 4);
        const auto upstream = random_vector(s.output_length() * s.out_channels, 5);
        std::vector<double> dx(x.size(), 0.5), dw(w.size(), -0.25), rx = dx, rw = dw;
        ops::conv1d_backward(dx.data(), dw.data(), upstream.data(), x.data(), w.data(), s);
        ops::reference::conv1d_backward(rx.data(), rw.data(), upstream.data(), x.data(), w.data(), s);
        for (size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx[i], rx[i], 1e-12) << "dinput " << i;
        for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw[i], rw[i], 1e-12) << "dweight " << i;
        for (double& v : dx) v -= 0.5;  // what was accumulated
        for (double& v : dw) v += 0.25;
        auto loss = [&]() {
            std::vector<double> y(upstream.size());
            ops::conv1d_forward(y.data(), x.data(), w.data(), s);
            return weighted_sum(y, upstream);
        };
        expect_gradient(loss, x, dx, "conv1d dinput");
        expect_gradient(loss, w, dw, "conv1d dweight", 24);
        // Either gradient alone.
        std::vector<double> only_dx(x.size(), 0.0);
        ops::conv1d_backward(only_dx.data(), static_cast<double*>(nullptr), upstream.data(), x.data(), w.data(), s);
        for (size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(only_dx[i], dx[i], 1e-12);
    }
}

TEST(GroupNorm, ForwardMatchesReference) {
    for (size_t groups : {1, 2, 4})
        for (size_t length : {1, 3, 17}) {
            const size_t channels = 8;
            auto x = random_vector(length * channels, 6);
            const auto w = random_vector(channels, 7), b = random_vector(channels, 8);
            for (double& v : x) v = 3.0 + 2.0 * v;  // an offset mean, so that centring matters
            std::vector<double> fast(x.size()), slow(x.size());
            std::vector<double> mean(groups), rstd(groups), rmean(groups), rrstd(groups);
            ops::group_norm_forward(fast.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), length,
                                    channels, groups, 1e-5);
            ops::reference::group_norm_forward(slow.data(), rmean.data(), rrstd.data(), x.data(), w.data(), b.data(),
                                               length, channels, groups, 1e-5);
            for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-10) << groups << " " << length;
            for (size_t g = 0; g < groups; ++g) {
                EXPECT_NEAR(mean[g], rmean[g], 1e-12);
                EXPECT_NEAR(rstd[g], rrstd[g], 1e-9);
            }
            const auto xf = to_float(x), wf = to_float(w), bf = to_float(b);
            std::vector<float> fast_float(x.size()), slow_float(x.size()), m(groups), r(groups);
            ops::group_norm_forward(fast_float.data(), m.data(), r.data(), xf.data(), wf.data(), bf.data(), length,
                                    channels, groups, 1e-5);
            ops::reference::group_norm_forward(slow_float.data(), m.data(), r.data(), xf.data(), wf.data(), bf.data(),
                                               length, channels, groups, 1e-5);
            expect_close(fast_float, slow_float, 1e-4f, "group_norm forward (float)");
        }
    std::vector<float> out(6), stats(1);
    const std::vector<float> in(6, 1.f), ones(3, 1.f);
    EXPECT_THROW(ops::group_norm_forward(out.data(), stats.data(), stats.data(), in.data(), ones.data(), ones.data(), 2,
                                         3, 2, 1e-5),
                 ShapeError);
}

TEST(GroupNorm, BackwardAccumulatesAndMatchesCentralDifferences) {
    for (size_t groups : {1, 2})
        for (size_t length : {1, 5}) {
            const size_t channels = 6;
            auto x = random_vector(length * channels, 9), w = random_vector(channels, 10);
            auto b = random_vector(channels, 11);
            const auto upstream = random_vector(x.size(), 12);
            std::vector<double> y(x.size()), mean(groups), rstd(groups);
            ops::group_norm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), length, channels,
                                    groups, 1e-5);
            std::vector<double> dx(x.size(), 0.5), dw(channels, -1.0), db(channels, 2.0);
            ops::group_norm_backward(dx.data(), dw.data(), db.data(), upstream.data(), x.data(), w.data(), mean.data(),
                                     rstd.data(), length, channels, groups);
            for (double& v : dx) v -= 0.5;
            for (double& v : dw) v += 1.0;
            for (double& v : db) v -= 2.0;
            auto loss = [&]() {
                std::vector<double> out(x.size()), m(groups), r(groups);
                ops::group_norm_forward(out.data(), m.data(), r.data(), x.data(), w.data(), b.data(), length, channels,
                                        groups, 1e-5);
                return weighted_sum(out, upstream);
            };
            expect_gradient(loss, x, dx, "group_norm dinput", 0, 1e-6, 1e-5, 1e-6);
            expect_gradient(loss, w, dw, "group_norm dweight");
            expect_gradient(loss, b, db, "group_norm dbias");
        }
}

TEST(AdaptiveAvgPool, ForwardMatchesReferenceAndTorchWindows) {
    for (size_t length : {1, 2, 3, 5, 8, 13, 16})
        for (size_t outputs : {1, 2, 3, 4, 8, 11}) {
            const size_t channels = 3;
            const auto x = random_vector(length * channels, 13);
            std::vector<double> fast(outputs * channels), slow(outputs * channels);
            ops::adaptive_avg_pool_forward(fast.data(), x.data(), length, outputs, channels);
            ops::reference::adaptive_avg_pool_forward(slow.data(), x.data(), length, outputs, channels);
            for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12) << length << " " << outputs;
        }
    // torch: 5 rows into 3 -> [0, 2), [1, 4), [3, 5); equal lengths are the identity.
    EXPECT_EQ(ops::adaptive_pool_window(0, 5, 3), (std::pair<size_t, size_t>{0, 2}));
    EXPECT_EQ(ops::adaptive_pool_window(1, 5, 3), (std::pair<size_t, size_t>{1, 4}));
    EXPECT_EQ(ops::adaptive_pool_window(2, 5, 3), (std::pair<size_t, size_t>{3, 5}));
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(ops::adaptive_pool_window(i, 6, 6), (std::pair<size_t, size_t>{i, i + 1}));
}

TEST(AdaptiveAvgPool, BackwardAccumulatesAndMatchesCentralDifferences) {
    for (size_t length : {3, 7, 8})
        for (size_t outputs : {2, 3, 4, 9}) {
            const size_t channels = 2;
            auto x = random_vector(length * channels, 14);
            const auto upstream = random_vector(outputs * channels, 15);
            std::vector<double> dx(x.size(), 1.5);
            ops::adaptive_avg_pool_backward(dx.data(), upstream.data(), length, outputs, channels);
            for (double& v : dx) v -= 1.5;
            auto loss = [&]() {
                std::vector<double> y(upstream.size());
                ops::adaptive_avg_pool_forward(y.data(), x.data(), length, outputs, channels);
                return weighted_sum(y, upstream);
            };
            expect_gradient(loss, x, dx, "adaptive_avg_pool dinput");
        }
}

// ---- the hierarchical encoder --------------------------------------------------------------------------------
TEST(Hierarchical, BlockRuleReachesExactlyNForPowersOfTwoAndPoolsDownOtherwise) {
    for (size_t N : {1, 3, 4, 16})
        for (size_t k = 0; k < 6; ++k) EXPECT_EQ(hierarchical_depth(N << k, N), k) << N << " " << k;
    // After the blocks, between N and 2N - 1 rows are left (the final pool never upsamples).
    for (size_t N : {2, 3, 4, 7, 16})
        for (size_t L = N; L < 40 * N; ++L) {
            size_t rows = L;
            for (size_t i = 0; i < hierarchical_depth(L, N); ++i) rows = (rows + 1) / 2;
            ASSERT_GE(rows, N) << L;
            ASSERT_LT(rows, std::max<size_t>(2 * N, N + 1)) << L;
        }
    EXPECT_EQ(hierarchical_depth(3, 4), 0u);   // shorter than N: refused by the callers
    EXPECT_EQ(hierarchical_depth(12, 4), 1u);  // 12 -> 6, then a pool 6 -> 4
    // The layout: six tensors a block under HF-like names, with PyTorch's conv weight shapes.
    LayoutBuilder b;
    add_hierarchical_layout(b, 8, 2);
    ASSERT_EQ(b.entries.size(), 2 * kHierarchicalTensorsPerBlock);
    EXPECT_EQ(b.entries[0].name, "model.hierarchical.blocks.0.conv1.weight");
    EXPECT_EQ(b.entries[0].shape, (Shape{8, 8, 5}));
    EXPECT_EQ(b.entries[9].name, "model.hierarchical.blocks.1.conv2.weight");
    EXPECT_EQ(b.entries[9].shape, (Shape{8, 8, 3}));
    EXPECT_EQ(b.entries[11].name, "model.hierarchical.blocks.1.norm2.bias");
}

// The whole stack (two blocks and the final pool, 11 rows -> 3) against central differences: input, every conv
// and norm tensor.
TEST(Hierarchical, BackwardMatchesCentralDifferences) {
    const size_t d = 4, N = 3, L = 11, blocks = 3;
    ASSERT_EQ(hierarchical_depth(L, N), 2u);
    LayoutBuilder b;
    add_hierarchical_layout(b, d, blocks);
    std::vector<double> parameters = random_vector(b.total, 16, 0.5), input = random_vector(L * d, 17);
    for (size_t e = 0; e < b.entries.size(); ++e)  // norms near 1, so that the GELUs see both signs
        if (b.entries[e].kind == ParameterKind::Norm)
            for (size_t i = 0; i < b.entries[e].size; ++i) parameters[b.entries[e].offset + i] += 1.0;
    const auto upstream = random_vector(N * d, 18);
    auto views = [&](auto* base) {
        using P = std::remove_pointer_t<decltype(base)>;
        std::vector<HierarchicalBlockWeights<P>> w(blocks);
        for (size_t i = 0; i < blocks; ++i) {
            P* p[kHierarchicalTensorsPerBlock];
            for (size_t t = 0; t < kHierarchicalTensorsPerBlock; ++t)
                p[t] = base + b.entries[i * kHierarchicalTensorsPerBlock + t].offset;
            w[i] = {p[0], p[1], p[2], p[3], p[4], p[5]};
        }
        return w;
    };
    auto loss = [&]() {
        HierarchicalSequence<double> a;
        std::vector<double> out(N * d);
        hierarchical_forward(out.data(), input.data(), L, N, d, views(static_cast<const double*>(parameters.data())),
                             a);
        return weighted_sum(out, upstream);
    };
    HierarchicalSequence<double> a;
    std::vector<double> out(N * d), dparameters(b.total, 0.0), dinput(L * d, 0.0);
    hierarchical_forward(out.data(), input.data(), L, N, d, views(static_cast<const double*>(parameters.data())), a);
    ASSERT_EQ(a.blocks.size(), 2u);
    EXPECT_EQ(a.blocks[1].length_out, 3u);  // 11 -> 6 -> 3
    hierarchical_backward(dinput.data(), views(dparameters.data()), upstream.data(), N, d,
                          views(static_cast<const double*>(parameters.data())), a);
    expect_gradient(loss, input, dinput, "hierarchical dinput", 0, 1e-6, 1e-5, 1e-7);
    expect_gradient(loss, parameters, dparameters, "hierarchical parameters", 0, 1e-6, 1e-5, 1e-7);
    // The third block is not run by an 11-row input: its gradient stays exactly zero.
    for (size_t i = b.entries[2 * kHierarchicalTensorsPerBlock].offset; i < b.total; ++i)
        ASSERT_EQ(dparameters[i], 0.0) << i;
    // Too few blocks for the input, or fewer rows than N: a ValueError.
    std::vector<HierarchicalBlockWeights<const double>> one = views(static_cast<const double*>(parameters.data()));
    one.resize(1);
    EXPECT_THROW(hierarchical_forward(out.data(), input.data(), L, N, d, one, a), ValueError);
    EXPECT_THROW(hierarchical_forward(out.data(), input.data(), 2, N, d, one, a), ValueError);
}
