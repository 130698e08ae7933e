// What the including translation unit was compiled with: the compiler, the x86 instruction sets it may use,
// OpenMP, Eigen, and the hand-written kernels those select: compile-time facts, so that a program reports the
// code it runs, not what the machine offers. kernel_blocking() adds the one run-time choice of that code: the
// cache blocking it derives from the CPU's caches (core/cpu_info.hpp).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "c3/ops/broadcast_gemm.hpp"
#include "c3/ops/matmul_bf16.hpp"

namespace c3 {

struct BuildInfo {
    std::string compiler;                       // "GCC 12.2.0", "clang 16.0.6"
    std::vector<std::string> instruction_sets;  // enabled at compile time, e.g. SSE4.2, AVX2, FMA, AVX512F
    std::string openmp;                         // "" without OpenMP, else "4.5 (201511)"
    std::string eigen;                          // "3.4.0"
    std::string eigen_simd;                     // Eigen's vector paths, e.g. "AVX512, FMA, AVX2, AVX, SSE, SSE2, ..."
    std::vector<std::string> kernels;           // the instruction-set-specific kernels compiled in
};

inline BuildInfo build_info() {
    BuildInfo info;
#if defined(__clang__)
    info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    info.compiler = "GCC " __VERSION__;
#else
    info.compiler = "unknown";
#endif
#if defined(__SSE4_2__)
    info.instruction_sets.push_back("SSE4.2");
#endif
#if defined(__POPCNT__)
    info.instruction_sets.push_back("POPCNT");
#endif
#if defined(__AVX__)
    info.instruction_sets.push_back("AVX");
#endif
#if defined(__AVX2__)
    info.instruction_sets.push_back("AVX2");
#endif
#if defined(__FMA__)
    info.instruction_sets.push_back("FMA");
#endif
#if defined(__F16C__)
    info.instruction_sets.push_back("F16C");
#endif
#if defined(__AVX512F__)
    info.instruction_sets.push_back("AVX512F");
#endif
#if defined(__AVX512BW__)
    info.instruction_sets.push_back("AVX512BW");
#endif
#if defined(__AVX512VL__)
    info.instruction_sets.push_back("AVX512VL");
#endif
#if defined(__AVX512BF16__)
    info.instruction_sets.push_back("AVX512BF16");
#endif
#if defined(__ARM_NEON)
    info.instruction_sets.push_back("NEON");
#endif
#if defined(_OPENMP)
    const long date = _OPENMP;
    const char* version = date >= 202011 ? "5.1" : date >= 201811 ? "5.0" : date >= 201511 ? "4.5" : "4.0 or older";
    info.openmp = std::string(version) + " (" + std::to_string(date) + ")";
#endif
    info.eigen = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                 std::to_string(EIGEN_MINOR_VERSION);
    info.eigen_simd = Eigen::SimdInstructionSetsInUse();
#if defined(__AVX512F__)
    info.kernels.push_back("AVX-512 reductions (ops/vector_math.hpp)");
    info.kernels.push_back("AVX-512 broadcast_gemm (ops/broadcast_gemm.hpp)");
#elif defined(C3_BROADCAST_GEMM)
    info.kernels.push_back("AVX2 broadcast_gemm (ops/broadcast_gemm.hpp)");
#endif
    if (ops::bf16_dot_product_available) info.kernels.push_back("AVX512-BF16 dot products (ops/matmul_bf16.hpp)");
    return info;
}

// The cache blocking the kernels compiled in choose on this CPU (run-time, from cpu_info()): name -> size.
inline std::vector<std::pair<std::string, size_t>> kernel_blocking() {
    std::vector<std::pair<std::string, size_t>> sizes;
#if defined(C3_BROADCAST_GEMM)
    sizes.emplace_back("broadcast_gemm depth, 256 columns", ops::gemm_depth_block(256));
    sizes.emplace_back("broadcast_gemm depth, 1024 columns", ops::gemm_depth_block(1024));
    sizes.emplace_back("broadcast_gemm widest output", ops::gemm_max_columns());
#endif
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    const size_t pairs = ops::detail::bf16dot::block_pairs();
    sizes.emplace_back("bf16 block depth (k)", 2 * pairs);
    sizes.emplace_back("bf16 block columns", ops::detail::bf16dot::block_columns(pairs));
#endif
    return sizes;
}

}  // namespace c3
