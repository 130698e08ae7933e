// Checkpoint IO for Python: safetensors files and directories, HF config.json, and the TransformerConfig <-> dict
// conversion the model bindings share. File reads, conversion and writes run with the GIL released.
#include <climits>
#include <cstring>
#include <optional>

#include "bindings.hpp"
#include "config_convert.hpp"
#include "c3/core/json.hpp"
#include "c3/io/files.hpp"
#include "c3/io/hf_config.hpp"
#include "c3/io/latents.hpp"
#include "c3/io/safetensors.hpp"

namespace c3::python {

namespace {

// Python's bool or NumPy's (which is not a subclass of it).
bool is_python_bool(const py::handle& value) {
    if (py::isinstance<py::bool_>(value)) return true;
    return py::isinstance<py::array>(value) ? false
                                            : py::hasattr(value, "dtype") && py::hasattr(value, "item") &&
                                                  py::str(value.attr("dtype").attr("kind")).cast<std::string>() == "b";
}

}  // namespace

size_t size_from_python(const std::string& key, const py::handle& value) {
    C3_CHECK(!is_python_bool(value) && PyIndex_Check(value.ptr()), ConfigError, "config key '", key,
             "' must be a non-negative integer, got ", std::string(py::repr(value)));
    const py::int_ number(py::reinterpret_borrow<py::object>(value));
    C3_CHECK(number >= py::int_(0), ConfigError, "config key '", key, "' must be a non-negative integer, got ",
             std::string(py::repr(number)));
    const unsigned long long result = PyLong_AsUnsignedLongLong(number.ptr());
    if (result == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        throw ConfigError("config key '" + key + "' is too large: " + std::string(py::repr(number)));
    }
    return size_t(result);
}

int64_t integer_from_python(const std::string& key, const py::handle& value, int64_t low, int64_t high) {
    C3_CHECK(!is_python_bool(value) && PyIndex_Check(value.ptr()), ConfigError, "config key '", key,
             "' must be an integer, got ", std::string(py::repr(value)));
    const py::int_ number(py::reinterpret_borrow<py::object>(value));
    int overflow = 0;
    const long long result = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
    C3_CHECK(overflow == 0 && !(result == -1 && PyErr_Occurred()) && result >= low && result <= high, ConfigError,
             "config key '", key, "' must lie in [", low, ", ", high, "], got ", std::string(py::repr(number)));
    return result;
}

std::string string_from_python(const std::string& key, const py::handle& value) {
    C3_CHECK(py::isinstance<py::str>(value), ConfigError, "config key '", key, "' must be a str, got ",
             std::string(py::repr(value)));
    return utf8_from_python(value, "config key '" + key + "'");
}

namespace {

io::DType float_dtype_from_python(const std::string& name) {
    io::DType dtype;
    C3_CHECK(io::try_dtype_from_name(name, dtype) && io::is_float_dtype(dtype), ValueError,
             "dtype must be 'F64', 'F32', 'F16' or 'BF16', got '", name, "'");
    return dtype;
}

io::Metadata metadata_from_python(const py::object& metadata) {
    io::Metadata result;
    if (metadata.is_none()) return result;
    C3_CHECK(py::isinstance<py::dict>(metadata), ValueError, "metadata must be a dict of str to str");
    for (auto item : metadata.cast<py::dict>()) {
        C3_CHECK(py::isinstance<py::str>(item.first) && py::isinstance<py::str>(item.second), ValueError,
                 "metadata must be a dict of str to str, got the entry ", std::string(py::repr(item.first)), ": ",
                 std::string(py::repr(item.second)));
        const std::string key = utf8_from_python(item.first, "metadata key");
        result[key] = utf8_from_python(item.second, "metadata '" + key + "'");
    }
    return result;
}

// NumPy's dtype for the non-float safetensors dtypes, which are returned as stored.
py::dtype numpy_dtype(io::DType dtype) {
    switch (dtype) {
        case io::DType::I64: return py::dtype::of<int64_t>();
        case io::DType::I32: return py::dtype::of<int32_t>();
        case io::DType::I16: return py::dtype::of<int16_t>();
        case io::DType::I8: return py::dtype::of<int8_t>();
        case io::DType::U8: return py::dtype::of<uint8_t>();
        case io::DType::BOOL: return py::dtype::of<bool>();
        default: return py::dtype::of<float>();
    }
}

// Every tensor of a file or checkpoint: floats converted to float32, the rest as stored.
template <typename Source>
py::dict read_all(const Source& source, const std::vector<io::TensorInfo>& infos) {
    struct Loaded {
        std::vector<float> values;
        std::vector<unsigned char> raw;
    };
    std::vector<Loaded> loaded(infos.size());
    {
        py::gil_scoped_release release;
        for (size_t i = 0; i < infos.size(); ++i) {
            if (io::is_float_dtype(infos[i].dtype)) loaded[i].values = source.template read<float>(infos[i].name);
            else loaded[i].raw = source.file_for(infos[i].name).read_raw(infos[i].name);
        }
    }
    py::dict result;
    for (size_t i = 0; i < infos.size(); ++i) {
        const io::TensorInfo& info = infos[i];
        if (io::is_float_dtype(info.dtype)) {
            result[py::str(info.name)] = move_to_array(std::move(loaded[i].values), info.shape);
        } else {
            std::vector<py::ssize_t> dims(info.shape.begin(), info.shape.end());
            py::array array(numpy_dtype(info.dtype), dims);
            if (!loaded[i].raw.empty()) std::memcpy(array.mutable_data(), loaded[i].raw.data(), loaded[i].raw.size());
            result[py::str(info.name)] = array;
        }
    }
    return result;
}

// A SafetensorsFile with the ShardedSafetensorsReader's file_for, so that read_all serves both.
struct SingleFile {
    const io::SafetensorsFile& file;
    const io::SafetensorsFile& file_for(const std::string&) const { return file; }
    template <typename T>
    std::vector<T> read(const std::string& name) const {
        return file.read<T>(name);
    }
};

py::list info_list(const std::vector<io::TensorInfo>& infos) {
    py::list result;
    for (const io::TensorInfo& info : infos) {
        py::tuple shape(info.shape.size());
        for (size_t i = 0; i < info.shape.size(); ++i) shape[i] = py::int_(info.shape[i]);
        result.append(py::make_tuple(info.name, io::dtype_name(info.dtype), shape));
    }
    return result;
}

// Float arrays from a dict, converted once to T (held in `arrays` so the pointers stay valid).
template <typename T>
std::vector<io::NamedTensor<T>> named_tensors(const py::dict& tensors, std::vector<py::object>& arrays) {
    std::vector<io::NamedTensor<T>> named;
    for (auto item : tensors) {
        C3_CHECK(py::isinstance<py::str>(item.first), ValueError, "tensor names must be str, got ",
                 std::string(py::repr(item.first)));
        const std::string name = utf8_from_python(item.first, "tensor name");
        auto array = Array<T>::ensure(item.second);
        C3_CHECK(array, ValueError, "tensor '", name, "' must be a numeric array");
        arrays.push_back(array);
        named.push_back({name, array_shape(array), array.data()});
    }
    return named;
}

template <typename T>
py::list write_tensors(const std::string& path, const py::dict& tensors, io::DType dtype, const io::Metadata& metadata,
                       bool sharded, size_t max_shard_bytes) {
    std::vector<py::object> arrays;
    const std::vector<io::NamedTensor<T>> named = named_tensors<T>(tensors, arrays);
    std::vector<std::string> written;
    {
        py::gil_scoped_release release;
        if (sharded) written = io::write_sharded(path, named, dtype, max_shard_bytes, metadata);
        else io::write_safetensors(path, named, dtype, metadata);
    }
    return py::cast(written);
}

py::list write_any(const std::string& path, const py::dict& tensors, const std::string& dtype_name,
                   const py::object& metadata_object, bool sharded, size_t max_shard_bytes) {
    const io::DType dtype = float_dtype_from_python(dtype_name);
    const io::Metadata metadata = metadata_from_python(metadata_object);
    // Double inputs stored as F64 (or narrowed from double directly, without double rounding through float).
    bool any_double = false;
    for (auto item : tensors)
        if (py::isinstance<py::array>(item.second) && item.second.cast<py::array>().dtype().is(py::dtype::of<double>()))
            any_double = true;
    if (dtype == io::DType::F64 || any_double)
        return write_tensors<double>(path, tensors, dtype, metadata, sharded, max_shard_bytes);
    return write_tensors<float>(path, tensors, dtype, metadata, sharded, max_shard_bytes);
}

}  // namespace

nlohmann::json json_from_python(const py::handle& value, const std::string& what, size_t depth) {
    // A bound as for JSON files: a list that holds itself would otherwise recurse until the stack overflows.
    C3_CHECK(depth <= kMaxJsonDepth, ConfigError, what, " nests more than ", kMaxJsonDepth, " levels deep");
    if (value.is_none()) return nullptr;
    if (is_python_bool(value)) return py::cast<bool>(value);
    if (PyIndex_Check(value.ptr())) {
        if (PyObject* index = PyNumber_Index(value.ptr())) {
            const py::int_ integer = py::reinterpret_steal<py::int_>(index);
            int overflow = 0;
            const long long signed_value = PyLong_AsLongLongAndOverflow(integer.ptr(), &overflow);
            if (!overflow) return int64_t(signed_value);
            if (overflow > 0) {
                const unsigned long long unsigned_value = PyLong_AsUnsignedLongLong(integer.ptr());
                if (!PyErr_Occurred()) return uint64_t(unsigned_value);
                PyErr_Clear();
            }
            throw ConfigError(what + ": " + std::string(py::repr(value)) + " is out of range");
        }
        PyErr_Clear();  // a NumPy array that is no integer (a float array, or not 0-d): read below
    }
    if (py::isinstance<py::str>(value)) return utf8_from_python(value, what);
    if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
        nlohmann::json list = nlohmann::json::array();
        for (py::handle item : value) list.push_back(json_from_python(item, what, depth + 1));
        return list;
    }
    if (py::isinstance<py::dict>(value)) {
        nlohmann::json object = nlohmann::json::object();
        for (auto item : value.cast<py::dict>()) {
            C3_CHECK(py::isinstance<py::str>(item.first), ConfigError, what, " keys must be str, got ",
                     std::string(py::repr(item.first)));
            const std::string key = utf8_from_python(item.first, what + " key");
            object[key] = json_from_python(item.second, what + " key '" + key + "'", depth + 1);
        }
        return object;
    }
    // float and what converts to one (NumPy's float32, Fraction), as float() reads them.
    if (PyFloat_Check(value.ptr()) || py::hasattr(value, "__float__"))
        return py::float_(py::reinterpret_borrow<py::object>(value)).cast<double>();
    throw ConfigError(what + ": cannot read " + std::string(py::repr(value)));
}

TransformerConfig config_from_dict(const py::dict& values, const std::string& source) {
    return io::parse_model_config(json_from_python(values, "config"), source);
}

py::dict config_to_dict(const TransformerConfig& config) {
    py::dict values;
    values["model_type"] = config.model_type;
    values["vocab_size"] = config.vocab_size;
    values["hidden_size"] = config.hidden_size;
    values["intermediate_size"] = config.intermediate_size;
    values["num_layers"] = config.num_layers;
    values["num_heads"] = config.num_heads;
    values["num_kv_heads"] = config.num_kv_heads;
    values["head_dim"] = config.head_dim;
    values["max_position_embeddings"] = config.max_position_embeddings;
    values["rope_theta"] = config.rope_theta;
    values["rms_norm_eps"] = config.rms_norm_eps;
    values["attention_bias"] = config.attention_bias;
    values["tie_word_embeddings"] = config.tie_word_embeddings;
    values["initializer_range"] = config.initializer_range;
    values["bos_token_id"] = config.bos_token_id;
    values["eos_token_id"] = config.eos_token_id;
    return values;
}

void bind_io(py::module_& m) {
    m.def("read_safetensors",
          [](const std::string& path) {
              std::optional<io::SafetensorsFile> file;
              {
                  py::gil_scoped_release release;
                  file.emplace(io::SafetensorsFile::open(path));
              }
              return read_all(SingleFile{*file}, file->tensors());
          },
          py::arg("path"),
          "Every tensor of a .safetensors file as a dict name -> NumPy array: float dtypes converted to float32, "
          "integer and bool tensors as stored.");
    m.def("safetensors_info",
          [](const std::string& path) {
              std::optional<io::SafetensorsFile> file;
              {
                  py::gil_scoped_release release;
                  file.emplace(io::SafetensorsFile::open(path));
              }
              return info_list(file->tensors());
          },
          py::arg("path"), "The validated header of a .safetensors file: a list of (name, dtype, shape), by name.");
    m.def("safetensors_metadata",
          [](const std::string& path) {
              std::optional<io::SafetensorsFile> file;
              {
                  py::gil_scoped_release release;
                  file.emplace(io::SafetensorsFile::open(path));
              }
              return file->metadata();
          },
          py::arg("path"), "The __metadata__ map of a .safetensors file.");
    m.def("read_latents",
          [](const std::string& path, bool chunks) {
              std::optional<io::LatentsFile> file;
              {
                  py::gil_scoped_release release;
                  file.emplace(io::read_latents(path));
              }
              py::object source_tokens = py::none();
              if (file->has_source_tokens) {
                  const size_t batch = file->source_tokens.size();
                  source_tokens = move_to_array(std::move(file->source_tokens), {batch});
              }
              const Shape shape = file->shape;
              py::tuple result = py::make_tuple(move_to_array(std::move(file->latents), shape), file->metadata,
                                                source_tokens);
              if (!chunks) return result;
              py::object spans = py::none();
              if (file->has_chunks)
                  spans = py::make_tuple(move_to_array(std::move(file->chunks.offsets), {shape[0]}),
                                         move_to_array(std::move(file->chunks.lengths), {shape[0]}));
              return py::tuple(result + py::make_tuple(spans));
          },
          py::arg("path"), py::arg("chunks") = false,
          "A c3 latents file, checked: (latents [batch, N, d] float32, metadata, source_tokens [batch] int64 or None), "
          "and with chunks=True a fourth item: (chunk offsets [batch], chunk lengths [batch]) int64, or None for a "
          "file that holds no document's chunks.");
    m.def("write_latents",
          [](const std::string& path, const py::object& latents_object, const py::object& source_tokens_object,
             const py::object& metadata, std::optional<std::vector<int64_t>> chunk_offsets,
             std::optional<std::vector<int64_t>> chunk_lengths) {
              C3_CHECK(chunk_offsets.has_value() == chunk_lengths.has_value(), ValueError,
                       "chunk_offsets and chunk_lengths go together");
              std::optional<io::LatentChunks> chunks;
              if (chunk_offsets) chunks = io::LatentChunks{std::move(*chunk_offsets), std::move(*chunk_lengths)};
              auto latents = Array<float>::ensure(latents_object);
              C3_CHECK(latents, ValueError, "latents must be a float array");
              const Shape shape = array_shape(latents);
              std::vector<int64_t> source_tokens;
              const bool has_source_tokens = !source_tokens_object.is_none();
              if (has_source_tokens) {
                  auto counts = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(
                      source_tokens_object);
                  C3_CHECK(counts && counts.ndim() == 1, ValueError, "source_tokens must be a list of counts");
                  for (py::ssize_t i = 0; i < counts.shape(0); ++i) {
                      const double value = counts.at(i);
                      C3_CHECK(std::isfinite(value) && value == std::floor(value) && value >= 0 && value < 9.0e15,
                               ValueError, "source token count ", value, " is not a non-negative integer");
                      source_tokens.push_back(int64_t(value));
                  }
              }
              const io::Metadata entries = metadata_from_python(metadata);
              py::gil_scoped_release release;
              io::write_latents(path, shape, latents.data(), source_tokens, has_source_tokens, entries,
                                chunks ? &*chunks : nullptr);
          },
          py::arg("path"), py::arg("latents"), py::arg("source_tokens") = py::none(), py::arg("metadata") = py::none(),
          py::arg("chunk_offsets") = py::none(), py::arg("chunk_lengths") = py::none(),
          "Write a c3 latents file (as read_latents reads it): latents [batch, N, d] as F32, the source token counts, "
          "the metadata given, and c3.kind, c3.num_latents and c3.checksum (SHA-256 of the data); with chunk_offsets "
          "and chunk_lengths (one per row), one document's chunked latents (io/latents.hpp).");
    m.def("sha256",
          [](const py::bytes& data) {
              const std::string bytes = data;
              return sha256_hex(bytes.data(), bytes.size());
          },
          py::arg("data"), "The hex SHA-256 of some bytes, by c3's own implementation (the one its files use).");
    m.def("write_safetensors",
          [](const std::string& path, const py::dict& tensors, const std::string& dtype, const py::object& metadata) {
              write_any(path, tensors, dtype, metadata, false, 0);
          },
          py::arg("path"), py::arg("tensors"), py::arg("dtype") = "F32", py::arg("metadata") = py::none(),
          "Write a dict name -> array as one .safetensors file in dtype F64, F32, F16 or BF16 (rounded to nearest "
          "even), through a temporary file and a rename.");
    m.def("read_checkpoint",
          [](const std::string& path) {
              std::optional<io::ShardedSafetensorsReader> checkpoint;
              std::vector<io::TensorInfo> infos;
              {
                  py::gil_scoped_release release;
                  checkpoint.emplace(io::ShardedSafetensorsReader::open(path));
                  for (const std::string& name : checkpoint->names()) infos.push_back(checkpoint->info(name));
              }
              return read_all(*checkpoint, infos);
          },
          py::arg("path"),
          "Every tensor of a .safetensors file or a Hugging Face model directory (single or sharded), as "
          "read_safetensors returns them.");
    m.def("checkpoint_info",
          [](const std::string& path) {
              std::optional<io::ShardedSafetensorsReader> checkpoint;
              std::vector<io::TensorInfo> infos;
              {
                  py::gil_scoped_release release;
                  checkpoint.emplace(io::ShardedSafetensorsReader::open(path));
                  for (const std::string& name : checkpoint->names()) infos.push_back(checkpoint->info(name));
              }
              return info_list(infos);
          },
          py::arg("path"), "(name, dtype, shape) for every tensor of a file or model directory, by name.");
    m.def("write_checkpoint",
          [](const std::string& directory, const py::dict& tensors, const std::string& dtype, size_t max_shard_bytes,
             const py::object& metadata) {
              return write_any(directory, tensors, dtype, metadata, true, max_shard_bytes);
          },
          py::arg("directory"), py::arg("tensors"), py::arg("dtype") = "F32",
          py::arg("max_shard_bytes") = size_t(5) << 30, py::arg("metadata") = py::none(),
          "Write directory/model.safetensors, or shards model-0000k-of-0000N.safetensors and their index when the "
          "tensors exceed max_shard_bytes. Returns the paths written.");
    m.def("read_hf_config",
          [](const std::string& path) {
              TransformerConfig config;
              {
                  py::gil_scoped_release release;
                  config = io::read_hf_config(path);
              }
              return config_to_dict(config);
          },
          py::arg("path"), "A Qwen2/Llama/C3 config.json (or a directory holding one) as a c3 config dict.");
    m.def("write_hf_config",
          [](const py::dict& config, const std::string& directory) {
              const TransformerConfig parsed = config_from_dict(config);
              py::gil_scoped_release release;
              io::write_hf_config(parsed, directory);
          },
          py::arg("config"), py::arg("directory"),
          "Write directory/config.json for a c3 config dict, loadable by transformers.");
    m.def("hf_config_json",
          [](const py::dict& config) { return io::to_hf_config(config_from_dict(config)).dump(2); },
          py::arg("config"), "The config.json text write_hf_config would write.");
    m.def("config_from_dict", [](const py::dict& config) { return config_to_dict(config_from_dict(config)); },
          py::arg("config"), "Validate a c3 config dict and fill in its defaults.");
    // The one atomic writer of files and of directories, for the Python code that writes them.
    m.def("write_file_atomically",
          [](const std::string& path, const py::object& contents) {
              C3_CHECK(py::isinstance<py::bytes>(contents) || py::isinstance<py::str>(contents), ValueError,
                       "contents must be bytes or str, got ",
                       std::string(py::str(py::type::handle_of(contents).attr("__name__"))));
              const std::string bytes = py::isinstance<py::str>(contents) ? utf8_from_python(contents, "contents")
                                                                          : contents.cast<std::string>();
              py::gil_scoped_release release;
              io::detail::write_atomically(
                  path, [&](std::ostream& out) { out.write(bytes.data(), std::streamsize(bytes.size())); });
          },
          py::arg("path"), py::arg("contents"),
          "Write bytes, or a str as UTF-8, to path through a temporary sibling and a rename. A character device or "
          "FIFO (/dev/null, /dev/stdout) is written into directly; a symbolic link is kept and its target replaced.");
    m.def("directory_save_target", &io::detail::save_target, py::arg("directory"),
          "The absolute directory that write_directory_atomically(directory, ...) replaces (a symbolic link "
          "resolved); C3IOError for the file system root, the current directory and its ancestors.");
    m.def("write_directory_atomically",
          [](const std::string& directory, const py::function& fill) {
              io::detail::write_directory_atomically(directory, [&](const std::string& staging) { fill(staging); });
          },
          py::arg("directory"), py::arg("fill"),
          "Call fill(staging) to write a directory's files into a fresh sibling folder, then swap it into the place "
          "of directory as a whole (entries of an old directory that fill does not write are kept, old weights are "
          "not). A failed fill leaves the old directory as it was.");
}

}  // namespace c3::python
