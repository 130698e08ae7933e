// TransformerConfig <-> Python dict, shared by the IO and model bindings. The dict keys are the C++ field names.
#pragma once
#include <nlohmann/json.hpp>

#include "bindings.hpp"
#include "c3/model/config.hpp"

namespace c3::python {

// A Python value as JSON, for the C++ config parsers: None, bool (Python's or NumPy's), integers (int and NumPy
// integers, range-checked to 64 bits), str, lists and tuples, dicts with str keys, and float or anything float()
// reads (NumPy floats). Anything else is a ConfigError naming `what` ("config key 'x'"); a dict's entries are
// named "<what> key '<key>'". Nesting is bounded by kMaxJsonDepth, as in JSON files.
nlohmann::json json_from_python(const py::handle& value, const std::string& what, size_t depth = 0);

// A c3 config dict (the keys are TransformerConfig's field names) through io::parse_model_config, which fills in
// the defaults and validates; `source` names the dict in its ConfigErrors.
TransformerConfig config_from_dict(const py::dict& values, const std::string& source = "model config");
py::dict config_to_dict(const TransformerConfig& config);

// Checked conversions of config values (ConfigError naming the key): integers are range-checked as Python ints
// before they are narrowed, so 2**64 - 1 or -1 never wraps into a size.
size_t size_from_python(const std::string& key, const py::handle& value);
int64_t integer_from_python(const std::string& key, const py::handle& value, int64_t low, int64_t high);
std::string string_from_python(const std::string& key, const py::handle& value);

}  // namespace c3::python
