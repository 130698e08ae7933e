// Causal grouped-query attention with a key padding mask.
//
// Layouts (rows are tokens, as the projections produce them):
//   q   [batch, q_len, heads * head_dim]              rows q_stride apart, batches q_len rows apart
//   k,v [batch, k_len, kv_heads * head_dim]           rows kv_stride apart, batches kv_batch_stride apart
//   out [batch, q_len, heads * head_dim]              like q
//   probs [batch, heads, q_len, k_len]                saved softmax, used by backward
// Query row i sits at key index q_offset + i and sees key j when j <= q_offset + i and key_valid[b, j] != 0
// (key_valid may be null: all keys valid). A query with no visible key outputs zeros.
// The same function serves the full forward (q_offset = 0, k_len = q_len) and a KV-cache step (q_len = 1).
#pragma once
#include <cmath>
#include <limits>

#include "c3/core/parallel.hpp"
#include "c3/core/tensor.hpp"
#include "c3/ops/onednn.hpp"
#include "c3/ops/vector_math.hpp"

namespace c3::ops {

struct AttentionShape {
    size_t batch, q_len, k_len, heads, kv_heads, head_dim;
    size_t q_offset;         // key index of query row 0
    size_t kv_batch_stride;  // elements between batches in k and v
    size_t k_valid_stride;   // elements between batches in key_valid
    size_t q_stride() const { return heads * head_dim; }
    size_t kv_stride() const { return kv_heads * head_dim; }
    size_t group() const { return heads / kv_heads; }
};

// Queries are processed in blocks of this many rows; a block needs only the keys up to its last row, so the
// causal upper triangle is never computed (half the work of a long prefill or training sequence).
constexpr size_t kQueryBlock = 64;

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v, const uint8_t* key_valid,
                       const AttentionShape& s) {
    const T scale = T(1) / std::sqrt(T(s.head_dim));
    const size_t qs = s.q_stride(), ks = s.kv_stride();
    const size_t blocks = (s.q_len + kQueryBlock - 1) / kQueryBlock;
    // One task per (batch, head, query block): enough tasks to balance the threads even at batch 1.
    parallel_for(s.batch * s.heads * blocks, [&](size_t task) {
        const size_t bh = task / blocks, block = task % blocks;
        const size_t b = bh / s.heads, h = bh % s.heads, g = h / s.group();
        const size_t i0 = block * kQueryBlock, i1 = std::min(s.q_len, i0 + kQueryBlock), rows = i1 - i0;
        const size_t keys = std::min(s.k_len, s.q_offset + i1);  // the keys any row of this block can see
        ConstStridedMap<T> Q(q + (b * s.q_len + i0) * qs + h * s.head_dim, rows, s.head_dim, Eigen::OuterStride<>(qs));
        ConstStridedMap<T> K(k + b * s.kv_batch_stride + g * s.head_dim, keys, s.head_dim, Eigen::OuterStride<>(ks));
        ConstStridedMap<T> V(v + b * s.kv_batch_stride + g * s.head_dim, keys, s.head_dim, Eigen::OuterStride<>(ks));
        T* block_probs = probs + (bh * s.q_len + i0) * s.k_len;
        StridedMap<T> P(block_probs, rows, keys, Eigen::OuterStride<>(s.k_len));
        // The scale rides in the product (alpha), no temporary; oneDNN's sgemm where loaded and the block is large.
        if (!onednn_gemm_where_suited('N', 'T', rows, keys, s.head_dim, Q.data(), qs, K.data(), ks, T(0), block_probs,
                                      s.k_len, scale))
            P.noalias() = (Q * scale) * K.transpose();
        const uint8_t* valid = key_valid ? key_valid + b * s.k_valid_stride : nullptr;
        // Softmax over the visible keys rounded up to a multiple of 16, the extra keys set to -infinity (exp
        // gives 0): loops of whole vectors, without the scalar tails that cost more than a few extra exponentials.
        const T hidden = -std::numeric_limits<T>::infinity();
        for (size_t i = 0; i < rows; ++i) {
            const size_t last = std::min(s.k_len, s.q_offset + i0 + i + 1);  // keys [0, last) are causal-visible
            const size_t span = std::min(keys, (last + 15) / 16 * 16);
            T* row = block_probs + i * s.k_len;
            if (valid)
                for (size_t j = 0; j < span; ++j) row[j] = j < last && valid[j] ? row[j] : hidden;
            else
                for (size_t j = last; j < span; ++j) row[j] = hidden;
            const T max_score = lane_max(row, span);
            std::fill(row + span, row + s.k_len, T(0));
            if (max_score == hidden) {  // no visible key: the output is zero
                std::fill(row, row + span, T(0));
                continue;
            }
            const T inverse = T(1) / exp_shifted(row, row, span, max_score);
            for (size_t j = 0; j < span; ++j) row[j] *= inverse;
        }
        T* O_data = out + (b * s.q_len + i0) * qs + h * s.head_dim;
        if (!onednn_gemm_where_suited('N', 'N', rows, s.head_dim, keys, block_probs, s.k_len, V.data(), ks, T(0),
                                      O_data, qs))
            StridedMap<T>(O_data, rows, s.head_dim, Eigen::OuterStride<>(qs)).noalias() = P * V;
    }, kQueryBlock * s.k_len * s.head_dim * 2);
}

// Accumulates dq (laid out like q) and dk, dv (like k, v, with batch stride kv_batch_stride).
// Parallel over (batch, kv head): the query heads of one group write the same dk, dv rows.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q, const T* k, const T* v,
                        const AttentionShape& s) {
    const T scale = T(1) / std::sqrt(T(s.head_dim));
    const size_t qs = s.q_stride(), ks = s.kv_stride();
    parallel_for(s.batch * s.kv_heads, [&](size_t bg) {
        const size_t b = bg / s.kv_heads, g = bg % s.kv_heads;
        RowMatrix<T> dP(kQueryBlock, s.k_len);
        for (size_t h = g * s.group(); h < (g + 1) * s.group(); ++h)
            for (size_t i0 = 0; i0 < s.q_len; i0 += kQueryBlock) {
                const size_t i1 = std::min(s.q_len, i0 + kQueryBlock), rows = i1 - i0;
                const size_t keys = std::min(s.k_len, s.q_offset + i1);
                const size_t q_at = (b * s.q_len + i0) * qs + h * s.head_dim;
                ConstStridedMap<T> K(k + b * s.kv_batch_stride + g * s.head_dim, keys, s.head_dim, Eigen::OuterStride<>(ks));
                ConstStridedMap<T> V(v + b * s.kv_batch_stride + g * s.head_dim, keys, s.head_dim, Eigen::OuterStride<>(ks));
                StridedMap<T> dK(dk + b * s.kv_batch_stride + g * s.head_dim, keys, s.head_dim, Eigen::OuterStride<>(ks));
                StridedMap<T> dV(dv + b * s.kv_batch_stride + g * s.head_dim, keys, s.head_dim, Eigen::OuterStride<>(ks));
                ConstStridedMap<T> Q(q + q_at, rows, s.head_dim, Eigen::OuterStride<>(qs));
                ConstStridedMap<T> dO(dout + q_at, rows, s.head_dim, Eigen::OuterStride<>(qs));
                StridedMap<T> dQ(dq + q_at, rows, s.head_dim, Eigen::OuterStride<>(qs));
                ConstStridedMap<T> P(probs + ((b * s.heads + h) * s.q_len + i0) * s.k_len, rows, keys,
                                     Eigen::OuterStride<>(s.k_len));
                auto dS = dP.topLeftCorner(rows, keys);
                dV.noalias() += P.transpose() * dO;
                dS.noalias() = dO * V.transpose();
                // softmax backward: dS = P * (dP - rowsum(P * dP)), then the score scale.
                for (size_t i = 0; i < rows; ++i) {
                    const T* p_row = P.data() + i * s.k_len;
                    T* ds_row = &dS(i, 0);
                    const T dot = lane_dot(p_row, ds_row, keys);
                    for (size_t j = 0; j < keys; ++j) ds_row[j] = p_row[j] * (ds_row[j] - dot) * scale;
                }
                dQ.noalias() += dS * K;
                dK.noalias() += dS.transpose() * Q;
            }
    }, s.group() * s.q_len * s.k_len * s.head_dim * 4);
}

namespace reference {
// Plain loops in double, one query at a time.
template <typename T>
void attention_forward(T* out, const T* q, const T* k, const T* v, const uint8_t* key_valid, const AttentionShape& s) {
    const double scale = 1.0 / std::sqrt(double(s.head_dim));
    const size_t qs = s.q_stride(), ks = s.kv_stride();
    std::vector<double> scores(s.k_len);
    for (size_t b = 0; b < s.batch; ++b)
        for (size_t h = 0; h < s.heads; ++h) {
            const size_t g = h / s.group();
            for (size_t i = 0; i < s.q_len; ++i) {
                double max_score = -1e300, total = 0;
                bool any = false;
                for (size_t j = 0; j < s.k_len; ++j) {
                    const bool visible = j <= s.q_offset + i && (!key_valid || key_valid[b * s.k_valid_stride + j]);
                    double dot = 0;
                    for (size_t d = 0; d < s.head_dim; ++d)
                        dot += double(q[(b * s.q_len + i) * qs + h * s.head_dim + d]) *
                               k[b * s.kv_batch_stride + j * ks + g * s.head_dim + d];
                    scores[j] = visible ? dot * scale : -1e300;
                    if (visible) max_score = std::max(max_score, scores[j]), any = true;
                }
                for (size_t j = 0; j < s.k_len; ++j) {
                    scores[j] = scores[j] > -1e299 ? std::exp(scores[j] - max_score) : 0.0;
                    total += scores[j];
                }
                for (size_t d = 0; d < s.head_dim; ++d) {
                    double sum = 0;
                    for (size_t j = 0; j < s.k_len; ++j)
                        sum += scores[j] * v[b * s.kv_batch_stride + j * ks + g * s.head_dim + d];
                    out[(b * s.q_len + i) * qs + h * s.head_dim + d] = any ? T(sum / total) : T(0);
                }
            }
        }
}
}  // namespace reference

}  // namespace c3::ops
