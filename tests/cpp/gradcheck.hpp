// A generic gradient checker: central differences in double against an analytic gradient.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "c3/core/rng.hpp"

namespace c3::testing {

inline std::vector<double> random_vector(size_t count, uint64_t seed, double scale = 1.0) {
    Rng rng(seed);
    std::vector<double> values(count);
    for (auto& v : values) v = rng.normal() * scale;
    return values;
}

// Perturbs each of `values` (or `probes` randomly chosen entries) by +-step and compares
// (loss(+) - loss(-)) / 2 step with analytic[i]: |numeric - analytic| <= atol + rtol * |numeric|.
inline void expect_gradient(const std::function<double()>& loss, std::vector<double>& values,
                            const std::vector<double>& analytic, const char* what, size_t probes = 0,
                            double step = 1e-6, double rtol = 1e-5, double atol = 1e-7) {
    ASSERT_EQ(values.size(), analytic.size()) << what;
    std::vector<size_t> indices;
    if (probes == 0 || probes >= values.size()) {
        for (size_t i = 0; i < values.size(); ++i) indices.push_back(i);
    } else {
        Rng rng(values.size());
        for (size_t i = 0; i < probes; ++i) indices.push_back(rng.below(values.size()));
    }
    for (size_t i : indices) {
        const double saved = values[i];
        values[i] = saved + step;
        const double plus = loss();
        values[i] = saved - step;
        const double minus = loss();
        values[i] = saved;
        const double numeric = (plus - minus) / (2 * step);
        EXPECT_NEAR(analytic[i], numeric, atol + rtol * std::abs(numeric)) << what << " at index " << i;
    }
}

// sum(output * weights): a scalar loss whose gradient on output is `weights`.
inline double weighted_sum(const std::vector<double>& output, const std::vector<double>& weights) {
    double total = 0;
    for (size_t i = 0; i < output.size(); ++i) total += output[i] * weights[i];
    return total;
}

}  // namespace c3::testing
