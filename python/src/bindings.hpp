// One Python module, c3._core, split into translation units by subject. Each bind_* adds its part.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "c3/core/errors.hpp"
#include "c3/core/tensor.hpp"

namespace c3::python {
namespace py = pybind11;

void bind_model(py::module_& m);
void bind_io(py::module_& m);
void bind_text(py::module_& m);
void bind_analysis(py::module_& m);
void bind_train(py::module_& m);
void bind_cascade(py::module_& m);

// A C-contiguous NumPy array of T: the input is used in place when it already is one (no copy), and
// converted once otherwise (a different dtype or a strided view).
template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline Shape array_shape(const py::array& array) {
    Shape shape(size_t(array.ndim()));
    for (size_t i = 0; i < shape.size(); ++i) shape[i] = size_t(array.shape(py::ssize_t(i)));
    return shape;
}

// Checks an array's rank and, where expected[i] is not 0, its extent along axis i.
inline void expect_shape(const py::array& array, std::initializer_list<size_t> expected, const char* what) {
    const Shape shape = array_shape(array);
    bool ok = shape.size() == expected.size();
    size_t i = 0;
    for (size_t want : expected) {
        if (ok && want != 0 && shape[i] != want) ok = false;
        ++i;
    }
    if (!ok) {
        std::string text = "[";
        i = 0;
        for (size_t want : expected) text += (i++ ? ", " : "") + (want ? std::to_string(want) : std::string("*"));
        throw ShapeError(std::string(what) + ": expected shape " + text + "], got " + shape_string(shape));
    }
}

// A NumPy array that views `data` and keeps `owner` alive while the array lives (zero copy out).
template <typename T>
py::array_t<T> view_array(T* data, const Shape& shape, py::handle owner) {
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    return py::array_t<T>(dims, data, owner);
}

// Moves a std::vector into a NumPy array without copying; a capsule frees it with the array.
template <typename T>
py::array_t<T> move_to_array(std::vector<T>&& values, const Shape& shape) {
    auto* owned = new std::vector<T>(std::move(values));
    py::capsule free_when_done(owned, [](void* pointer) { delete static_cast<std::vector<T>*>(pointer); });
    std::vector<py::ssize_t> dims(shape.begin(), shape.end());
    return py::array_t<T>(dims, owned->data(), free_when_done);
}

}  // namespace c3::python
