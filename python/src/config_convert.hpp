// TransformerConfig <-> Python dict, shared by the IO and model bindings. The dict keys are the C++ field names.
#pragma once
#include "bindings.hpp"
#include "c3/model/config.hpp"

namespace c3::python {

// Unknown keys and wrong value types are ConfigErrors; missing keys keep the defaults, except head_dim, which
// defaults to hidden_size / num_heads. The result is validated.
TransformerConfig config_from_dict(const py::dict& values);
py::dict config_to_dict(const TransformerConfig& config);

}  // namespace c3::python
