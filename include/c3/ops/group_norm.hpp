// Group normalisation of one sequence (channels last), as torch.nn.GroupNorm(groups, channels) on [1, channels,
// length]: the channels fall into `groups` equal groups, and each group is normalised over all its (row, channel)
// entries together, with the biased variance, then scaled and shifted per channel:
//   y[t, c] = (x[t, c] - mean_g) * rstd_g * weight[c] + bias[c],   rstd_g = 1 / sqrt(var_g + eps)
// A padded batch must run sequence by sequence, so that padding rows never enter a group's statistics.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/parallel.hpp"

namespace c3::ops {

// input, output [length, channels]; weight, bias [channels]; mean, rstd [groups] (saved for backward)
template <typename T>
void group_norm_forward(T* output, T* mean, T* rstd, const T* input, const T* weight, const T* bias, size_t length,
                        size_t channels, size_t groups, double eps) {
    C3_CHECK(groups > 0 && channels % groups == 0 && length > 0, ShapeError, "group_norm: ", channels,
             " channels do not split into ", groups, " groups, or the length is 0");
    const size_t width = channels / groups;
    // Per row and group partial sums (in double), added in row order: the same bits on any thread count.
    std::vector<double> sums(length * groups), squares(length * groups);
    parallel_for(length, [&](size_t t) {
        for (size_t g = 0; g < groups; ++g) {
            double sum = 0, square = 0;
            for (size_t c = g * width; c < (g + 1) * width; ++c) {
                const double x = input[t * channels + c];
                sum += x;
                square += x * x;
            }
            sums[t * groups + g] = sum;
            squares[t * groups + g] = square;
        }
    }, channels * 2);
    std::vector<T> group_mean(groups), group_rstd(groups);
    for (size_t g = 0; g < groups; ++g) {
        double sum = 0, square = 0;
        for (size_t t = 0; t < length; ++t) sum += sums[t * groups + g], square += squares[t * groups + g];
        const double count = double(length * width), mu = sum / count;
        const double variance = std::max(square / count - mu * mu, 0.0);
        group_mean[g] = T(mu);
        group_rstd[g] = T(1.0 / std::sqrt(variance + eps));
        if (mean) mean[g] = group_mean[g];
        if (rstd) rstd[g] = group_rstd[g];
    }
    parallel_for(length, [&](size_t t) {
        for (size_t c = 0; c < channels; ++c) {
            const size_t g = c / width;
            output[t * channels + c] = (input[t * channels + c] - group_mean[g]) * group_rstd[g] * weight[c] + bias[c];
        }
    }, channels * 2);
}

// Accumulates dinput [length, channels], dweight and dbias [channels] (any may be null). With xhat = (x - mean) *
// rstd and dxhat = dy * weight, over each group's entries: dinput = rstd * (dxhat - mean(dxhat) - xhat *
// mean(dxhat * xhat)); dweight[c] = sum over rows of dy * xhat; dbias[c] = sum over rows of dy.
template <typename T>
void group_norm_backward(T* dinput, T* dweight, T* dbias, const T* doutput, const T* input, const T* weight,
                         const T* mean, const T* rstd, size_t length, size_t channels, size_t groups) {
    const size_t width = channels / groups;
    if (dinput) {
        std::vector<double> sums(length * groups), dots(length * groups);
        parallel_for(length, [&](size_t t) {
            for (size_t g = 0; g < groups; ++g) {
                double sum = 0, dot = 0;
                for (size_t c = g * width; c < (g + 1) * width; ++c) {
                    const double dxhat = double(doutput[t * channels + c]) * double(weight[c]);
                    sum += dxhat;
                    dot += dxhat * (double(input[t * channels + c]) - double(mean[g])) * double(rstd[g]);
                }
                sums[t * groups + g] = sum;
                dots[t * groups + g] = dot;
            }
        }, channels * 4);
        std::vector<T> mean_dxhat(groups), mean_dot(groups);
        for (size_t g = 0; g < groups; ++g) {
            double sum = 0, dot = 0;
            for (size_t t = 0; t < length; ++t) sum += sums[t * groups + g], dot += dots[t * groups + g];
            mean_dxhat[g] = T(sum / double(length * width));
            mean_dot[g] = T(dot / double(length * width));
        }
        parallel_for(length, [&](size_t t) {
            for (size_t c = 0; c < channels; ++c) {
                const size_t g = c / width, i = t * channels + c;
                const T xhat = (input[i] - mean[g]) * rstd[g];
                dinput[i] += rstd[g] * (doutput[i] * weight[c] - mean_dxhat[g] - xhat * mean_dot[g]);
            }
        }, channels * 4);
    }
    if (dweight || dbias)  // column sums in row order, each thread owning a block of channels
        parallel_ranges(channels, 64, [&](size_t begin, size_t end) {
            for (size_t t = 0; t < length; ++t)
                for (size_t c = begin; c < end; ++c) {
                    const size_t g = c / width, i = t * channels + c;
                    if (dweight) dweight[c] += doutput[i] * (input[i] - mean[g]) * rstd[g];
                    if (dbias) dbias[c] += doutput[i];
                }
        }, length * 3);
}

namespace reference {
// The definition, in double, group by group.
template <typename T>
void group_norm_forward(T* output, T* mean, T* rstd, const T* input, const T* weight, const T* bias, size_t length,
                        size_t channels, size_t groups, double eps) {
    const size_t width = channels / groups, count = length * width;
    for (size_t g = 0; g < groups; ++g) {
        double mu = 0, variance = 0;
        for (size_t t = 0; t < length; ++t)
            for (size_t c = g * width; c < (g + 1) * width; ++c) mu += double(input[t * channels + c]) / double(count);
        for (size_t t = 0; t < length; ++t)
            for (size_t c = g * width; c < (g + 1) * width; ++c) {
                const double centred = double(input[t * channels + c]) - mu;
                variance += centred * centred / double(count);
            }
        const double s = 1.0 / std::sqrt(variance + eps);
        for (size_t t = 0; t < length; ++t)
            for (size_t c = g * width; c < (g + 1) * width; ++c)
                output[t * channels + c] = T((double(input[t * channels + c]) - mu) * s * weight[c] + bias[c]);
        if (mean) mean[g] = T(mu);
        if (rstd) rstd[g] = T(s);
    }
}
}  // namespace reference

}  // namespace c3::ops
