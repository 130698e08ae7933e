// The learned hierarchical (convolutional) encoder of Lee, Yang and Berg-Kirkpatrick, "Optical Context Compression
// Is Just (Bad) Autoencoding" (arXiv 2512.03643), written from its description, on one sequence of token embeddings
// x [L, d] (channels last):
//
//   block:  main = GroupNorm1(Conv1d(d, d, kernel 5, stride 1, padding 2, no bias)(x))
//           main = GroupNorm2(Conv1d(d, d, kernel 3, stride 2, padding 1, no bias)(GELU(main)))   -> ceil(L / 2) rows
//           out  = GELU(main + adaptive_avg_pool(x, ceil(L / 2)))                                  (GroupNorm: 1 group)
//
// How many blocks a context of L real tokens runs, for N latents (hierarchical_depth): blocks are applied while the
// length is above N and halving it (ceil) leaves at least N rows; a final adaptive average pool then takes the
// remaining rows, between N and 2N - 1, to exactly N (the identity when they are N). So a context of ratio * N
// tokens with the ratio a power of two runs log2(ratio) blocks and ends at exactly N rows, and any other length
// >= N is pooled down (never up) to N in its last step. Contexts shorter than N are refused, as mean pooling does.
//
// The paper appends one learnable separator embedding after the compressed tokens; c3 leaves it out, so that the
// decoder's latent block is N rows wide for every method.
#pragma once
#include <string>
#include <vector>

#include "c3/model/weights.hpp"
#include "c3/ops/adaptive_avg_pool.hpp"
#include "c3/ops/conv1d.hpp"
#include "c3/ops/gelu.hpp"
#include "c3/ops/group_norm.hpp"

namespace c3 {

constexpr size_t kHierarchicalKernel = 5;      // the first convolution's kernel (the paper's default)
constexpr size_t kHierarchicalDownKernel = 3;  // the strided convolution's kernel
constexpr double kGroupNormEps = 1e-5;         // torch.nn.GroupNorm's default

// Blocks a context of `length` real tokens runs to reach N latents (the rule above).
inline size_t hierarchical_depth(size_t length, size_t num_latents) {
    size_t depth = 0;
    while (length > num_latents && (length + 1) / 2 >= num_latents) {
        length = (length + 1) / 2;
        ++depth;
    }
    return depth;
}

// The block tensors, under HF-like names: model.hierarchical.blocks.{i}.conv1.weight [d, d, 5], .norm1.weight [d],
// .norm1.bias [d], .conv2.weight [d, d, 3], .norm2.weight [d], .norm2.bias [d].
inline void add_hierarchical_layout(LayoutBuilder& b, size_t channels, size_t blocks) {
    for (size_t i = 0; i < blocks; ++i) {
        const std::string p = "model.hierarchical.blocks." + std::to_string(i) + ".";
        b.add(p + "conv1.weight", {channels, channels, kHierarchicalKernel}, ParameterKind::Matrix);
        b.add(p + "norm1.weight", {channels}, ParameterKind::Norm);
        b.add(p + "norm1.bias", {channels}, ParameterKind::Bias);
        b.add(p + "conv2.weight", {channels, channels, kHierarchicalDownKernel}, ParameterKind::Matrix);
        b.add(p + "norm2.weight", {channels}, ParameterKind::Norm);
        b.add(p + "norm2.bias", {channels}, ParameterKind::Bias);
    }
}
constexpr size_t kHierarchicalTensorsPerBlock = 6;

// Pointers to one block's tensors (parameters or gradients; null where frozen), in layout order.
template <typename T>
struct HierarchicalBlockWeights {
    T *conv1 = nullptr, *norm1_weight = nullptr, *norm1_bias = nullptr;
    T *conv2 = nullptr, *norm2_weight = nullptr, *norm2_bias = nullptr;
};

// One block's saved activations for one sequence: `length` rows in, `length_out` = ceil(length / 2) rows out.
template <typename T>
struct HierarchicalBlockActivations {
    size_t length = 0, length_out = 0;
    std::vector<T> input;          // [L, d]
    std::vector<T> conv1, norm1;   // [L, d]: the first convolution, its GroupNorm (GELU's input)
    std::vector<T> activation1;    // [L, d]: GELU(norm1), the strided convolution's input
    std::vector<T> conv2;          // [L', d]
    std::vector<T> sum;            // [L', d]: GroupNorm2(conv2) + skip, the final GELU's input
    std::vector<T> mean1, rstd1, mean2, rstd2;  // [1] each: the GroupNorms' statistics
};

// One sequence's pass: the blocks it ran and the rows its final pool read.
template <typename T>
struct HierarchicalSequence {
    std::vector<HierarchicalBlockActivations<T>> blocks;
    size_t final_length = 0;
    std::vector<T> final_rows;  // [final_length, d]
};

namespace detail {
inline ops::Conv1dShape hierarchical_conv(size_t length, size_t channels, bool down) {
    return down ? ops::Conv1dShape{length, channels, channels, kHierarchicalDownKernel, 2, 1}
                : ops::Conv1dShape{length, channels, channels, kHierarchicalKernel, 1, kHierarchicalKernel / 2};
}
}  // namespace detail

// input [length, d] (one sequence's real tokens) -> output [N, d]; saves what backward needs in `a`.
// `blocks` holds at least hierarchical_depth(length, N) blocks (the caller checks).
template <typename T>
void hierarchical_forward(T* output, const T* input, size_t length, size_t num_latents, size_t channels,
                          const std::vector<HierarchicalBlockWeights<const T>>& blocks, HierarchicalSequence<T>& a) {
    const size_t depth = hierarchical_depth(length, num_latents), d = channels;
    C3_CHECK(length >= num_latents && depth <= blocks.size(), ValueError, "the hierarchical encoder takes ", length,
             " rows to ", num_latents, " with ", depth, " blocks; it has ", blocks.size());
    a.blocks.resize(depth);
    std::vector<T> x(input, input + length * d);
    for (size_t i = 0; i < depth; ++i) {
        HierarchicalBlockActivations<T>& s = a.blocks[i];
        const HierarchicalBlockWeights<const T>& w = blocks[i];
        const size_t L = x.size() / d, half = (L + 1) / 2;
        s.length = L;
        s.length_out = half;
        s.input = std::move(x);
        s.conv1.resize(L * d);
        s.norm1.resize(L * d);
        s.activation1.resize(L * d);
        s.conv2.resize(half * d);
        s.sum.resize(half * d);
        s.mean1.resize(1), s.rstd1.resize(1), s.mean2.resize(1), s.rstd2.resize(1);
        ops::conv1d_forward(s.conv1.data(), s.input.data(), w.conv1, detail::hierarchical_conv(L, d, false));
        ops::group_norm_forward(s.norm1.data(), s.mean1.data(), s.rstd1.data(), s.conv1.data(), w.norm1_weight,
                                w.norm1_bias, L, d, 1, kGroupNormEps);
        ops::gelu_forward(s.activation1.data(), s.norm1.data(), L * d);
        ops::conv1d_forward(s.conv2.data(), s.activation1.data(), w.conv2, detail::hierarchical_conv(L, d, true));
        std::vector<T> skip(half * d);
        ops::group_norm_forward(s.sum.data(), s.mean2.data(), s.rstd2.data(), s.conv2.data(), w.norm2_weight,
                                w.norm2_bias, half, d, 1, kGroupNormEps);
        ops::adaptive_avg_pool_forward(skip.data(), s.input.data(), L, half, d);
        for (size_t k = 0; k < half * d; ++k) s.sum[k] += skip[k];
        x.assign(half * d, T(0));
        ops::gelu_forward(x.data(), s.sum.data(), half * d);
    }
    a.final_length = x.size() / d;
    a.final_rows = std::move(x);
    ops::adaptive_avg_pool_forward(output, a.final_rows.data(), a.final_length, num_latents, d);
}

// Accumulates dinput [length, d] (may be null) and the blocks' gradients (`gradients`: null tensors where frozen;
// may be shorter than the blocks run when every block is frozen) from doutput [N, d].
template <typename T>
void hierarchical_backward(T* dinput, const std::vector<HierarchicalBlockWeights<T>>& gradients, const T* doutput,
                           size_t num_latents, size_t channels,
                           const std::vector<HierarchicalBlockWeights<const T>>& blocks,
                           const HierarchicalSequence<T>& a) {
    const size_t d = channels;
    std::vector<T> dx(a.final_length * d, T(0));
    ops::adaptive_avg_pool_backward(dx.data(), doutput, a.final_length, num_latents, d);
    for (size_t i = a.blocks.size(); i-- > 0;) {
        const HierarchicalBlockActivations<T>& s = a.blocks[i];
        const HierarchicalBlockWeights<const T>& w = blocks[i];
        const HierarchicalBlockWeights<T> g = i < gradients.size() ? gradients[i] : HierarchicalBlockWeights<T>{};
        const size_t L = s.length, half = s.length_out;
        std::vector<T> dsum(half * d, T(0)), dconv2(half * d, T(0)), dactivation1(L * d, T(0)),
            dnorm1(L * d, T(0)), dconv1(L * d, T(0)), dblock_input(L * d, T(0));
        ops::gelu_backward(dsum.data(), dx.data(), s.sum.data(), half * d);
        ops::adaptive_avg_pool_backward(dblock_input.data(), dsum.data(), L, half, d);  // the skip path
        ops::group_norm_backward(dconv2.data(), g.norm2_weight, g.norm2_bias, dsum.data(), s.conv2.data(),
                                 w.norm2_weight, s.mean2.data(), s.rstd2.data(), half, d, 1);
        ops::conv1d_backward(dactivation1.data(), g.conv2, dconv2.data(), s.activation1.data(), w.conv2,
                             detail::hierarchical_conv(L, d, true));
        ops::gelu_backward(dnorm1.data(), dactivation1.data(), s.norm1.data(), L * d);
        ops::group_norm_backward(dconv1.data(), g.norm1_weight, g.norm1_bias, dnorm1.data(), s.conv1.data(),
                                 w.norm1_weight, s.mean1.data(), s.rstd1.data(), L, d, 1);
        ops::conv1d_backward(dblock_input.data(), g.conv1, dconv1.data(), s.input.data(), w.conv1,
                             detail::hierarchical_conv(L, d, false));
        dx = std::move(dblock_input);
    }
    if (dinput)
        for (size_t k = 0; k < dx.size(); ++k) dinput[k] += dx[k];
}

}  // namespace c3
