// Each fast kernel against its scalar reference, and each backward against central differences in double.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "c3/core/cpu_info.hpp"
#include "c3/ops/attention.hpp"
#include "c3/ops/broadcast_gemm.hpp"
#include "c3/ops/cross_entropy.hpp"
#include "c3/ops/embedding.hpp"
#include "c3/ops/linear.hpp"
#include "c3/ops/matmul.hpp"
#include "c3/ops/onednn.hpp"
#include "c3/ops/small_rows.hpp"
#include "c3/ops/rmsnorm.hpp"
#include "c3/ops/rope.hpp"
#include "c3/ops/swiglu.hpp"
#include "c3/ops/vector_math.hpp"
#include "gradcheck.hpp"

using namespace c3;
using c3::testing::expect_gradient;
using c3::testing::random_vector;
using c3::testing::weighted_sum;

namespace {
std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }
void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tolerance, const char* what) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tolerance) << what << " at " << i;
}
}  // namespace

TEST(Linear, MatchesReference) {
    const size_t rows = 37, in = 53, out = 29;
    auto x = to_float(random_vector(rows * in, 1)), w = to_float(random_vector(out * in, 2)),
         b = to_float(random_vector(out, 3));
    std::vector<float> fast(rows * out), slow(rows * out);
    ops::linear_forward(fast.data(), x.data(), w.data(), b.data(), rows, in, out);
    ops::reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), rows, in, out);
    expect_close(fast, slow, 1e-4f, "linear forward");
    auto dy = to_float(random_vector(rows * out, 4));
    std::vector<float> dx1(rows * in, 0.5f), dw1(out * in, 0.25f), db1(out, 1.f), dx2 = dx1, dw2 = dw1, db2 = db1;
    ops::linear_backward(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), rows, in, out);
    ops::reference::linear_backward(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), w.data(), rows, in, out);
    expect_close(dx1, dx2, 1e-4f, "dinput");
    expect_close(dw1, dw2, 1e-4f, "dweight");
    expect_close(db1, db2, 1e-4f, "dbias");
}

TEST(Onednn, LibrariesThatDoNotLoadAreTypedErrors) {
    EXPECT_THROW(ops::load_onednn("/nonexistent/libdnnl.so.3"), IOError);
    const std::string before = ops::onednn_in_use();
    EXPECT_THROW(ops::load_onednn("/nonexistent/libdnnl.so.3"), IOError);
    EXPECT_EQ(ops::onednn_in_use(), before);  // a failed load changes nothing
}

// Every product kind that oneDNN's sgemm takes, against the scalar reference, on one thread and across threads
// (row blocks and column blocks). Runs where C3_TEST_ONEDNN names a libdnnl (scripts/test.sh passes the one that
// onednn-cpu-gomp installed); skipped elsewhere.
TEST(Onednn, EveryProductKindMatchesTheReference) {
    const char* path = std::getenv("C3_TEST_ONEDNN");
    if (!path || !*path) GTEST_SKIP() << "C3_TEST_ONEDNN names no libdnnl";
    ops::load_onednn(path);
    ASSERT_NE(ops::onednn_in_use(), "");
    const int threads_before = num_threads();
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        // 96 rows split by rows, 40 rows by columns; each above oneDNN's size threshold.
        for (size_t rows : {96, 40}) {
            const size_t in = 200, out = 264;
            ASSERT_GE(rows * in * out, ops::kOnednnMinWork);
            auto x = to_float(random_vector(rows * in, 31)), w = to_float(random_vector(out * in, 32)),
                 b = to_float(random_vector(out, 33)), dy = to_float(random_vector(rows * out, 34));
            std::vector<float> wt(in * out);
            for (size_t o = 0; o < out; ++o)
                for (size_t i = 0; i < in; ++i) wt[i * out + o] = w[o * in + i];
            std::vector<float> slow(rows * out), fast(rows * out, 7.f), fast_t(rows * out, 7.f);
            ops::reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), rows, in, out);
            ops::linear_forward(fast.data(), x.data(), w.data(), b.data(), rows, in, out);
            expect_close(fast, slow, 1e-4f, "forward, weights as stored");
            ops::matmul_pretransposed(fast_t.data(), x.data(), wt.data(), b.data(), rows, in, out);
            expect_close(fast_t, slow, 1e-4f, "forward, transposed copy, bias");
            std::vector<float> no_bias(rows * out), fast_nb(rows * out, 7.f);
            ops::reference::linear_forward(no_bias.data(), x.data(), w.data(), static_cast<const float*>(nullptr),
                                           rows, in, out);
            ops::matmul_pretransposed(fast_nb.data(), x.data(), wt.data(), static_cast<const float*>(nullptr), rows,
                                      in, out);
            expect_close(fast_nb, no_bias, 1e-4f, "forward, transposed copy, no bias (the old values ignored)");
            // Backward accumulates into what is there.
            std::vector<float> dx1(rows * in, 0.5f), dw1(out * in, 0.25f), dx2 = dx1, dw2 = dw1;
            ops::linear_backward(dx1.data(), dw1.data(), static_cast<float*>(nullptr), dy.data(), x.data(), w.data(),
                                 rows, in, out);
            ops::reference::linear_backward(dx2.data(), dw2.data(), static_cast<float*>(nullptr), dy.data(),
                                            x.data(), w.data(), rows, in, out);
            expect_close(dx1, dx2, 1e-4f, "dinput");
            expect_close(dw1, dw2, 1e-4f, "dweight");
        }
    }
    set_num_threads(threads_before);
    ops::unload_onednn();
    EXPECT_EQ(ops::onednn_in_use(), "");
}

// Loading again while another thread reads onednn_in_use: every description read names one of the loaded paths
// whole (a load publishes its function and its name together). Two names of one file: the library and a symlink.
TEST(Onednn, LoadingWhileAnotherThreadReadsTheDescription) {
    const char* path = std::getenv("C3_TEST_ONEDNN");
    if (!path || !*path) GTEST_SKIP() << "C3_TEST_ONEDNN names no libdnnl";
    const std::string link = ::testing::TempDir() + "c3_libdnnl_link.so";
    std::remove(link.c_str());
    ASSERT_EQ(symlink(path, link.c_str()), 0);
    const std::string names[2] = {path, link};
    std::atomic<bool> done{false};
    std::atomic<size_t> reads{0};
    size_t torn = 0;
    std::thread reader([&] {
        while (!done.load()) {
            const std::string seen = ops::onednn_in_use();
            ++reads;
            if (seen.empty()) continue;
            const auto names_it = [&](const std::string& name) {
                const std::string tail = " (" + name + ")";
                return seen.size() > tail.size() && seen.compare(seen.size() - tail.size(), tail.size(), tail) == 0;
            };
            const bool whole = seen.rfind("oneDNN ", 0) == 0 && (names_it(names[0]) || names_it(names[1]));
            if (!whole) ++torn;
        }
    });
    // Until the reader has read many times while loads go on (a thread may start late).
    for (size_t i = 0; i < 2000 || (reads.load() < 20000 && i < 2000000); ++i) ops::load_onednn(names[i % 2]);
    done = true;
    reader.join();
    std::remove(link.c_str());
    EXPECT_GE(reads.load(), 20000u);
    EXPECT_EQ(torn, 0u);
    ops::unload_onednn();
    EXPECT_EQ(ops::onednn_in_use(), "");
}

// 1 to 4 rows (decode steps), float and double; and the streaming kernel of small_rows.hpp on float weights.
TEST(Linear, FewRowsMatchReference) {
    for (size_t rows = 1; rows <= 4; ++rows)
        for (size_t in : {1, 15, 16, 17, 576})
            for (size_t out : {1, 31, 33, 100}) {
                const auto x = random_vector(rows * in, 11), w = random_vector(out * in, 12), b = random_vector(out, 13);
                std::vector<double> fast(rows * out), slow(rows * out);
                ops::linear_forward(fast.data(), x.data(), w.data(), b.data(), rows, in, out);
                ops::reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), rows, in, out);
                for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12) << rows << " " << in << " " << out;
                const auto xf = to_float(x), wf = to_float(w);
                std::vector<float> fast_float(rows * out), slow_float(rows * out);
                ops::linear_forward(fast_float.data(), xf.data(), wf.data(), static_cast<const float*>(nullptr), rows, in, out);
                ops::reference::linear_forward(slow_float.data(), xf.data(), wf.data(), static_cast<const float*>(nullptr), rows,
                                               in, out);
                expect_close(fast_float, slow_float, 1e-4f, "few-row forward");
                ASSERT_TRUE(ops::small_rows_forward(fast.data(), x.data(), w.data(), b.data(), rows, in, out));
                ops::reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), rows, in, out);
                for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12) << "streaming kernel";
            }
}

// A decode step's product (1 to 4 rows) hands blocks of 32 columns to whichever thread is free: the blocks do not
// depend on the thread count, nor a block's result on the thread, so every thread count gives the same bits.
TEST(Linear, FewRowsGiveTheSameBitsAtAnyThreadCount) {
    const int threads_before = num_threads();
    for (size_t rows = 1; rows <= 4; ++rows)
        for (auto [in, out] : {std::pair<size_t, size_t>{576, 1536}, {1536, 576}, {200, 1000}}) {
            const auto x = to_float(random_vector(rows * in, 180)), w = to_float(random_vector(out * in, 181));
            std::vector<float> first(rows * out);
            for (int threads : {1, 2, 3, 4}) {
                set_num_threads(threads);
                std::vector<float> y(rows * out, -1.f);
                ops::linear_forward(y.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, in, out);
                if (threads == 1) first = y;
                else EXPECT_EQ(y, first) << rows << " rows, " << in << " x " << out << ", " << threads << " threads";
            }
        }
    set_num_threads(threads_before);
}

// Shapes large enough to take the threaded block paths: split by rows, and (few rows) split by columns.
TEST(Linear, BlockedProductsMatchReference) {
    for (auto [rows, in, out] : {std::tuple<size_t, size_t, size_t>{300, 70, 90}, {3, 512, 300}, {1, 700, 333}}) {
        auto x = to_float(random_vector(rows * in, 1)), w = to_float(random_vector(out * in, 2));
        std::vector<float> fast(rows * out), slow(rows * out);
        ops::linear_forward(fast.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, in, out);
        ops::reference::linear_forward(slow.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, in, out);
        expect_close(fast, slow, 1e-3f, "blocked forward");
        auto dy = to_float(random_vector(rows * out, 4));
        std::vector<float> dx1(rows * in, 0.5f), dw1(out * in, 0.25f), dx2 = dx1, dw2 = dw1;
        ops::linear_backward(dx1.data(), dw1.data(), static_cast<float*>(nullptr), dy.data(), x.data(), w.data(), rows, in, out);
        ops::reference::linear_backward(dx2.data(), dw2.data(), static_cast<float*>(nullptr), dy.data(), x.data(), w.data(), rows, in, out);
        expect_close(dx1, dx2, 1e-3f, "blocked dinput");
        expect_close(dw1, dw2, 1e-3f, "blocked dweight");
    }
}

TEST(Linear, GradientCheck) {
    const size_t rows = 4, in = 5, out = 3;
    auto x = random_vector(rows * in, 1), w = random_vector(out * in, 2), b = random_vector(out, 3),
         weights = random_vector(rows * out, 4);
    auto loss = [&]() {
        std::vector<double> y(rows * out);
        ops::linear_forward(y.data(), x.data(), w.data(), b.data(), rows, in, out);
        return weighted_sum(y, weights);
    };
    std::vector<double> dx(rows * in, 0), dw(out * in, 0), db(out, 0);
    ops::linear_backward(dx.data(), dw.data(), db.data(), weights.data(), x.data(), w.data(), rows, in, out);
    expect_gradient(loss, x, dx, "dinput");
    expect_gradient(loss, w, dw, "dweight");
    expect_gradient(loss, b, db, "dbias");
}

TEST(RmsNorm, MatchesReferenceAndGradient) {
    const size_t rows = 6, dim = 70;
    auto x = random_vector(rows * dim, 5), w = random_vector(dim, 6), weights = random_vector(rows * dim, 7);
    std::vector<double> fast(rows * dim), slow(rows * dim), rstd(rows), rstd_ref(rows);
    ops::rmsnorm_forward(fast.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-6);
    ops::reference::rmsnorm_forward(slow.data(), rstd_ref.data(), x.data(), w.data(), rows, dim, 1e-6);
    for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12);
    auto loss = [&]() {
        std::vector<double> y(rows * dim), r(rows);
        ops::rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), rows, dim, 1e-6);
        return weighted_sum(y, weights);
    };
    std::vector<double> dx(rows * dim, 0), dw(dim, 0);
    ops::rmsnorm_backward(dx.data(), dw.data(), weights.data(), x.data(), w.data(), rstd.data(), rows, dim);
    expect_gradient(loss, x, dx, "dinput");
    expect_gradient(loss, w, dw, "dweight");
}

TEST(Rope, MatchesReferenceAndGradient) {
    const size_t rows = 5, heads = 3, head_dim = 8, width = heads * head_dim;
    std::vector<int64_t> positions = {0, 1, 7, 100, 4095};
    auto x = random_vector(rows * width, 8), weights = random_vector(rows * width, 9);
    std::vector<double> cos_table(rows * head_dim / 2), sin_table(rows * head_dim / 2);
    ops::rope_tables(cos_table.data(), sin_table.data(), positions.data(), rows, head_dim, 10000.0);
    auto fast = x, slow = x;
    ops::rope_forward(fast.data(), cos_table.data(), sin_table.data(), rows, heads, head_dim, width);
    ops::reference::rope_forward(slow.data(), positions.data(), rows, heads, head_dim, 10000.0);
    for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-9);
    auto loss = [&]() {
        auto y = x;
        ops::rope_forward(y.data(), cos_table.data(), sin_table.data(), rows, heads, head_dim, width);
        return weighted_sum(y, weights);
    };
    auto dx = weights;
    ops::rope_backward(dx.data(), cos_table.data(), sin_table.data(), rows, heads, head_dim, width);
    expect_gradient(loss, x, dx, "rope dinput");
}

TEST(Rope, FloatTablesFollowFloatAngles) {
    // Large positions: the float table must stay within float rounding of the double definition.
    std::vector<int64_t> positions = {1, 1000, 30000};
    std::vector<float> c(3 * 32), s(3 * 32);
    ops::rope_tables(c.data(), s.data(), positions.data(), 3, 64, 1e6);
    for (size_t r = 0; r < 3; ++r)
        for (size_t i = 0; i < 32; ++i) {
            const double angle = double(positions[r]) / std::pow(1e6, 2.0 * i / 64);
            EXPECT_NEAR(c[r * 32 + i], std::cos(angle), 2e-3) << r << "," << i;
        }
}

namespace {
ops::AttentionShape attention_shape(size_t batch, size_t q_len, size_t k_len, size_t heads, size_t kv_heads,
                                    size_t head_dim, size_t q_offset) {
    return {batch, q_len, k_len, heads, kv_heads, head_dim, q_offset, k_len * kv_heads * head_dim, k_len};
}
}  // namespace

TEST(Attention, MatchesReferenceWithMaskAndGqa) {
    for (size_t q_offset : {size_t(0), size_t(3)}) {
        const size_t batch = 2, k_len = 7, q_len = k_len - q_offset, heads = 4, kv_heads = 2, head_dim = 8;
        auto s = attention_shape(batch, q_len, k_len, heads, kv_heads, head_dim, q_offset);
        auto q = to_float(random_vector(batch * q_len * heads * head_dim, 10));
        auto k = to_float(random_vector(batch * k_len * kv_heads * head_dim, 11));
        auto v = to_float(random_vector(batch * k_len * kv_heads * head_dim, 12));
        std::vector<uint8_t> valid = {0, 0, 1, 1, 1, 1, 1, /* batch 1: */ 1, 1, 1, 1, 1, 0, 0};
        std::vector<float> fast(q.size()), slow(q.size()), probs(batch * heads * q_len * k_len);
        ops::attention_forward(fast.data(), probs.data(), q.data(), k.data(), v.data(), valid.data(), s);
        ops::reference::attention_forward(slow.data(), q.data(), k.data(), v.data(), valid.data(), s);
        expect_close(fast, slow, 1e-5f, "attention");
    }
}

TEST(Attention, QueryWithNoVisibleKeyGivesZeros) {
    auto s = attention_shape(1, 2, 2, 1, 1, 4, 0);
    std::vector<float> q(8, 1.f), k(8, 1.f), v(8, 3.f), out(8, -1.f), probs(4);
    std::vector<uint8_t> valid = {0, 1};
    ops::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), valid.data(), s);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(out[i], 0.f);
    for (size_t i = 4; i < 8; ++i) EXPECT_FLOAT_EQ(out[i], 3.f);
}

TEST(Attention, GradientCheck) {
    const size_t batch = 2, len = 5, heads = 4, kv_heads = 2, head_dim = 4;
    auto s = attention_shape(batch, len, len, heads, kv_heads, head_dim, 0);
    auto q = random_vector(batch * len * heads * head_dim, 13), k = random_vector(batch * len * kv_heads * head_dim, 14),
         v = random_vector(batch * len * kv_heads * head_dim, 15), weights = random_vector(q.size(), 16);
    std::vector<uint8_t> valid = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
    std::vector<double> probs(batch * heads * len * len);
    auto loss = [&]() {
        std::vector<double> out(q.size()), p(probs.size());
        ops::attention_forward(out.data(), p.data(), q.data(), k.data(), v.data(), valid.data(), s);
        return weighted_sum(out, weights);
    };
    std::vector<double> out(q.size());
    ops::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), valid.data(), s);
    std::vector<double> dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0);
    ops::attention_backward(dq.data(), dk.data(), dv.data(), weights.data(), probs.data(), q.data(), k.data(), v.data(), s);
    expect_gradient(loss, q, dq, "dq");
    expect_gradient(loss, k, dk, "dk");
    expect_gradient(loss, v, dv, "dv");
}

TEST(SwiGlu, MatchesReferenceAndGradient) {
    const size_t rows = 3, width = 11;
    auto gate = random_vector(rows * width, 17, 3.0), up = random_vector(rows * width, 18),
         weights = random_vector(rows * width, 19);
    std::vector<double> fast(rows * width), slow(rows * width);
    ops::swiglu_forward(fast.data(), gate.data(), up.data(), rows, width);
    ops::reference::swiglu_forward(slow.data(), gate.data(), up.data(), rows * width);
    for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12);
    auto loss = [&]() {
        std::vector<double> y(rows * width);
        ops::swiglu_forward(y.data(), gate.data(), up.data(), rows, width);
        return weighted_sum(y, weights);
    };
    std::vector<double> dgate(rows * width, 0), dup(rows * width, 0);
    ops::swiglu_backward(dgate.data(), dup.data(), weights.data(), gate.data(), up.data(), rows, width);
    expect_gradient(loss, gate, dgate, "dgate");
    expect_gradient(loss, up, dup, "dup");
}

TEST(Embedding, ForwardBackwardAndBounds) {
    const size_t vocab = 6, dim = 3;
    auto table = random_vector(vocab * dim, 20);
    std::vector<int32_t> ids = {2, 5, 2};
    std::vector<double> out(ids.size() * dim), dtable(vocab * dim, 0), dout(ids.size() * dim, 1.0);
    ops::embedding_forward(out.data(), ids.data(), table.data(), ids.size(), vocab, dim);
    for (size_t d = 0; d < dim; ++d) EXPECT_EQ(out[dim + d], table[5 * dim + d]);
    ops::embedding_backward(dtable.data(), dout.data(), ids.data(), ids.size(), dim);
    EXPECT_EQ(dtable[2 * dim], 2.0);
    EXPECT_EQ(dtable[5 * dim], 1.0);
    EXPECT_EQ(dtable[0], 0.0);
    std::vector<int32_t> bad = {6};
    EXPECT_THROW(ops::embedding_forward(out.data(), bad.data(), table.data(), 1, vocab, dim), ValueError);
}

TEST(CrossEntropy, GradientCheckWithIgnoreIndex) {
    const size_t rows = 4, vocab = 7;
    auto logits = random_vector(rows * vocab, 21, 2.0);
    std::vector<int32_t> targets = {3, ops::kIgnoreIndex, 0, 6};
    auto loss = [&]() {
        std::vector<double> losses(rows);
        const size_t counted = ops::cross_entropy_forward(losses.data(), logits.data(), targets.data(), rows, vocab);
        double total = 0;
        for (double l : losses) total += l;
        return total / counted;
    };
    std::vector<double> dlogits(rows * vocab, 0), row_weights(rows, 1.0 / 3);
    ops::cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), row_weights.data(), rows, vocab);
    for (size_t i = vocab; i < 2 * vocab; ++i) EXPECT_EQ(dlogits[i], 0.0);
    expect_gradient(loss, logits, dlogits, "dlogits");
    std::vector<int32_t> bad = {7, 0, 0, 0};
    std::vector<double> losses(rows);
    EXPECT_THROW(ops::cross_entropy_forward(losses.data(), logits.data(), bad.data(), rows, vocab), ValueError);
}

TEST(VectorMath, ExpFastAgreesWithStdExp) {
    // Relative error below 3e-7 (about 2 ulp) over the whole useful range, exact 0 and inf past it.
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        const double expected = std::exp(double(x));
        ASSERT_NEAR(ops::exp_fast(x) / expected, 1.0, 3e-7) << x;
    }
    EXPECT_EQ(ops::exp_fast(-100.0f), 0.0f);
    EXPECT_EQ(ops::exp_fast(-std::numeric_limits<float>::infinity()), 0.0f);
    EXPECT_TRUE(std::isinf(ops::exp_fast(100.0f)));
    EXPECT_EQ(ops::exp_fast(0.0f), 1.0f);
    EXPECT_TRUE(std::isnan(ops::exp_fast(std::numeric_limits<float>::quiet_NaN())));
}

// The lane reductions against plain double loops, at every tail length. NaN sits right after the data, so a
// tail that read past the count would show. Float runs both the AVX-512 overloads (when compiled for them) and
// the portable Eigen twins (explicit template arguments select the template); the data at an odd offset must
// give bit-identical results, as the order of operations depends on the count alone.
template <typename T, bool Twin>
void check_lane_reductions() {
    for (size_t count : {0, 1, 5, 15, 16, 17, 31, 32, 33, 47, 64, 100, 1000}) {
        for (size_t offset : {0, 1}) {
            const auto a_values = random_vector(count, 100 + count, 2.0), b_values = random_vector(count, 200 + count);
            const auto c_values = random_vector(count, 300 + count);
            std::vector<T> buffer(offset + 3 * count + 3, std::numeric_limits<T>::quiet_NaN());
            T* a = buffer.data() + offset;
            T* b = a + count + 1;
            T* c = b + count + 1;
            for (size_t i = 0; i < count; ++i) a[i] = T(a_values[i]), b[i] = T(b_values[i]), c[i] = T(c_values[i]);
            double sum = 0, dot = 0, dot3 = 0, squares = 0, exps = 0, scale = 0, max_value = -INFINITY;
            for (size_t i = 0; i < count; ++i) {
                sum += a[i], dot += double(a[i]) * b[i], dot3 += double(a[i]) * b[i] * c[i];
                squares += double(a[i]) * a[i], max_value = std::max(max_value, double(a[i]));
                scale += std::fabs(a[i]) * (1 + std::fabs(b[i]) * (1 + std::fabs(c[i]))) + double(a[i]) * a[i];
            }
            for (size_t i = 0; i < count; ++i) exps += std::exp(double(a[i]) - 1.0);
            const double tolerance = 1e-6 * scale + 1e-12;
            T got_sum, got_dot, got_dot3, got_max, got_exps;
            double got_squares;
            if constexpr (Twin) {
                got_sum = ops::lane_sum<T>(a, count), got_dot = ops::lane_dot<T>(a, b, count);
                got_dot3 = ops::lane_dot<T>(a, b, c, count), got_max = ops::lane_max<T>(a, count);
                got_squares = ops::lane_sum_of_squares<T>(a, count);
            } else {
                got_sum = ops::lane_sum(a, count), got_dot = ops::lane_dot(a, b, count);
                got_dot3 = ops::lane_dot(a, b, c, count), got_max = ops::lane_max(a, count);
                got_squares = ops::lane_sum_of_squares(a, count);
            }
            got_exps = ops::exp_shifted_sum(a, count, T(1));
            EXPECT_NEAR(got_sum, sum, tolerance) << count;
            EXPECT_NEAR(got_dot, dot, tolerance) << count;
            EXPECT_NEAR(got_dot3, dot3, tolerance) << count;
            EXPECT_NEAR(got_squares, squares, tolerance) << count;
            EXPECT_NEAR(got_exps, exps, 1e-6 * exps + 1e-12) << count;
            EXPECT_EQ(double(got_max), max_value) << count;  // exact, and -infinity when empty
            if (offset == 0) continue;
            // Same values at offset 0 (a fresh copy): identical bits.
            std::vector<T> aligned(a, a + count);
            if constexpr (Twin) EXPECT_EQ(ops::lane_sum<T>(aligned.data(), count), got_sum);
            else EXPECT_EQ(ops::lane_sum(aligned.data(), count), got_sum);
        }
    }
}

TEST(VectorMath, LaneReductionsMatchDoubleLoops) {
    check_lane_reductions<float, false>();
    check_lane_reductions<float, true>();
    check_lane_reductions<double, false>();
}

#if defined(C3_BROADCAST_GEMM)
namespace {
// The in-place product (AVX-512 or AVX2) against its double twin: every row tail (past the 6- and 12-row tiles),
// column tails around the half tiles and tiles (8, 16, 32), depths across the depth blocks (256 or 512 with a
// 32 KiB L1d), and A read both ways. C's padding columns hold NaN: a store past N would show there, and a load of
// them would turn a result into NaN. Returns the number of products checked.
size_t expect_broadcast_gemm_matches_twin() {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    size_t checked = 0;
    for (size_t M : {1, 5, 6, 7, 12, 13, 23, 24, 131})
        for (size_t N : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 70})
            for (size_t K : {1, 7, 256, 300, 520})
                for (bool transposed : {false, true}) {
                    const size_t ldc = N + 3, ldb = N + 1;
                    const auto a = to_float(random_vector(M * K, 21)), b = to_float(random_vector(K * ldb, 22));
                    std::vector<float> c(M * ldc, nan);
                    const auto start = to_float(random_vector(M * N, 23));
                    for (size_t i = 0; i < M; ++i)
                        for (size_t j = 0; j < N; ++j) c[i * ldc + j] = start[i * N + j];
                    std::vector<double> expected(c.begin(), c.end());
                    // A [M, K] row-major, or the transpose of a [K, M] matrix (dy^T of a weight gradient).
                    const size_t a_row = transposed ? 1 : K, a_column = transposed ? M : 1;
                    ops::broadcast_gemm(c.data(), ldc, a.data(), a_row, a_column, b.data(), ldb, M, N, K);
                    const auto ad = std::vector<double>(a.begin(), a.end()), bd = std::vector<double>(b.begin(), b.end());
                    ops::reference::broadcast_gemm(expected.data(), ldc, ad.data(), a_row, a_column, bd.data(), ldb, M,
                                                   N, K);
                    for (size_t i = 0; i < M; ++i) {
                        for (size_t j = 0; j < N; ++j) {
                            EXPECT_NEAR(c[i * ldc + j], expected[i * ldc + j], 2e-5 * std::sqrt(double(K)) + 1e-6)
                                << M << "x" << N << "x" << K << " transposed " << transposed << " at " << i << "," << j;
                            if (::testing::Test::HasFailure()) return checked;
                        }
                        for (size_t j = N; j < ldc; ++j)
                            if (!std::isnan(c[i * ldc + j])) {
                                ADD_FAILURE() << "store past N";
                                return checked;
                            }
                    }
                    ++checked;
                }
    return checked;
}
}  // namespace
#endif

TEST(BroadcastGemm, MatchesDoubleTwinAtEveryTail) {
    if constexpr (!ops::kBroadcastGemm) GTEST_SKIP() << "compiled without AVX-512F or AVX2: the products use Eigen";
#if defined(C3_BROADCAST_GEMM)
    EXPECT_EQ(expect_broadcast_gemm_matches_twin(), 9u * 11u * 5u * 2u);
#endif
}

// y = x wt + b with the weight stored transposed: the broadcast_gemm path (float) and the Eigen path (double),
// each against the reference linear layer on the untransposed weight.
TEST(Linear, PretransposedMatchesReference) {
    for (auto [rows, in, out] : {std::tuple<size_t, size_t, size_t>{37, 53, 29}, {300, 70, 90}, {2, 33, 1100}}) {
        const auto x = random_vector(rows * in, 31), w = random_vector(out * in, 32), b = random_vector(out, 33);
        std::vector<double> wt(in * out);
        for (size_t o = 0; o < out; ++o)
            for (size_t i = 0; i < in; ++i) wt[i * out + o] = w[o * in + i];
        std::vector<double> fast(rows * out, 7.0), slow(rows * out);  // 7: the output is overwritten
        ops::matmul_pretransposed(fast.data(), x.data(), wt.data(), b.data(), rows, in, out);
        ops::reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), rows, in, out);
        for (size_t i = 0; i < fast.size(); ++i) ASSERT_NEAR(fast[i], slow[i], 1e-12) << "double";
        const auto xf = to_float(x), wtf = to_float(wt), wf = to_float(w);
        std::vector<float> fast_float(rows * out, 7.0f), slow_float(rows * out);
        ops::matmul_pretransposed(fast_float.data(), xf.data(), wtf.data(), static_cast<const float*>(nullptr), rows,
                                  in, out);
        ops::reference::linear_forward(slow_float.data(), xf.data(), wf.data(), static_cast<const float*>(nullptr),
                                       rows, in, out);
        expect_close(fast_float, slow_float, 1e-4f, "float, no bias");
    }
}

TEST(CrossEntropy, FusedEqualsSeparateLossAndGradient) {
    const size_t rows = 5, vocab = 301;
    auto logits = to_float(random_vector(rows * vocab, 31, 3.0));
    std::vector<int32_t> targets = {0, 300, ops::kIgnoreIndex, 17, 150};
    std::vector<float> weights(rows, 0.25f), losses(rows), fused_losses(rows), gradient(rows * vocab, 0.f);
    ops::cross_entropy_forward(losses.data(), logits.data(), targets.data(), rows, vocab);
    ops::cross_entropy_backward(gradient.data(), logits.data(), targets.data(), weights.data(), rows, vocab);
    auto fused = logits;
    EXPECT_EQ(ops::cross_entropy_loss_and_gradient_in_place(fused_losses.data(), fused.data(), targets.data(),
                                                           weights.data(), rows, vocab), 4u);
    expect_close(fused_losses, losses, 1e-5f, "fused losses");
    expect_close(fused, gradient, 1e-7f, "fused gradient");
}

TEST(Attention, LongSequencesAcrossQueryBlocks) {
    // More queries than one block (64), with a cache offset and padding: blocks must see exactly their keys.
    // Blocks of 64, 64 and 22, and of 64, 64 and 12.
    for (auto [q_offset, q_len] : {std::pair<size_t, size_t>{0, 150}, {37, 150}, {0, 140}, {37, 140}}) {
        const size_t batch = 2, k_len = q_len + q_offset, heads = 2, kv_heads = 1, head_dim = 8;
        auto s = attention_shape(batch, q_len, k_len, heads, kv_heads, head_dim, q_offset);
        auto q = to_float(random_vector(batch * q_len * heads * head_dim, 40));
        auto k = to_float(random_vector(batch * k_len * kv_heads * head_dim, 41));
        auto v = to_float(random_vector(batch * k_len * kv_heads * head_dim, 42));
        std::vector<uint8_t> valid(batch * k_len, 1);
        for (size_t j = 0; j < 10; ++j) valid[k_len + j] = 0;  // batch 1 left-padded
        std::vector<float> fast(q.size()), slow(q.size()), probs(batch * heads * q_len * k_len);
        ops::attention_forward(fast.data(), probs.data(), q.data(), k.data(), v.data(), valid.data(), s);
        ops::reference::attention_forward(slow.data(), q.data(), k.data(), v.data(), valid.data(), s);
        expect_close(fast, slow, 1e-5f, "blocked attention");
    }
}

TEST(Attention, GradientCheckAcrossQueryBlocks) {
    // Blocks of 64 and 26, and of 64 and a short 6.
    for (size_t len : {size_t(90), size_t(70)}) {
        const size_t batch = 1, heads = 2, kv_heads = 1, head_dim = 4;
        auto s = attention_shape(batch, len, len, heads, kv_heads, head_dim, 0);
        auto q = random_vector(batch * len * heads * head_dim, 43), k = random_vector(batch * len * kv_heads * head_dim, 44),
             v = random_vector(batch * len * kv_heads * head_dim, 45), weights = random_vector(q.size(), 46);
        std::vector<double> probs(batch * heads * len * len), out(q.size());
        auto loss = [&]() {
            std::vector<double> o(q.size()), p(probs.size());
            ops::attention_forward(o.data(), p.data(), q.data(), k.data(), v.data(), static_cast<const uint8_t*>(nullptr), s);
            return weighted_sum(o, weights);
        };
        ops::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), static_cast<const uint8_t*>(nullptr), s);
        std::vector<double> dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0);
        ops::attention_backward(dq.data(), dk.data(), dv.data(), weights.data(), probs.data(), q.data(), k.data(), v.data(), s);
        expect_gradient(loss, q, dq, "dq", 30);
        expect_gradient(loss, k, dk, "dk", 30);
        expect_gradient(loss, v, dv, "dv", 30);
    }
}

#include "c3/core/float16.hpp"
#include "c3/ops/linear_bf16.hpp"

TEST(LinearBf16, SmallAndLargeRowPathsMatchReferenceOnRoundedWeights) {
    for (size_t rows : {size_t(1), size_t(2), size_t(3), size_t(8), size_t(40)}) {
        const size_t in = 83, out = 70;  // not multiples of 16: the tails count too
        auto x = to_float(random_vector(rows * in, 50)), w = to_float(random_vector(out * in, 51)),
             b = to_float(random_vector(out, 52));
        std::vector<uint16_t> w16(w.size());
        for (size_t i = 0; i < w.size(); ++i) w16[i] = float_to_bf16(w[i]), w[i] = bf16_to_float(w16[i]);
        std::vector<float> fast(rows * out), slow(rows * out);
        ops::linear_forward_bf16(fast.data(), x.data(), w16.data(), b.data(), rows, in, out);
        ops::reference::linear_forward(slow.data(), x.data(), w.data(), b.data(), rows, in, out);
        expect_close(fast, slow, 1e-4f, "bf16 linear");
    }
}

#include "c3/ops/matmul_bf16.hpp"

namespace {
// Seeded data for one shape: float inputs, bf16 weights (bits), bias.
struct Bf16ComputeCase {
    std::vector<float> x, bias;
    std::vector<uint16_t> w;
    Bf16ComputeCase(size_t rows, size_t in, size_t out, uint64_t seed)
        : x(to_float(random_vector(rows * in, seed))), bias(to_float(random_vector(out, seed + 1))), w(out * in) {
        const auto values = random_vector(out * in, seed + 2);
        for (size_t i = 0; i < w.size(); ++i) w[i] = float_to_bf16(float(values[i]));
    }
};

// |fast - reference| <= 1e-5 (sum |products| + |bias|): sums in another order, in float. The scale comes from the
// portable path on |x| and |w| (no bias), so a broken fast kernel cannot loosen its own tolerance.
template <typename T>
void expect_bf16_compute_close(const std::vector<T>& fast, const std::vector<T>& slow, const std::vector<T>& x,
                               const std::vector<uint16_t>& w, const T* bias, size_t rows, size_t in, size_t out,
                               const std::string& what) {
    std::vector<T> abs_x(x.size()), scale(rows * out);
    std::vector<uint16_t> abs_w(w.size());
    for (size_t i = 0; i < x.size(); ++i) abs_x[i] = std::fabs(x[i]);
    for (size_t i = 0; i < w.size(); ++i) abs_w[i] = uint16_t(w[i] & 0x7fffu);
    ops::detail::linear_bf16_compute_portable(scale.data(), abs_x.data(), abs_w.data(), static_cast<const T*>(nullptr),
                                              rows, in, out);
    for (size_t r = 0; r < rows; ++r)
        for (size_t o = 0; o < out; ++o) {
            const double tolerance = 1e-5 * (double(scale[r * out + o]) + (bias ? std::fabs(double(bias[o])) : 0.0));
            ASSERT_NEAR(double(fast[r * out + o]), double(slow[r * out + o]), tolerance)
                << what << " at row " << r << ", column " << o;
        }
}

const size_t kBf16Rows[] = {1, 5, 8, 17, 64, 130, 300};   // 8-row micro-kernel, its tails, thread row splits
const size_t kBf16In[] = {2, 7, 31, 64, 96, 577};          // odd in (a padded pair), 577: two packed k blocks
const size_t kBf16Out[] = {1, 15, 16, 33, 48, 200, 1000};  // partial panels, 1..3 panels, several column blocks
}  // namespace

// Every shape against the scalar twin; the bias alternates, so each (in, out) pair is checked with and without.
template <size_t R, size_t I, size_t O>
void expect_bf16_compute_matches_twin(const size_t (&row_counts)[R], const size_t (&in_sizes)[I],
                                      const size_t (&out_sizes)[O]) {
    size_t index = 0;
    for (size_t rows : row_counts)
        for (size_t in : in_sizes)
            for (size_t out : out_sizes) {
                const Bf16ComputeCase c(rows, in, out, 60 + index);
                const float* bias = index++ % 2 ? c.bias.data() : nullptr;
                std::vector<float> fast(rows * out, -1.f), slow(rows * out);
                ops::linear_forward_bf16_compute(fast.data(), c.x.data(), c.w.data(), bias, rows, in, out);
                ops::reference::linear_forward_bf16_compute(slow.data(), c.x.data(), c.w.data(), bias, rows, in, out);
                expect_bf16_compute_close(fast, slow, c.x, c.w, bias, rows, in, out,
                                          "rows " + std::to_string(rows) + ", in " + std::to_string(in) + ", out " +
                                              std::to_string(out) + (bias ? ", bias" : ""));
                if (::testing::Test::HasFailure()) return;
            }
}

TEST(LinearBf16Compute, FastKernelMatchesReferenceOverShapes) {
    if (!ops::bf16_dot_product_available) GTEST_SKIP() << "compiled without AVX512-BF16: only the fallback is tested";
    expect_bf16_compute_matches_twin(kBf16Rows, kBf16In, kBf16Out);
}

// Each output sums in the same order whatever the partition: bit-identical results across thread counts.
TEST(LinearBf16Compute, ThreadCountDoesNotChangeResults) {
    if (!ops::bf16_dot_product_available) GTEST_SKIP() << "compiled without AVX512-BF16: only the fallback is tested";
    const int saved = num_threads();
    for (auto [rows, in, out] : {std::tuple<size_t, size_t, size_t>{300, 96, 48}, {130, 577, 1000}, {3, 64, 700}}) {
        const Bf16ComputeCase c(rows, in, out, 90);
        std::vector<float> first(rows * out);
        for (int threads : {1, 2, 3, 4}) {
            set_num_threads(threads);
            std::vector<float> result(rows * out);
            ops::linear_forward_bf16_compute(result.data(), c.x.data(), c.w.data(), c.bias.data(), rows, in, out);
            if (threads == 1) first = result;
            else EXPECT_EQ(result, first) << threads << " threads, rows " << rows << ", out " << out;
        }
    }
    set_num_threads(saved);
}

// Mixed-precision training's input gradient, dinput [rows, in] += bf16(dout) [rows, out] * W [out, in], read from
// W's bf16 copy transposed [in, out]: the fast kernel and the portable fallback (both accumulating) against the
// scalar twin added to what dinput held, over the shapes of the 8-row kernel's tails, a padded pair and two k blocks.
TEST(LinearBf16Compute, InputGradientAccumulatesFromTheTransposedCopy) {
    for (auto [rows, in, out] : {std::tuple<size_t, size_t, size_t>{17, 48, 33}, {64, 200, 577}, {5, 1000, 31}}) {
        const Bf16ComputeCase c(rows, out, in, 120);  // c.x: dout [rows, out]; c.w: W^T [in, out]
        const std::vector<float> before = to_float(random_vector(rows * in, 121));
        std::vector<float> product(rows * in);
        ops::reference::linear_forward_bf16_compute(product.data(), c.x.data(), c.w.data(),
                                                    static_cast<const float*>(nullptr), rows, out, in);
        std::vector<float> fast = before, portable = before;
        ops::linear_backward_input_bf16(fast.data(), c.x.data(), c.w.data(), rows, in, out);
        ops::detail::linear_bf16_compute_portable(portable.data(), c.x.data(), c.w.data(),
                                                  static_cast<const float*>(nullptr), rows, out, in, true);
        // What each added (the subtraction is exact to float rounding, far below the tolerance's scale).
        for (size_t i = 0; i < fast.size(); ++i) fast[i] -= before[i], portable[i] -= before[i];
        const std::string shape = "rows " + std::to_string(rows) + ", in " + std::to_string(in);
        const float* none = nullptr;
        if (ops::bf16_dot_product_available)
            expect_bf16_compute_close(fast, product, c.x, c.w, none, rows, out, in, "fast, " + shape);
        expect_bf16_compute_close(portable, product, c.x, c.w, none, rows, out, in, "portable, " + shape);
    }
}

// The input really is rounded to bf16 (7 mantissa bits, ties to even) in all three implementations: with an
// identity weight, output [r, o] = bf16(x [r, o]) exactly. 64 columns also take the vector rounding loop.
TEST(LinearBf16Compute, InputIsRoundedToBf16TiesToEven) {
    const size_t rows = 3, n = 64;
    std::vector<float> x(rows * n), expected(rows * n);
    for (size_t r = 0; r < rows; ++r)
        for (size_t j = 0; j < n; ++j) {
            // 1 + j 2^-10 (j = 1: 1 + 2^-10, j = 4: a tie), negated on row 1, scaled by 2^40 on row 2
            const float sign = r == 1 ? -1.f : 1.f, scale = r == 2 ? std::ldexp(1.f, 40) : 1.f;
            x[r * n + j] = sign * scale * (1.f + std::ldexp(float(j), -10));
            expected[r * n + j] = sign * scale * (1.f + std::ldexp(std::nearbyint(float(j) / 8), -7));
        }
    std::vector<uint16_t> identity(n * n, 0);
    for (size_t j = 0; j < n; ++j) identity[j * n + j] = float_to_bf16(1.f);
    EXPECT_EQ(expected[1], 1.f) << "1 + 2^-10 rounds down";
    EXPECT_EQ(expected[4], 1.f) << "1 + 2^-8 is a tie, to even";
    EXPECT_EQ(expected[12], 1.f + std::ldexp(1.f, -6)) << "1 + 3 2^-8 is a tie, to even";
    std::vector<float> fast(rows * n), portable(rows * n), twin(rows * n);
    ops::detail::linear_bf16_compute_portable(portable.data(), x.data(), identity.data(), static_cast<const float*>(nullptr), rows, n, n);
    ops::reference::linear_forward_bf16_compute(twin.data(), x.data(), identity.data(), static_cast<const float*>(nullptr), rows, n, n);
    EXPECT_EQ(portable, expected);
    EXPECT_EQ(twin, expected);
    if (!ops::bf16_dot_product_available) GTEST_SKIP() << "compiled without AVX512-BF16: only the fallback is tested";
    ops::linear_forward_bf16_compute(fast.data(), x.data(), identity.data(), static_cast<const float*>(nullptr), rows, n, n);
    EXPECT_EQ(fast, expected);
    // One column: in = 1, a pair padded with zero.
    const float one_plus = 1.f + std::ldexp(1.f, -10);
    const uint16_t one = float_to_bf16(1.f);
    float y = 0;
    ops::linear_forward_bf16_compute(&y, &one_plus, &one, static_cast<const float*>(nullptr), 1, 1, 1);
    EXPECT_EQ(y, 1.f);
}

// The portable path (the only one without AVX512-BF16, and the one for double) against the same twin.
TEST(LinearBf16Compute, FallbackMatchesReference) {
    size_t index = 0;
    for (size_t rows : {size_t(1), size_t(5), size_t(17), size_t(130)})
        for (size_t in : {size_t(7), size_t(64), size_t(577)})
            for (size_t out : {size_t(1), size_t(33), size_t(200)}) {
                const Bf16ComputeCase c(rows, in, out, 120 + index);
                const bool with_bias = index++ % 2;
                const std::string what = "rows " + std::to_string(rows) + ", in " + std::to_string(in) + ", out " +
                                         std::to_string(out) + (with_bias ? ", bias" : "");
                const float* bias = with_bias ? c.bias.data() : nullptr;
                std::vector<float> fast(rows * out), slow(rows * out);
                ops::detail::linear_bf16_compute_portable(fast.data(), c.x.data(), c.w.data(), bias, rows, in, out);
                ops::reference::linear_forward_bf16_compute(slow.data(), c.x.data(), c.w.data(), bias, rows, in, out);
                expect_bf16_compute_close(fast, slow, c.x, c.w, bias, rows, in, out, "float fallback, " + what);

                const std::vector<double> xd(c.x.begin(), c.x.end()), bd(c.bias.begin(), c.bias.end());
                const double* bias_d = with_bias ? bd.data() : nullptr;
                std::vector<double> fast_d(rows * out), slow_d(rows * out);
                ops::linear_forward_bf16_compute(fast_d.data(), xd.data(), c.w.data(), bias_d, rows, in, out);
                ops::reference::linear_forward_bf16_compute(slow_d.data(), xd.data(), c.w.data(), bias_d, rows, in, out);
                expect_bf16_compute_close(fast_d, slow_d, xd, c.w, bias_d, rows, in, out, "double, " + what);
            }
}

// The cache blocking comes from the sizes the CPU reports; forced sizes stand in for other CPUs. A tiny L1d and L2
// give the smallest blocks (every depth split, several column blocks, outputs wider than 64 sent to Eigen), huge
// ones a single block; the kernels must match their twins either way.
TEST(CacheBlocking, KernelsMatchTwinsAtForcedCacheSizes) {
    const CacheSizes detected = cpu_info().cache;
    ASSERT_GT(detected.l1d, 0u);
    ASSERT_GE(detected.l2, detected.l1d);
    for (const CacheSizes forced : {CacheSizes{4 << 10, 64 << 10, 64 << 10}, CacheSizes{1 << 20, 64 << 20, 256 << 20}}) {
        SCOPED_TRACE("L1d " + std::to_string(forced.l1d) + ", L2 " + std::to_string(forced.l2));
        set_cache_sizes(forced);
        ASSERT_EQ(cpu_info().cache.l1d, forced.l1d);
#if defined(C3_BROADCAST_GEMM)
        const bool small = forced.l1d < detected.l1d;
        // 128: the floor; else 1 MiB over a tile row of B (128 B with AVX-512, 64 B with AVX2)
        const size_t row_bytes = ops::detail::kGemmColumns * sizeof(float);
        EXPECT_EQ(ops::gemm_depth_block(70), small ? 128u : (1u << 20) / row_bytes);
        EXPECT_EQ(ops::gemm_max_columns(), small ? 64u : 65536u);
        EXPECT_EQ(ops::broadcast_gemm_max_columns(), ops::gemm_max_columns());
        EXPECT_EQ(expect_broadcast_gemm_matches_twin(), 9u * 11u * 5u * 2u);
#endif
#if defined(__AVX512BF16__) && defined(__AVX512F__)
        EXPECT_EQ(ops::detail::bf16dot::block_pairs(), small ? 32u : 5456u);
        // 577: 10 depth blocks when small; 1000: 11 column blocks when small, 2 when large.
        const size_t rows[] = {5, 130}, in[] = {7, 577}, out[] = {15, 200, 1000};
        expect_bf16_compute_matches_twin(rows, in, out);
#endif
    }
    set_cache_sizes(detected);
    EXPECT_EQ(cpu_info().cache.l1d, detected.l1d);
}

TEST(CacheBlocking, OverrideTextSetsSizesAndRejectsNonsense) {
    const CacheSizes sizes = detail::apply_cache_override({32 << 10, 1 << 20, 32 << 20}, "l2=2M,l1d=48K");
    EXPECT_EQ(sizes.l1d, 48u << 10);
    EXPECT_EQ(sizes.l2, 2u << 20);
    EXPECT_EQ(sizes.l3, 32u << 20);
    EXPECT_EQ(detail::parse_size("1024K\n"), 1u << 20);
    for (const char* bad : {"l1d", "l1d=", "l1d=abc", "l4=1M", "l2=1Q", "l1d=0"})
        EXPECT_THROW(detail::apply_cache_override({}, bad), ConfigError) << bad;
}
