// 1-D convolution over the rows of one sequence (channels last), as torch.nn.Conv1d(bias=False):
//   output[t, o] = sum over c, k of weight[o, c, k] * input[t * stride + k - padding, c]   (zero outside the input)
// The weight keeps PyTorch's [out_channels, in_channels, kernel] layout, so that checkpoints shape it as torch does.
// The product runs as one matrix product on the unfolded input (im2col):
//   columns [output_length, in_channels * kernel], columns[t, c * kernel + k] = input[t * stride + k - padding, c]
//   output = columns * weight^T   (weight read as [out_channels, in_channels * kernel])
#pragma once
#include <algorithm>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/parallel.hpp"
#include "c3/ops/linear.hpp"

namespace c3::ops {

struct Conv1dShape {
    size_t length = 0, in_channels = 0, out_channels = 0, kernel = 1, stride = 1, padding = 0;
    size_t output_length() const {
        C3_CHECK(stride > 0 && kernel > 0 && length + 2 * padding >= kernel, ShapeError, "conv1d: kernel ", kernel,
                 " does not fit a length of ", length, " with padding ", padding);
        return (length + 2 * padding - kernel) / stride + 1;
    }
    size_t unfolded_width() const { return in_channels * kernel; }
};

// columns [output_length, in_channels * kernel] from input [length, in_channels].
template <typename T>
void conv1d_unfold(T* columns, const T* input, const Conv1dShape& s) {
    const size_t rows = s.output_length(), width = s.unfolded_width();
    parallel_for(rows, [&](size_t t) {
        T* row = columns + t * width;
        for (size_t k = 0; k < s.kernel; ++k) {
            const size_t source = t * s.stride + k;  // index into the padded input
            const bool inside = source >= s.padding && source - s.padding < s.length;
            const T* x = inside ? input + (source - s.padding) * s.in_channels : nullptr;
            for (size_t c = 0; c < s.in_channels; ++c) row[c * s.kernel + k] = x ? x[c] : T(0);
        }
    }, width);
}

// output [output_length, out_channels] = conv1d(input [length, in_channels], weight [out, in, kernel])
template <typename T>
void conv1d_forward(T* output, const T* input, const T* weight, const Conv1dShape& s) {
    std::vector<T> columns(s.output_length() * s.unfolded_width());
    conv1d_unfold(columns.data(), input, s);
    linear_forward(output, columns.data(), weight, static_cast<const T*>(nullptr), s.output_length(),
                   s.unfolded_width(), s.out_channels);
}

// Accumulates dinput [length, in_channels] and dweight [out, in, kernel] (either may be null) from
// doutput [output_length, out_channels].
template <typename T>
void conv1d_backward(T* dinput, T* dweight, const T* doutput, const T* input, const T* weight, const Conv1dShape& s) {
    const size_t rows = s.output_length(), width = s.unfolded_width();
    std::vector<T> columns(rows * width);
    if (dweight) {
        conv1d_unfold(columns.data(), input, s);
        linear_backward(static_cast<T*>(nullptr), dweight, static_cast<T*>(nullptr), doutput, columns.data(), weight,
                        rows, width, s.out_channels);
    }
    if (!dinput) return;
    std::fill(columns.begin(), columns.end(), T(0));
    linear_backward(columns.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), doutput,
                    static_cast<const T*>(nullptr), weight, rows, width, s.out_channels);
    // Fold back: output rows overlap in input rows when stride < kernel, so one pass in row order (no race).
    for (size_t t = 0; t < rows; ++t)
        for (size_t k = 0; k < s.kernel; ++k) {
            const size_t source = t * s.stride + k;
            if (source < s.padding || source - s.padding >= s.length) continue;
            T* dx = dinput + (source - s.padding) * s.in_channels;
            const T* g = columns.data() + t * width;
            for (size_t c = 0; c < s.in_channels; ++c) dx[c] += g[c * s.kernel + k];
        }
}

namespace reference {
template <typename T>
void conv1d_forward(T* output, const T* input, const T* weight, const Conv1dShape& s) {
    for (size_t t = 0; t < s.output_length(); ++t)
        for (size_t o = 0; o < s.out_channels; ++o) {
            double sum = 0;
            for (size_t c = 0; c < s.in_channels; ++c)
                for (size_t k = 0; k < s.kernel; ++k) {
                    const long source = long(t * s.stride + k) - long(s.padding);
                    if (source < 0 || source >= long(s.length)) continue;
                    sum += double(weight[(o * s.in_channels + c) * s.kernel + k]) *
                           double(input[size_t(source) * s.in_channels + c]);
                }
            output[t * s.out_channels + o] = T(sum);
        }
}
template <typename T>
void conv1d_backward(T* dinput, T* dweight, const T* doutput, const T* input, const T* weight, const Conv1dShape& s) {
    for (size_t t = 0; t < s.output_length(); ++t)
        for (size_t o = 0; o < s.out_channels; ++o) {
            const T g = doutput[t * s.out_channels + o];
            for (size_t c = 0; c < s.in_channels; ++c)
                for (size_t k = 0; k < s.kernel; ++k) {
                    const long source = long(t * s.stride + k) - long(s.padding);
                    if (source < 0 || source >= long(s.length)) continue;
                    const size_t w = (o * s.in_channels + c) * s.kernel + k, x = size_t(source) * s.in_channels + c;
                    if (dinput) dinput[x] += g * weight[w];
                    if (dweight) dweight[w] += g * input[x];
                }
        }
}
}  // namespace reference

}  // namespace c3::ops
