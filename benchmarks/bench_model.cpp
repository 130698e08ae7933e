// Google Benchmark: kernels, the forward pass, a training step and KV-cache decoding.
// Run: build/bench/benchmarks/bench_model --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "c3/model/generate.hpp"
#include "c3/ops/attention.hpp"
#include "c3/core/float16.hpp"
#include "c3/ops/linear.hpp"
#include "c3/ops/matmul_bf16.hpp"
#include "c3/ops/rmsnorm.hpp"
#include "c3/train/trainer.hpp"

using namespace c3;

namespace {
std::vector<float> random_floats(size_t count, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> values(count);
    for (auto& v : values) v = float(rng.normal());
    return values;
}

TransformerConfig byte_config(size_t hidden, size_t layers) {
    TransformerConfig c;
    c.model_type = "llama";
    c.attention_bias = false;
    c.vocab_size = 256;
    c.hidden_size = hidden;
    c.intermediate_size = hidden * 11 / 4;
    c.num_layers = layers;
    c.num_heads = hidden / 16;
    c.num_kv_heads = hidden / 32;
    c.head_dim = 16;
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 1024;
    return c;
}
}  // namespace

static void BM_Linear(benchmark::State& state) {
    const size_t rows = size_t(state.range(0)), in = size_t(state.range(1)), out = size_t(state.range(2));
    auto x = random_floats(rows * in, 1), w = random_floats(out * in, 2);
    std::vector<float> y(rows * out);
    for (auto _ : state) ops::linear_forward(y.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, in, out);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * in * out * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Linear)->Args({1024, 64, 64})->Args({1024, 256, 256})->Args({1024, 1024, 1024})->Args({1, 576, 1536});

// One thread, C [M, N] += A [M, K] * B [K, N] on the backward products' shapes: Eigen (packed panels, mode 0)
// against broadcast_gemm (in place, mode 1), A row-major. The ratio of the two is the kernel's gain.
static void BM_Gemm(benchmark::State& state) {
    const size_t M = size_t(state.range(0)), N = size_t(state.range(1)), K = size_t(state.range(2));
    const auto a = random_floats(M * K, 1), b = random_floats(K * N, 2);
    std::vector<float> c(M * N);
    const int threads = num_threads();
    set_num_threads(1);
    for (auto _ : state) {
        if (state.range(3) == 0)
            MatrixMap<float>(c.data(), M, N).noalias() += ConstMatrixMap<float>(a.data(), M, K) * ConstMatrixMap<float>(b.data(), K, N);
#if defined(C3_BROADCAST_GEMM)
        else
            ops::broadcast_gemm(c.data(), N, a.data(), K, 1, b.data(), N, M, N, K);
#endif
    }
    set_num_threads(threads);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Gemm)->ArgsProduct({{128}, {128}, {128, 512}, {0, ops::kBroadcastGemm ? 1 : 0}})
    ->ArgsProduct({{128}, {352}, {128}, {0, ops::kBroadcastGemm ? 1 : 0}})
    ->ArgsProduct({{512}, {256}, {704}, {0, ops::kBroadcastGemm ? 1 : 0}})
    ->ArgsProduct({{128}, {704}, {256}, {0, ops::kBroadcastGemm ? 1 : 0}})
    ->ArgsProduct({{1024}, {1024}, {1024}, {0, ops::kBroadcastGemm ? 1 : 0}});

#if defined(C3_BROADCAST_GEMM)
// One thread's float FMA ceiling (no OpenMP inside): 12 independent accumulator chains of the GEMM kernel's vector width, enough to
// hide the FMA latency on the CPUs seen (4 cycles, 2 per cycle). BM_Gemm's rates are stated as fractions of it.
static void BM_FmaPeak(benchmark::State& state) {
    using ops::detail::GemmLanes;
    constexpr size_t chains = 12, rounds = 4096, lanes = sizeof(GemmLanes) / sizeof(float);
    // Values the compiler cannot see: with a known factor of 1 it turns each FMA into an addition.
    float one = 1.0f, tiny = 1e-7f;
    benchmark::DoNotOptimize(one);
    benchmark::DoNotOptimize(tiny);
    for (auto _ : state) {
        GemmLanes sum[chains];
        const GemmLanes a = ops::detail::gemm_broadcast(&one), b = ops::detail::gemm_broadcast(&tiny);
        // Distinct starting values: identical chains would be merged into one.
        for (size_t i = 0; i < chains; ++i) {
            float start = float(i);
            benchmark::DoNotOptimize(start);
            sum[i] = ops::detail::gemm_broadcast(&start);
        }
        for (size_t r = 0; r < rounds; ++r)
#pragma GCC unroll 12
            for (size_t i = 0; i < chains; ++i) sum[i] = ops::detail::gemm_fma(a, b, sum[i]);
        for (size_t i = 0; i < chains; ++i) benchmark::DoNotOptimize(sum[i]);
    }
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * chains * rounds * lanes * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FmaPeak);
#endif

// bf16 weights (SmolLM2-135M prefill shapes): bf16 compute (vdpbf16ps) against widening to float.
static std::vector<uint16_t> random_bf16(size_t count, uint64_t seed) {
    const auto values = random_floats(count, seed);
    std::vector<uint16_t> bits(count);
    for (size_t i = 0; i < count; ++i) bits[i] = float_to_bf16(values[i]);
    return bits;
}
template <bool Compute>
static void linear_bf16_benchmark(benchmark::State& state) {
    const size_t rows = size_t(state.range(0)), in = size_t(state.range(1)), out = size_t(state.range(2));
    auto x = random_floats(rows * in, 1);
    auto w = random_bf16(out * in, 2);
    std::vector<float> y(rows * out);
    for (auto _ : state) {
        if constexpr (Compute) ops::linear_forward_bf16_compute(y.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, in, out);
        else ops::linear_forward_bf16(y.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, in, out);
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * in * out * state.iterations(), benchmark::Counter::kIsRate);
}
static void BM_LinearBf16Compute(benchmark::State& state) { linear_bf16_benchmark<true>(state); }
static void BM_LinearBf16Widen(benchmark::State& state) { linear_bf16_benchmark<false>(state); }
static void bf16_prefill_shapes(benchmark::internal::Benchmark* b) {
    b->Args({1024, 576, 1536})->Args({1024, 1536, 576})->Args({128, 576, 576})->Args({1024, 576, 49152});
}
BENCHMARK(BM_LinearBf16Compute)->Apply(bf16_prefill_shapes);
BENCHMARK(BM_LinearBf16Widen)->Apply(bf16_prefill_shapes);

static void BM_RmsNorm(benchmark::State& state) {
    const size_t rows = size_t(state.range(0)), dim = size_t(state.range(1));
    auto x = random_floats(rows * dim, 3), w = random_floats(dim, 4);
    std::vector<float> y(rows * dim), rstd(rows);
    for (auto _ : state) ops::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, dim, 1e-6);
    state.counters["GB/s"] = benchmark::Counter(8.0 * rows * dim * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RmsNorm)->Args({1024, 256})->Args({1024, 1024});

static void BM_Attention(benchmark::State& state) {
    const size_t batch = 4, len = size_t(state.range(0)), heads = 8, kv_heads = 2, head_dim = 64;
    ops::AttentionShape s{batch, len, len, heads, kv_heads, head_dim, 0, len * kv_heads * head_dim, len};
    auto q = random_floats(batch * len * heads * head_dim, 5), k = random_floats(batch * len * kv_heads * head_dim, 6),
         v = random_floats(batch * len * kv_heads * head_dim, 7);
    std::vector<float> out(q.size()), probs(batch * heads * len * len);
    for (auto _ : state) ops::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), static_cast<const uint8_t*>(nullptr), s);
    state.counters["GFLOP/s"] = benchmark::Counter(4.0 * batch * heads * len * len * head_dim * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Attention)->Arg(64)->Arg(256);

// Attention as one thread's share of a training step sees it: 8 sequences of 64, 8 heads of 16, forward and
// backward (the byte models of BM_TrainStep at hidden 128).
static void BM_AttentionTrain(benchmark::State& state) {
    const size_t batch = 8, len = 64, heads = 8, kv_heads = 4, head_dim = size_t(state.range(0));
    ops::AttentionShape s{batch, len, len, heads, kv_heads, head_dim, 0, len * kv_heads * head_dim, len};
    auto q = random_floats(batch * len * heads * head_dim, 5), k = random_floats(batch * len * kv_heads * head_dim, 6),
         v = random_floats(batch * len * kv_heads * head_dim, 7), dout = random_floats(q.size(), 8);
    std::vector<float> out(q.size()), probs(batch * heads * len * len), dq(q.size()), dk(k.size()), dv(v.size());
    for (auto _ : state) {
        ops::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), static_cast<const uint8_t*>(nullptr), s);
        ops::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(), v.data(), s);
    }
    // Full-square products (what the kernels compute), 2 forward and 4 backward.
    state.counters["GFLOP/s"] = benchmark::Counter(12.0 * batch * heads * len * len * head_dim * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AttentionTrain)->Arg(16)->Arg(64);

// Prefill: the forward pass over batch x 128 tokens. Args: hidden size, batch; BM_ForwardBf16 stores the weights
// in bf16 and multiplies in bf16 (bf16_compute), as bf16 inference does.
template <bool Bf16>
static void forward_benchmark(benchmark::State& state) {
    Transformer<float> model(byte_config(size_t(state.range(0)), 4));
    if constexpr (Bf16) {
        model.store_as_bf16();
        model.bf16_compute = true;
    }
    const size_t batch = size_t(state.range(1)), len = 128;
    std::vector<int32_t> ids(batch * len);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i % 251);
    Activations<float> a;
    for (auto _ : state) model.forward({batch, len, ids.data()}, a, LogitsMode::All, false);
    state.counters["tokens/s"] = benchmark::Counter(double(batch * len) * state.iterations(), benchmark::Counter::kIsRate);
}
static void BM_Forward(benchmark::State& state) { forward_benchmark<false>(state); }
static void BM_ForwardBf16(benchmark::State& state) { forward_benchmark<true>(state); }
BENCHMARK(BM_Forward)->Args({64, 1})->Args({64, 8})->Args({256, 1})->Args({256, 8})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ForwardBf16)->Args({256, 8})->Unit(benchmark::kMillisecond);

// A training step (forward, backward, AdamW) on 16 sequences of 64 bytes. Args: hidden size, layers, mode:
// 0 every product split across the threads; 1 data-parallel, each thread's share in one pass; 2 data-parallel with
// the automatic passes (auto_sequences_per_pass). GFLOP/s counts 6 per parameter and token plus attention's
// causal products (the figure compare_torch.py and docs/BENCHMARKS.md use).
static void BM_TrainStep(benchmark::State& state) {
    const TransformerConfig config = byte_config(size_t(state.range(0)), size_t(state.range(1)));
    Transformer<float> model(config);
    const size_t batch = 16, len = 64;
    std::vector<int32_t> ids(batch * len), targets(batch * len);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7) % 251), targets[i] = int32_t((i * 7 + 7) % 251);
    TrainingOptions options;
    options.data_parallel = state.range(2) != 0;
    options.sequences_per_pass = state.range(2) == 1 ? batch : 0;
    LanguageModelTrainer<float> trainer(model, options);
    for (auto _ : state) trainer.step({{batch, len, ids.data()}}, {targets.data()});
    const double tokens = double(batch * len) * double(state.iterations());
    // Per token: QK^T and PV over on average len/2 keys, times 3 for forward and backward.
    const double attention = 3.0 * 4.0 * double(config.num_layers * config.num_heads * config.head_dim) * len / 2;
    state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
    state.counters["GFLOP/s"] =
        benchmark::Counter(tokens * (6.0 * double(model.parameters.size()) + attention) * 1e-9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TrainStep)
    ->ArgsProduct({{64}, {2}, {0, 1, 2}})
    ->ArgsProduct({{128, 256}, {4}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond);

// Greedy decoding of 64 tokens after a 32-token prompt; BM_DecodeBf16 with the weights stored in bf16.
template <bool Bf16>
static void decode_benchmark(benchmark::State& state) {
    Transformer<float> model(byte_config(256, 4));
    if constexpr (Bf16) model.store_as_bf16();
    std::vector<int32_t> prompt(32, 5);
    GenerationOptions options;
    options.max_new_tokens = 64;
    for (auto _ : state) benchmark::DoNotOptimize(generate(model, ForwardInput<float>{1, prompt.size(), prompt.data()}, options));
    state.counters["tokens/s"] = benchmark::Counter(64.0 * state.iterations(), benchmark::Counter::kIsRate);
}
static void BM_Decode(benchmark::State& state) { decode_benchmark<false>(state); }
static void BM_DecodeBf16(benchmark::State& state) { decode_benchmark<true>(state); }
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeBf16)->Unit(benchmark::kMillisecond);
