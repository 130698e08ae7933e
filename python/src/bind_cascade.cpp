#include "bindings.hpp"

namespace c3::python {
void bind_cascade(py::module_& m) {}
}  // namespace c3::python
