// Views and storage. A view is a pointer and a shape and owns nothing; storage is a std::vector that owns.
// Matrix products go through Eigen maps over the same memory, so nothing is copied to multiply.
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

// A non-owning n-d view.
template <typename T>
struct TensorView {
    T* data = nullptr;
    Shape shape;

    size_t size() const { return shape_size(shape); }
    size_t dim(size_t axis) const { return shape.at(axis); }
};

// Owning n-d storage; view() hands out non-owning views of it.
template <typename T>
struct Tensor {
    std::vector<T> values;
    Shape shape;

    Tensor() = default;
    explicit Tensor(Shape tensor_shape, T fill = T(0)) : values(shape_size(tensor_shape), fill), shape(std::move(tensor_shape)) {}

    size_t size() const { return values.size(); }
    T* data() { return values.data(); }
    const T* data() const { return values.data(); }
    TensorView<T> view() { return {values.data(), shape}; }
    TensorView<const T> view() const { return {values.data(), shape}; }
};

template <typename T>
void check_shape(const TensorView<T>& view, const Shape& expected, const char* what) {
    C3_CHECK(view.shape == expected, ShapeError, what, ": expected shape ", shape_string(expected), ", got ",
             shape_string(view.shape));
}

// Grows a buffer to at least `count` elements; never shrinks, so repeated calls at one size allocate once.
template <typename T>
T* ensure_size(std::vector<T>& buffer, size_t count) {
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
}

}  // namespace c3
