// Shapes, and Eigen maps over plain buffers: matrix products read and write the memory in place, so nothing is
// copied to multiply.
#pragma once
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "c3/core/errors.hpp"
#include "c3/core/simd.hpp"

namespace c3 {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
// A row-major matrix whose rows are `stride` elements apart (one head's slice of a [tokens, heads*dim] buffer).
template <typename T>
using StridedMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using VectorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

using Shape = std::vector<size_t>;

inline size_t shape_size(const Shape& shape) {
    return std::accumulate(shape.begin(), shape.end(), size_t{1}, [](size_t a, size_t b) { return a * b; });
}

inline std::string shape_string(const Shape& shape) {
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

// Grows a buffer to at least `count` elements; never shrinks, so repeated calls at one size allocate once.
template <typename T>
T* ensure_size(std::vector<T>& buffer, size_t count) {
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
}

}  // namespace c3
