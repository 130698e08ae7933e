// One Python module, c3._core, split into translation units by subject. Each bind_* adds its part.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <unordered_map>

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

// The lifetime rule for NumPy views of a model's buffers: a view's base is a BufferLease, which
// keeps the owning Python object alive. A call that must reallocate a viewed buffer (resize_vocabulary,
// store_as_bf16) first calls retire_viewed_buffer: when views of the buffer are alive,
// the lease takes the old buffer and the object continues on a copy. The views then keep valid memory that no
// longer aliases the object (as PyTorch's tensors keep their old storage), so no view ever dangles.
struct BufferLease {
    py::object owner;
    std::vector<std::vector<float>> retired;
};

// Buffer address -> weak reference to its lease; used with the GIL held.
inline std::unordered_map<const void*, py::object>& lease_registry() {
    static auto* registry = new std::unordered_map<const void*, py::object>();  // never destroyed: outlives Python
    return *registry;
}

inline py::object live_lease(const void* data) {
    auto& registry = lease_registry();
    const auto found = registry.find(data);
    if (found == registry.end()) return py::none();
    py::object lease = found->second();  // a dead weak reference gives None
    if (lease.is_none()) registry.erase(found);
    return lease;
}

// The lease for views of `buffer`, shared by every view of it while any is alive.
inline py::object lease_for(std::vector<float>& buffer, py::handle owner) {
    py::object lease = live_lease(buffer.data());
    if (!lease.is_none()) return lease;
    lease = py::cast(BufferLease{py::reinterpret_borrow<py::object>(owner), {}});
    if (!buffer.empty()) lease_registry()[buffer.data()] = py::weakref(lease);
    return lease;
}

// Call before anything that may free or move `buffer`'s memory (see BufferLease). The caller then rebinds
// whatever pointed into the buffer.
inline void retire_viewed_buffer(std::vector<float>& buffer) {
    if (buffer.empty()) return;
    py::object lease = live_lease(buffer.data());
    if (lease.is_none()) return;
    lease_registry().erase(buffer.data());
    BufferLease& holder = lease.cast<BufferLease&>();
    holder.retired.push_back(std::move(buffer));
    buffer = holder.retired.back();
}

// NumPy views of a leased float buffer.
inline py::array_t<float> leased_view(std::vector<float>& buffer, size_t offset, const Shape& shape, py::handle owner) {
    return view_array(buffer.data() + offset, shape, lease_for(buffer, owner));
}

// A Python str as UTF-8. A str may hold a lone surrogate (U+D800..U+DFFF, e.g. from surrogateescape), which
// UTF-8 cannot encode: that is a c3.Utf8Error naming `what` and the character's index, where pybind11's own
// conversion raises UnicodeEncodeError or a RuntimeError.
inline std::string utf8_from_python(const py::handle& text, const std::string& what) {
    C3_CHECK(PyUnicode_Check(text.ptr()), ValueError, what, " must be a str, got ", Py_TYPE(text.ptr())->tp_name);
    Py_ssize_t size = 0;
    if (const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size)) return std::string(data, size_t(size));
    PyErr_Clear();
    const Py_ssize_t length = PyUnicode_GetLength(text.ptr());
    for (Py_ssize_t index = 0; index < length; ++index) {
        const Py_UCS4 character = PyUnicode_ReadChar(text.ptr(), index);
        if (character >= 0xD800 && character <= 0xDFFF) {
            std::ostringstream code;
            code << std::hex << std::uppercase << unsigned(character);
            throw Utf8Error(what + ": character " + std::to_string(index) + " is a lone surrogate (U+" + code.str() +
                            "), which is not text and has no UTF-8 encoding");
        }
    }
    throw Utf8Error(what + ": cannot be encoded as UTF-8");
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
