// One level of parallelism: OpenMP loops over independent rows or (batch, head) pairs. Eigen's matrix
// products parallelise themselves when called outside such a loop and run single-threaded inside one.
#pragma once
#include <cstddef>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <Eigen/Core>

namespace c3 {

inline int num_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
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
    Eigen::setNbThreads(threads > 0 ? threads : 0);
}

// Runs body(i) for i in [0, count) across the OpenMP threads. Static schedule: the same thread count
// always gives the same partition, which keeps reductions inside body bit-reproducible.
template <typename Body>
void parallel_for(size_t count, Body&& body) {
#ifdef _OPENMP
    if (count > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < static_cast<long long>(count); ++i) body(static_cast<size_t>(i));
        return;
    }
#endif
    for (size_t i = 0; i < count; ++i) body(i);
}

}  // namespace c3
