// Linear layers with bfloat16 weights and bfloat16 compute, for prefill: the input is rounded to bf16 (nearest,
// ties to even) and the products accumulate in float32 with AVX512-BF16 (vdpbf16ps: two bf16 products per float
// lane per instruction, twice the flops of an FMA). The numerics are those of bf16 inference: each product is
// exact in float, only the input rounding and the float sums differ from the float path.
//
// GotoBLAS layout: the input is rounded once per call into [rows, in/2] bf16 pairs; each thread packs blocks of
// its weight columns (sized from the caches: 384 columns x 320 k, 240 KB, on 32 KiB L1d and 1 MiB L2) into
// panels of 16 columns with the k pairs interleaved, so that one 512-bit load is W[n0..n0+16, k..k+2] in the
// order vdpbf16ps multiplies; an 8-row x 3-panel micro-kernel keeps 24 zmm accumulators and broadcasts one input
// pair per row.
//
// vdpbf16ps ignores MXCSR: it rounds to nearest even and flushes denormal inputs and results to zero, so values
// below ~1e-38 count as zero here (the portable fallback keeps them).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "c3/core/cpu_info.hpp"
#include "c3/core/float16.hpp"
#include "c3/core/parallel.hpp"
#include "c3/core/simd.hpp"
#include "c3/ops/linear_bf16.hpp"

namespace c3::ops {

#if defined(__AVX512BF16__) && defined(__AVX512F__)
constexpr bool bf16_dot_product_available = true;
#else
constexpr bool bf16_dot_product_available = false;
#endif

namespace detail {

// One value rounded to bf16 bits, ties to even; a double is rounded once (no double rounding through float).
template <typename T>
uint16_t round_to_bf16(T value) {
    if constexpr (std::is_same_v<T, double>) return double_to_bf16(value);
    else return float_to_bf16(float(value));
}

// Portable path, same numerics class: round the input to bf16, then the widening float product.
// accumulate: output += the product (the bias too, when given) instead of output =.
template <typename T>
void linear_bf16_compute_portable(T* output, const T* input, const uint16_t* weight, const T* bias, size_t rows,
                                  size_t in, size_t out, bool accumulate = false) {
    thread_local std::vector<T> storage, product;
    storage.resize(rows * in);
    T* rounded = storage.data();  // a pointer: inside the loop, `storage` would name each worker's own vector
    parallel_for(rows, [&](size_t r) {
        for (size_t i = 0; i < in; ++i) rounded[r * in + i] = T(bf16_to_float(round_to_bf16(input[r * in + i])));
    }, in);
    if (!accumulate) {
        linear_forward_bf16(output, rounded, weight, bias, rows, in, out);
        return;
    }
    product.resize(rows * out);
    linear_forward_bf16(product.data(), rounded, weight, bias, rows, in, out);
    VectorMap<T>(output, rows * out) += ConstVectorMap<T>(product.data(), rows * out);
}

#if defined(__AVX512BF16__) && defined(__AVX512F__)
// GCC 12's intrinsics headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* (GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace bf16dot {

constexpr size_t kPanel = 16;          // output columns per packed panel: one zmm of float sums
constexpr size_t kRows = 8;            // micro-kernel rows; 8 x 3 panels = 24 of the 32 zmm registers
constexpr size_t kPanels = 3;

// The packed block's depth and width, from the caches. Each 8-row strip of a is reused across all the block's
// panels, the block across all the strips. Depth: the 3 panels that one micro-kernel call streams past its strip
// (pairs x 192 B) fill one L1d. Width: the block takes a quarter of the L2, leaving the rest to the strips of a
// and rows of c that pass through it. On 32 KiB and 1 MiB: 160 pairs, 384 columns.
inline size_t block_pairs() {
    return std::max(size_t(32), cpu_info().cache.l1d / (kPanels * kPanel * sizeof(uint32_t)) / 16 * 16);
}
inline size_t block_columns(size_t pairs) {
    const size_t triple = kPanels * kPanel;
    return std::max(triple, cpu_info().cache.l2 / 4 / (pairs * sizeof(uint32_t)) / triple * triple);
}

// 16 floats (as bits) -> 16 bf16, exactly float_to_bf16: nearest, ties to even, NaNs stay quiet NaNs.
inline __m256i round_16(__m512i bits) {
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(rounded);
}

// a [rows, pairs] = bf16(input [rows, in]), k in the low half of pair k/2 (the order of memory); an odd in is
// padded with a zero.
inline void round_input(uint32_t* a, const float* input, size_t rows, size_t in) {
    const size_t pairs = (in + 1) / 2;
    parallel_for(rows, [&](size_t r) {
        const float* x = input + r * in;
        uint32_t* y = a + r * pairs;
        size_t k = 0;
        for (; k + 32 <= in; k += 32) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + k / 2), round_16(_mm512_loadu_si512(x + k)));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + k / 2 + 8), round_16(_mm512_loadu_si512(x + k + 16)));
        }
        for (; k < in; k += 2)
            y[k / 2] = uint32_t(float_to_bf16(x[k])) | (k + 1 < in ? uint32_t(float_to_bf16(x[k + 1])) << 16 : 0u);
    }, in);
}

// Transposes 16 rows of 16 32-bit elements in registers: afterwards r[i] holds element i of each row.
inline void transpose_16x16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {  // within 128-bit lanes: rows i, i+1 interleaved
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // u[i + c], lane L: element 4L + c of rows i..i+3
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; ++c) {  // gather lane L of u[c], u[4 + c], u[8 + c], u[12 + c] into r[4L + c]
        const __m512i even_low = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), odd_low = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);
        const __m512i even_high = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88),
                      odd_high = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_i32x4(even_low, even_high, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(even_low, even_high, 0xdd);
        r[4 + c] = _mm512_shuffle_i32x4(odd_low, odd_high, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(odd_low, odd_high, 0xdd);
    }
}

// panel [pairs, 16]: lane j of pair q holds W[j, k0 + 2q] (low half) and W[j, k0 + 2q + 1], from weight rows
// [0, width) (width <= 16) of a row-major [., in] matrix; lanes past width and k past in are zero.
inline void pack_panel(uint32_t* panel, const uint16_t* weight, size_t in, size_t width, size_t k0, size_t pairs) {
    const size_t k_end = std::min(in, k0 + 2 * pairs);
    for (size_t q = 0; q < pairs; q += 16) {
        const size_t k = k0 + 2 * q, count = std::min(k_end - k, size_t(32));
        const __mmask32 mask = count == 32 ? ~__mmask32(0) : __mmask32((1u << count) - 1);
        __m512i r[16];
        for (size_t j = 0; j < 16; ++j)
            r[j] = j < width ? _mm512_maskz_loadu_epi16(mask, weight + j * in + k) : _mm512_setzero_si512();
        transpose_16x16(r);
        for (size_t i = 0; i < std::min(size_t(16), pairs - q); ++i)
            _mm512_store_si512(reinterpret_cast<__m512i*>(panel + (q + i) * kPanel), r[i]);
    }
}

// c [MR, 16 NP] (+)= a [MR, pairs] * panels [NP][pairs, 16], then + bias if given. a rows are lda pairs apart,
// panels panel_stride pairs x 16 apart; last_mask selects the valid columns of the last panel.
template <size_t MR, size_t NP>
void micro_kernel(float* c, size_t ldc, const uint32_t* a, size_t lda, const uint32_t* w, size_t panel_stride,
                  size_t pairs, bool accumulate, const float* bias, __mmask16 last_mask) {
    __m512 sum[MR][NP];
    for (size_t r = 0; r < MR; ++r)
        for (size_t p = 0; p < NP; ++p) sum[r][p] = _mm512_setzero_ps();
    for (size_t q = 0; q < pairs; ++q) {
        __m512i b[NP];
        for (size_t p = 0; p < NP; ++p) b[p] = _mm512_load_si512(w + p * panel_stride + q * kPanel);
        for (size_t r = 0; r < MR; ++r) {
            const __m512i x = _mm512_set1_epi32(int(a[r * lda + q]));
            for (size_t p = 0; p < NP; ++p) sum[r][p] = _mm512_dpbf16_ps(sum[r][p], (__m512bh)x, (__m512bh)b[p]);
        }
    }
    for (size_t r = 0; r < MR; ++r)
        for (size_t p = 0; p < NP; ++p) {
            const __mmask16 mask = p + 1 == NP ? last_mask : __mmask16(0xffff);
            float* target = c + r * ldc + p * kPanel;
            __m512 value = sum[r][p];
            if (accumulate) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, target));
            if (bias) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, bias + p * kPanel));
            _mm512_mask_storeu_ps(target, mask, value);
        }
}

using MicroKernel = void (*)(float*, size_t, const uint32_t*, size_t, const uint32_t*, size_t, size_t, bool,
                             const float*, __mmask16);
template <size_t MR>
MicroKernel kernel_for_rows(size_t panels) {
    return panels == 1 ? &micro_kernel<MR, 1> : panels == 2 ? &micro_kernel<MR, 2> : &micro_kernel<MR, 3>;
}
inline MicroKernel kernel_for(size_t rows, size_t panels) {
    static constexpr MicroKernel (*by_rows[kRows])(size_t) = {
        kernel_for_rows<1>, kernel_for_rows<2>, kernel_for_rows<3>, kernel_for_rows<4>,
        kernel_for_rows<5>, kernel_for_rows<6>, kernel_for_rows<7>, kernel_for_rows<8>};
    return by_rows[rows - 1](panels);
}

// c [rows, width] (ldc apart) (+)= a [rows, pairs] (lda apart) * packed [panels][pairs, 16], + bias if given.
inline void block_product(float* c, size_t ldc, const uint32_t* a, size_t lda, size_t rows, const uint32_t* packed,
                          size_t pairs, size_t width, bool accumulate, const float* bias) {
    const size_t panels = (width + kPanel - 1) / kPanel;
    for (size_t r0 = 0; r0 < rows; r0 += kRows) {  // 8 rows of a (8 x 384 x 2 B) stay in L1 across the panels
        const size_t mr = std::min(kRows, rows - r0);
        for (size_t p0 = 0; p0 < panels; p0 += kPanels) {
            const size_t np = std::min(kPanels, panels - p0);
            const size_t last_width = std::min(kPanel, width - (p0 + np - 1) * kPanel);
            kernel_for(mr, np)(c + r0 * ldc + p0 * kPanel, ldc, a + r0 * lda, lda, packed + p0 * pairs * kPanel,
                               pairs * kPanel, pairs, accumulate, bias ? bias + p0 * kPanel : nullptr,
                               __mmask16((1u << last_width) - 1));
        }
    }
}

// One thread's share: c [rows, width] (+)= a [rows, pairs] * weight [width, in]^T + bias, packing weight in
// blocks.
inline void thread_product(float* c, size_t ldc, const uint32_t* a, size_t lda, size_t rows, const uint16_t* weight,
                           size_t in, size_t width, const float* bias, bool accumulate) {
    const size_t pairs = lda, largest_block = bf16dot::block_pairs();
    const size_t k_blocks = (pairs + largest_block - 1) / largest_block;
    const size_t block_pairs = (pairs + k_blocks - 1) / k_blocks;  // even blocks: in 576 (288 pairs) -> 2 x 144
    const size_t block_columns = bf16dot::block_columns(largest_block);
    thread_local std::vector<uint32_t> storage;
    const size_t needed = block_columns * block_pairs + kPanel;
    if (storage.size() < needed) storage.resize(needed);
    uint32_t* packed = storage.data() + (kPanel - (reinterpret_cast<uintptr_t>(storage.data()) / 4) % kPanel) % kPanel;
    for (size_t n0 = 0; n0 < width; n0 += block_columns) {
        const size_t columns = std::min(block_columns, width - n0);
        for (size_t q0 = 0; q0 < pairs; q0 += block_pairs) {
            const size_t count = std::min(block_pairs, pairs - q0);
            for (size_t p = 0; p * kPanel < columns; ++p)
                pack_panel(packed + p * count * kPanel, weight + (n0 + p * kPanel) * in, in,
                           std::min(kPanel, columns - p * kPanel), 2 * q0, count);
            block_product(c + n0, ldc, a + q0, lda, rows, packed, count, columns, accumulate || q0 > 0,
                          bias && q0 + count == pairs ? bias + n0 : nullptr);
        }
    }
}

// output [rows, out] (+)= bf16(input) [rows, in] * weight [out, in]^T + bias
inline void linear(float* output, const float* input, const uint16_t* weight, const float* bias, size_t rows,
                   size_t in, size_t out, bool accumulate) {
    if (rows == 0 || out == 0) return;
    if (in == 0) {
        for (size_t r = 0; r < rows; ++r)
            for (size_t o = 0; o < out; ++o) output[r * out + o] = (accumulate ? output[r * out + o] : 0.0f) +
                                                                   (bias ? bias[o] : 0.0f);
        return;
    }
    const size_t pairs = (in + 1) / 2;
    thread_local std::vector<uint32_t> rounded;  // this thread's; the workers see it through `a`
    rounded.resize(rows * pairs);
    round_input(rounded.data(), input, rows, in);
    const uint32_t* a = rounded.data();
    // Split the columns (each thread packs only its own weights) unless that leaves a thread under 6 panels.
    const size_t threads = size_t(num_threads());
    const size_t column_chunk = ((out + threads - 1) / threads + kPanel - 1) / kPanel * kPanel;
    const size_t row_chunk = ((rows + threads - 1) / threads + kRows - 1) / kRows * kRows;
    const size_t work = rows * in * out;
    if (threads > 1 && column_chunk < 6 * kPanel && rows >= threads * kRows) {
        parallel_for((rows + row_chunk - 1) / row_chunk, [&](size_t t) {
            const size_t r0 = t * row_chunk, r1 = std::min(rows, r0 + row_chunk);
            thread_product(output + r0 * out, out, a + r0 * pairs, pairs, r1 - r0, weight, in, out, bias, accumulate);
        }, work / threads);
    } else {
        parallel_for((out + column_chunk - 1) / column_chunk, [&](size_t t) {
            const size_t c0 = t * column_chunk, c1 = std::min(out, c0 + column_chunk);
            thread_product(output + c0, out, a, pairs, rows, weight + c0 * in, in, c1 - c0, bias ? bias + c0 : nullptr,
                           accumulate);
        }, work / threads);
    }
}

}  // namespace bf16dot
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

}  // namespace detail

// output [rows, out] = bf16(input) [rows, in] * weight [out, in]^T + bias (bias may be null); float32 sums.
// Float with AVX512-BF16: the vdpbf16ps kernel; otherwise the input is rounded and the product widened.
// accumulate: output += instead.
template <typename T>
void linear_forward_bf16_compute(T* output, const T* input, const uint16_t* weight, const T* bias, size_t rows,
                                 size_t in, size_t out, bool accumulate = false) {
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
        detail::bf16dot::linear(output, input, weight, bias, rows, in, out, accumulate);
        return;
    }
#endif
    detail::linear_bf16_compute_portable(output, input, weight, bias, rows, in, out, accumulate);
}

// Mixed-precision training's input gradient of a linear layer: dinput [rows, in] += bf16(doutput) [rows, out] *
// weight [out, in], from the weight rounded to bf16 and stored transposed, weight_transposed [in, out]; float32
// sums. The same product as the forward's, with the roles of in and out swapped.
template <typename T>
void linear_backward_input_bf16(T* dinput, const T* doutput, const uint16_t* weight_transposed, size_t rows,
                                size_t in, size_t out) {
    linear_forward_bf16_compute(dinput, doutput, weight_transposed, static_cast<const T*>(nullptr), rows, out, in,
                                true);
}

namespace reference {
template <typename T>
void linear_forward_bf16_compute(T* output, const T* input, const uint16_t* weight, const T* bias, size_t rows,
                                 size_t in, size_t out) {
    for (size_t r = 0; r < rows; ++r)
        for (size_t o = 0; o < out; ++o) {
            double sum = 0;
            for (size_t i = 0; i < in; ++i)
                sum += double(bf16_to_float(detail::round_to_bf16(input[r * in + i]))) *
                       double(bf16_to_float(weight[o * in + i]));
            output[r * out + o] = T(sum + (bias ? double(bias[o]) : 0.0));
        }
}
}  // namespace reference

}  // namespace c3::ops
