// TransformerConfig <-> Python dict, shared by the IO and model bindings. The dict keys are the C++ field names.
#pragma once
#include "bindings.hpp"
#include "c3/model/config.hpp"

namespace c3::python {

// Unknown keys and wrong value types are ConfigErrors; missing keys keep the defaults, except head_dim, which
// defaults to hidden_size / num_heads. The result is validated.
TransformerConfig config_from_dict(const py::dict& values);
py::dict config_to_dict(const TransformerConfig& config);

// Checked conversions of config values (ConfigError naming the key): integers are range-checked as Python ints
// before they are narrowed, so 2**64 - 1 or -1 never wraps into a size.
size_t size_from_python(const std::string& key, const py::handle& value);
int64_t integer_from_python(const std::string& key, const py::handle& value, int64_t low, int64_t high);
int token_from_python(const std::string& key, const py::handle& value);  // an id, or None = -1
std::vector<int32_t> token_list_from_python(const std::string& key, const py::handle& value);
std::string string_from_python(const std::string& key, const py::handle& value);

}  // namespace c3::python
