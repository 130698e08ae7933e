// Token embedding lookup (from a float or a bfloat16 table) and its scatter-add backward.
#pragma once
#include <cstring>

#include "c3/core/errors.hpp"
#include "c3/core/float16.hpp"
#include "c3/core/parallel.hpp"

namespace c3::ops {

// output [count, dim] = table[ids[i]]; ids are checked against the vocabulary.
template <typename T>
void embedding_forward(T* output, const int32_t* ids, const T* table, size_t count, size_t vocab, size_t dim) {
    for (size_t i = 0; i < count; ++i)
        C3_CHECK(ids[i] >= 0 && size_t(ids[i]) < vocab, ValueError, "token id ", ids[i], " at index ", i,
                 " is outside the vocabulary of ", vocab);
    parallel_for(count, [&](size_t i) { std::memcpy(output + i * dim, table + size_t(ids[i]) * dim, dim * sizeof(T)); }, dim);
}

// The same from a bfloat16 table [vocab, dim], its rows widened to float.
template <typename T>
void embedding_forward_bf16(T* output, const int32_t* ids, const uint16_t* table, size_t count, size_t vocab, size_t dim) {
    for (size_t i = 0; i < count; ++i)
        C3_CHECK(ids[i] >= 0 && size_t(ids[i]) < vocab, ValueError, "token id ", ids[i], " at index ", i,
                 " is outside the vocabulary of ", vocab);
    parallel_for(count, [&](size_t i) {
        const uint16_t* row = table + size_t(ids[i]) * dim;
        for (size_t d = 0; d < dim; ++d) output[i * dim + d] = T(bf16_to_float(row[d]));
    }, dim);
}

// Accumulates dtable[ids[i]] += doutput[i]. Serial: repeated ids would race.
template <typename T>
void embedding_backward(T* dtable, const T* doutput, const int32_t* ids, size_t count, size_t dim) {
    for (size_t i = 0; i < count; ++i) {
        T* row = dtable + size_t(ids[i]) * dim;
        const T* g = doutput + i * dim;
        for (size_t d = 0; d < dim; ++d) row[d] += g[d];
    }
}

}  // namespace c3::ops
