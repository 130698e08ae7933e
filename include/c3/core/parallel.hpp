// One level of parallelism: OpenMP loops over independent rows, (batch, head) pairs or blocks of a matrix
// product. Eigen itself always runs single-threaded (its own parallel GEMM spin-waits between threads, which
// costs more than it gains on the small products of small models); c3 splits products into blocks instead.
#pragma once
#include <algorithm>
#include <cstddef>
#include <exception>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "c3/core/cpu_info.hpp"
#include "c3/core/simd.hpp"

namespace c3 {

namespace detail {
inline thread_local int serial_depth = 0;  // SerialRegion nesting on this thread
}

// While one lives, the loops that its thread reaches run on that thread alone, as they would inside a parallel
// region: a data-parallel share computes the same on its own as beside other shares.
struct SerialRegion {
    SerialRegion() { ++detail::serial_depth; }
    ~SerialRegion() { --detail::serial_depth; }
    SerialRegion(const SerialRegion&) = delete;
    SerialRegion& operator=(const SerialRegion&) = delete;
};

// Threads available to the caller: 1 inside a parallel region or a SerialRegion (one level of parallelism; an
// inner loop runs on the thread that reached it).
inline int num_threads() {
#ifdef _OPENMP
    return omp_in_parallel() || detail::serial_depth ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

inline void set_num_threads(int threads) {
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

// Below this many scalar operations a loop runs on one thread: waking the others costs more.
constexpr size_t kParallelWork = 1 << 15;

// Runs body(i) for i in [0, count) across the OpenMP threads. Static schedule: the same thread count
// always gives the same partition, which keeps reductions inside body bit-reproducible.
// work_per_item estimates the scalar operations in one body call (0: always parallel).
template <typename Body>
void parallel_for(size_t count, Body&& body, size_t work_per_item = 0) {
#ifdef _OPENMP
    if (count > 1 && num_threads() > 1 &&
        (work_per_item == 0 || count * work_per_item >= kParallelWork)) {
        // The kernels' blocking reads the caches on first use; read them here, so that a malformed
        // C3_CACHE_SIZES throws on the calling thread, not inside the region (which would terminate).
        cpu_info();
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < static_cast<long long>(count); ++i) body(static_cast<size_t>(i));
        return;
    }
#endif
    for (size_t i = 0; i < count; ++i) body(i);
}

// parallel_for with each index handed to the next free thread: for bodies whose results do not depend on which
// thread runs them (each writes its own outputs, sums nothing across indices), where threads run at different
// speeds, as memory-bound streams on a shared machine do.
template <typename Body>
void parallel_for_dynamic(size_t count, Body&& body) {
#ifdef _OPENMP
    if (count > 1 && num_threads() > 1) {
        cpu_info();
#pragma omp parallel for schedule(dynamic, 1)
        for (long long i = 0; i < static_cast<long long>(count); ++i) body(static_cast<size_t>(i));
        return;
    }
#endif
    for (size_t i = 0; i < count; ++i) body(i);
}

// parallel_for for bodies that may throw. An exception must not leave an OpenMP region (it would terminate the
// process), so each index keeps its own and the one at the lowest index is rethrown to the caller once the loop
// is done: the same error whatever the thread count. Every index runs, even after one has thrown.
template <typename Body>
void parallel_for_checked(size_t count, Body&& body, size_t work_per_item = 0) {
    std::vector<std::exception_ptr> errors(count);
    parallel_for(count, [&](size_t i) {
        try {
            body(i);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    }, work_per_item);
    for (const std::exception_ptr& error : errors)
        if (error) std::rethrow_exception(error);
}

// body(begin, end) for the consecutive ranges of `chunk` indices that cover [0, count), across the threads
// (static schedule, and ranges that never depend on the thread count). work_per_index as parallel_for's estimate.
template <typename Body>
void parallel_ranges(size_t count, size_t chunk, Body&& body, size_t work_per_index = 1) {
    parallel_for((count + chunk - 1) / chunk, [&](size_t i) { body(i * chunk, std::min(count, (i + 1) * chunk)); },
                 chunk * work_per_index);
}

// Eigen runs single-threaded everywhere; call once before any product (the Eigen default would be all cores).
inline void configure_eigen() {
    static const bool done = [] {
        Eigen::setNbThreads(1);
        return true;
    }();
    (void)done;
}

}  // namespace c3
