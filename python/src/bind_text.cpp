#include "bindings.hpp"

namespace c3::python {
void bind_text(py::module_& m) {}
}  // namespace c3::python
