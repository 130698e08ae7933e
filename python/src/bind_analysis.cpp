#include "bindings.hpp"

namespace c3::python {
void bind_analysis(py::module_& m) {}
}  // namespace c3::python
