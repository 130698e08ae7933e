// Adaptive average pooling over the rows of one sequence (channels last), as torch.nn.functional.adaptive_avg_pool1d
// on [1, channels, length]: output row i is the mean of input rows [floor(i * length / n), ceil((i + 1) * length / n))
// for n output rows. Windows overlap where length is not a multiple of n, and repeat rows where n > length.
#pragma once
#include <cmath>
#include <utility>

#include "c3/core/errors.hpp"
#include "c3/core/parallel.hpp"

namespace c3::ops {

// [begin, end) of output row i of `outputs` over `length` input rows.
inline std::pair<size_t, size_t> adaptive_pool_window(size_t i, size_t length, size_t outputs) {
    return {i * length / outputs, ((i + 1) * length + outputs - 1) / outputs};
}

// output [outputs, channels] from input [length, channels]
template <typename T>
void adaptive_avg_pool_forward(T* output, const T* input, size_t length, size_t outputs, size_t channels) {
    C3_CHECK(length > 0 && outputs > 0, ShapeError, "adaptive_avg_pool: ", length, " rows into ", outputs);
    parallel_for(outputs, [&](size_t i) {
        const auto [begin, end] = adaptive_pool_window(i, length, outputs);
        T* y = output + i * channels;
        for (size_t c = 0; c < channels; ++c) y[c] = T(0);
        for (size_t t = begin; t < end; ++t)
            for (size_t c = 0; c < channels; ++c) y[c] += input[t * channels + c];
        const T scale = T(1) / T(end - begin);
        for (size_t c = 0; c < channels; ++c) y[c] *= scale;
    }, channels * (length / outputs + 2));
}

// Accumulates dinput [length, channels] from doutput [outputs, channels]. Windows may overlap, so the output rows
// are taken in order on one thread, each row's channels split across the threads.
template <typename T>
void adaptive_avg_pool_backward(T* dinput, const T* doutput, size_t length, size_t outputs, size_t channels) {
    parallel_ranges(channels, 64, [&](size_t first, size_t last) {
        for (size_t i = 0; i < outputs; ++i) {
            const auto [begin, end] = adaptive_pool_window(i, length, outputs);
            const T scale = T(1) / T(end - begin);
            for (size_t t = begin; t < end; ++t)
                for (size_t c = first; c < last; ++c) dinput[t * channels + c] += doutput[i * channels + c] * scale;
        }
    }, outputs * (length / outputs + 2));
}

namespace reference {
// The windows from floor and ceil in floating point, the means in double.
template <typename T>
void adaptive_avg_pool_forward(T* output, const T* input, size_t length, size_t outputs, size_t channels) {
    for (size_t i = 0; i < outputs; ++i) {
        const size_t begin = size_t(std::floor(double(i) * double(length) / double(outputs)));
        const size_t end = size_t(std::ceil(double(i + 1) * double(length) / double(outputs)));
        for (size_t c = 0; c < channels; ++c) {
            double sum = 0;
            for (size_t t = begin; t < end; ++t) sum += double(input[t * channels + c]);
            output[i * channels + c] = T(sum / double(end - begin));
        }
    }
}
}  // namespace reference

}  // namespace c3::ops
