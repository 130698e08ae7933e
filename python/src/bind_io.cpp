#include "bindings.hpp"

namespace c3::python {
void bind_io(py::module_& m) {}
}  // namespace c3::python
