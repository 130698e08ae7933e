// oneDNN's float32 GEMM (dnnl_sgemm), loaded at run time from a libdnnl built on GNU OpenMP (PyPI's
// onednn-cpu-gomp; `pip install c3[onednn]`). Its packed, JIT-generated kernels run large products 1.6-1.8x faster
// than Eigen's and broadcast_gemm on a 2-core AMD Zen 3 (docs/BENCHMARKS.md). Nothing links against it: the library
// stays header-only, and without a loaded library every product takes the native kernels (matmul.hpp).
//
// One level of parallelism holds: c3 splits a product into blocks across its threads (parallel_blocks) and each
// block calls sgemm on one thread, so a sum over the depth is never split across threads and a result does not
// depend on the thread count.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define C3_HAVE_DLOPEN 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "c3/core/errors.hpp"

namespace c3::ops {

namespace detail {
// dnnl.h's declarations, restated so that no oneDNN header is needed to build c3. Row-major:
// C [M, N] = alpha * op(A) [M, K] * op(B) [K, N] + beta * C; lda, ldb, ldc are the row strides as stored.
using SgemmFunction = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
struct DnnlVersion {
    int major, minor, patch;
    const char* hash;
    unsigned cpu_runtime, gpu_runtime;
};
using VersionFunction = const DnnlVersion* (*)();
constexpr unsigned kDnnlRuntimeOpenMP = 2;  // DNNL_RUNTIME_OMP

// One loaded library: its sgemm with the description that names it, published together by one atomic pointer so
// that onednn_in_use never pairs one library's name with another's function. Loads are rare and every Loaded stays
// alive for the life of the process (a product may be running on another thread), held by the list below.
struct Loaded {
    SgemmFunction sgemm;
    std::string description;
};
inline std::atomic<const Loaded*>& onednn_slot() {
    static std::atomic<const Loaded*> slot{nullptr};
    return slot;
}
inline const Loaded* keep_loaded(SgemmFunction sgemm, std::string description) {
    static std::mutex mutex;
    static std::vector<std::unique_ptr<Loaded>> kept;
    std::lock_guard<std::mutex> lock(mutex);
    kept.push_back(std::make_unique<Loaded>(Loaded{sgemm, std::move(description)}));
    return kept.back().get();
}
}  // namespace detail

// Products smaller than this many multiply-adds (M * N * K) stay with the native kernels, whose cache-resident
// micro-kernels need no packing: a call into oneDNN costs a few microseconds.
inline constexpr size_t kOnednnMinWork = size_t(1) << 20;

// Loads libdnnl from `path` (a file, or a name the dynamic loader searches for) and sends every large float product
// to its sgemm from then on. Throws IOError if it cannot be loaded and ValueError if it is not a CPU build on GNU
// OpenMP (a TBB or SYCL build would start its own threads beside c3's).
inline void load_onednn(const std::string& path) {
#if defined(C3_HAVE_DLOPEN)
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* reason = dlerror();
        throw IOError("cannot load oneDNN from " + path + ": " + (reason ? reason : "unknown reason"));
    }
    auto sgemm = reinterpret_cast<detail::SgemmFunction>(dlsym(handle, "dnnl_sgemm"));
    auto version = reinterpret_cast<detail::VersionFunction>(dlsym(handle, "dnnl_version"));
    if (!sgemm || !version) {
        dlclose(handle);
        throw ValueError(path + " is not a oneDNN library (no dnnl_sgemm or dnnl_version)");
    }
    const detail::DnnlVersion* v = version();
    if (v->cpu_runtime != detail::kDnnlRuntimeOpenMP) {
        dlclose(handle);
        throw ValueError(path + " is a oneDNN build whose CPU runtime is not OpenMP (runtime code " +
                         std::to_string(v->cpu_runtime) + "); c3 needs one on GNU OpenMP, such as PyPI's "
                         "onednn-cpu-gomp");
    }
    // The handle stays open for the life of the process: a product may be running on another thread.
    detail::onednn_slot().store(detail::keep_loaded(
        sgemm, "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                   std::to_string(v->patch) + " (" + path + ")"));
#else
    throw IOError("cannot load oneDNN from " + path + ": this build has no dynamic loader");
#endif
}

// Sends every float product back to the native kernels (a loaded library stays loaded).
inline void unload_onednn() { detail::onednn_slot().store(nullptr); }

// "oneDNN 3.2.0 (path)" while its sgemm takes the large products, else "".
inline std::string onednn_in_use() {
    const detail::Loaded* loaded = detail::onednn_slot().load();
    return loaded ? loaded->description : std::string();
}

// C [M, N] = alpha * A * B + beta * C through oneDNN on the calling thread, where it is loaded, T is float and the
// product is large enough; false otherwise (the caller uses the native kernels). A is read as op(A) with transpose_a
// ('N' or 'T'), B likewise; strides as in detail::SgemmFunction. Runs inside parallel regions, so it never throws: a
// status other than success (arguments oneDNN rejects, leaving C untouched) sends the product to the native kernels
// too.
template <typename T>
bool onednn_gemm_where_suited(char transpose_a, char transpose_b, size_t M, size_t N, size_t K, const T* A,
                              size_t lda, const T* B, size_t ldb, T beta, T* C, size_t ldc, T alpha = T(1)) {
    if constexpr (!std::is_same_v<T, float>) {
        return false;
    } else {
        const detail::Loaded* loaded = detail::onednn_slot().load(std::memory_order_acquire);
        // A few rows (a decode step) are a matrix-vector product, bound by memory, which the native kernels stream.
        if (!loaded || M < 16 || N < 16 || K < 16 || M * N * K < kOnednnMinWork) return false;
#ifdef _OPENMP
        // Outside a parallel region oneDNN would start its own threads (a second level); a block runs on one.
        const bool outside = !omp_in_parallel();
        const int threads = omp_get_max_threads();
        if (outside) omp_set_num_threads(1);
#endif
        const int status = loaded->sgemm(transpose_a, transpose_b, int64_t(M), int64_t(N), int64_t(K), alpha, A,
                                 int64_t(lda), B, int64_t(ldb), beta, C, int64_t(ldc));
#ifdef _OPENMP
        if (outside) omp_set_num_threads(threads);
#endif
        return status == 0;
    }
}

}  // namespace c3::ops
