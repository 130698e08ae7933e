// compute "auto": bf16 products only where this CPU measures them faster than float32. Whether bf16 dot products
// pay depends on the CPU more than on the code (on a Zen 4 they beat float32 products, on some Xeons the AVX-512
// float32 kernel wins), so the choice is made by a trial at the model's own shape, not by a table of CPU names.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/float16.hpp"
#include "c3/core/parallel.hpp"
#include "c3/ops/products.hpp"

namespace c3::ops {

// What the bf16 products are measured against: the float32 product the caller would run instead. A model with
// float weights multiplies by them as stored; a trainer's float32 step by its transposed copies (StepWeights); a
// model with bf16 storage and float compute widens its bf16 weights.
enum class ComputeBaseline { Float, FloatTransposed, Bf16Widened };

// What a trial found for one product shape [rows, in] x [in, out]: the best time of each kernel and the choice.
struct ComputeTrial {
    size_t rows = 0, in = 0, out = 0;
    bool bf16 = false;            // bf16 products chosen
    double float_seconds = 0.0;   // the baseline's best of the trial's repeats; 0 where not measured
    double bf16_seconds = 0.0;
    std::string reason;           // why, in words
};

// bf16 must beat float32 by this factor: bf16 products round the activations, so a tie keeps float32.
inline constexpr double kBf16Margin = 0.95;

// Whether this build has bf16 dot-product instructions (AVX512-BF16). Without them a bf16 product widens to
// float32 in software, which never pays, so nothing is measured. The module loaded at import matches the CPU.
inline bool has_bf16_dot_products() {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    return true;
#else
    return false;
#endif
}

namespace detail {
// Seconds of the fastest of `repeats` calls of run(), after one warm-up call.
template <typename Run>
double best_seconds(Run&& run, int repeats) {
    run();
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
        const auto start = std::chrono::steady_clock::now();
        run();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return best;
}

inline ComputeTrial run_compute_trial(size_t rows, size_t in, size_t out, ComputeBaseline baseline) {
    ComputeTrial trial;
    trial.rows = rows, trial.in = in, trial.out = out;
    if (!has_bf16_dot_products()) {
        trial.reason = "no bf16 dot-product instructions in this build (AVX512-BF16): float32";
        return trial;
    }
    // Fixed, deterministic data: the kernels' speed does not depend on the values.
    std::vector<float> input(rows * in), weight(out * in), output(rows * out);
    for (size_t i = 0; i < input.size(); ++i) input[i] = float(int(i % 17) - 8) * 0.01f;
    for (size_t i = 0; i < weight.size(); ++i) weight[i] = float(int(i % 13) - 6) * 0.01f;
    // The transposed copy only for the baseline that reads it: at the trial's largest shape it is 256 MB.
    std::vector<float> transposed;
    if (baseline == ComputeBaseline::FloatTransposed) {
        transposed.resize(in * out);
        for (size_t o = 0; o < out; ++o)
            for (size_t i = 0; i < in; ++i) transposed[i * out + o] = weight[o * in + i];
    }
    std::vector<uint16_t> weight_bf16(weight.size());
    for (size_t i = 0; i < weight.size(); ++i) weight_bf16[i] = float_to_bf16(weight[i]);
    MatrixOperand<float> as_float, as_bf16;
    if (baseline == ComputeBaseline::Float) as_float.weight = weight.data();
    if (baseline == ComputeBaseline::FloatTransposed) as_float.transposed = transposed.data();
    if (baseline == ComputeBaseline::Bf16Widened) as_float.bf16 = weight_bf16.data();  // bf16_compute off
    as_bf16.bf16 = weight_bf16.data();
    as_bf16.bf16_compute = true;
    constexpr int repeats = 5;
    const float* no_bias = nullptr;
    trial.float_seconds = best_seconds(
        [&] { product_forward(output.data(), input.data(), as_float, no_bias, rows, in, out); }, repeats);
    trial.bf16_seconds = best_seconds(
        [&] { product_forward(output.data(), input.data(), as_bf16, no_bias, rows, in, out); }, repeats);
    trial.bf16 = trial.bf16_seconds < kBf16Margin * trial.float_seconds;
    trial.reason = trial.bf16 ? "bf16 products measured faster than float32 at this shape: bf16"
                              : "bf16 products not measured faster than float32 at this shape: float32";
    return trial;
}
}  // namespace detail

// The largest operand a trial allocates, in elements (256 MB of float32).
inline constexpr size_t kMaxTrialElements = size_t(1) << 26;

// The trial for products [rows, in] x [in, out] against `baseline` on the current thread count: measured once per
// shape, baseline and thread count in a process and then reused, so every model of that shape makes the same
// choice there. More than 4 rows: fewer take the float kernel whatever the compute (product_forward).
inline ComputeTrial compute_trial(size_t rows, size_t in, size_t out,
                                  ComputeBaseline baseline = ComputeBaseline::Float) {
    C3_CHECK(rows > 4 && in >= 1 && out >= 1, ValueError, "compute_trial needs more than 4 rows (fewer take the "
             "float kernel whatever the compute) and positive sizes, got rows=", rows, ", in=", in, ", out=", out);
    C3_CHECK(in <= kMaxTrialElements / rows && out <= kMaxTrialElements / in && out <= kMaxTrialElements / rows,
             ValueError, "compute_trial: an operand of rows=", rows, ", in=", in, ", out=", out, " exceeds ",
             kMaxTrialElements, " elements; a trial of a smaller shape says as much");
    static std::mutex mutex;
    static std::map<std::tuple<size_t, size_t, size_t, int, int>, ComputeTrial> trials;
    const std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_tuple(rows, in, out, int(baseline), num_threads());
    auto found = trials.find(key);
    if (found == trials.end()) found = trials.emplace(key, detail::run_compute_trial(rows, in, out, baseline)).first;
    return found->second;
}

// The rows of the trial behind a model's "auto": a prompt pass or a training pass of a few sequences; a decode step
// (a few rows) is memory-bound and takes the float kernel either way (product_forward).
inline constexpr size_t kComputeTrialRows = 256;

// The trial behind a model's "auto", at its feed-forward up-projection [hidden, intermediate]; a larger model than
// a trial holds is measured at 4,096 x 16,384, where both kernels already run at their large-matrix rates.
inline ComputeTrial model_compute_trial(size_t hidden, size_t intermediate, ComputeBaseline baseline) {
    return compute_trial(kComputeTrialRows, std::min(hidden, size_t(4096)), std::min(intermediate, size_t(16384)),
                         baseline);
}

}  // namespace c3::ops
