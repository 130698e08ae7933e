// c3._core: the module definition and the mapping of C++ errors to Python exceptions.
#include <Python.h>

#include <chrono>
#include <cstring>

#include "bindings.hpp"
#include "c3/ops/build_info.hpp"
#include "c3/ops/linear.hpp"
#include "c3/ops/onednn.hpp"
#include "c3/core/parallel.hpp"

// Set by python/CMakeLists.txt for each build of the module.
#ifndef C3_ISA_LEVEL
#define C3_ISA_LEVEL "native"
#endif
#ifndef C3_COMPILE_FLAGS
#define C3_COMPILE_FLAGS ""
#endif

namespace c3::python {
namespace {

// Creates c3._core.<name> deriving from the given Python bases and registers it on the module.
py::object make_exception(py::module_& m, const char* name, py::tuple bases) {
    const std::string qualified = std::string("c3._core.") + name;
    PyObject* type = PyErr_NewException(qualified.c_str(), bases.ptr(), nullptr);
    if (!type) throw py::error_already_set();
    py::object result = py::reinterpret_steal<py::object>(type);
    m.attr(name) = result;
    return result;
}

// Messages may quote bytes of a hostile file: they are decoded with escapes, so that an invalid UTF-8 byte
// never turns the typed error into a UnicodeDecodeError.
void raise(const py::object& type, const char* message) {
    PyObject* text = PyUnicode_DecodeUTF8(message, py::ssize_t(std::strlen(message)), "backslashreplace");
    if (!text) {
        PyErr_Clear();
        text = PyUnicode_FromString("(unprintable message)");
    }
    PyErr_SetObject(type.ptr(), text);
    Py_XDECREF(text);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "c3 core: the C++ engine behind the c3 package";
    m.attr("__version__") = C3_VERSION;  // from the file VERSION, through CMake

    // Error types: each is also a subclass of the matching built-in, so `except ValueError` works as well.
    static py::object base = make_exception(m, "C3Error", py::make_tuple(py::handle(PyExc_RuntimeError)));
    static py::object format_error = make_exception(m, "FormatError", py::make_tuple(base, py::handle(PyExc_ValueError)));
    static py::object io_error = make_exception(m, "C3IOError", py::make_tuple(base, py::handle(PyExc_OSError)));
    static py::object shape_error = make_exception(m, "ShapeError", py::make_tuple(base, py::handle(PyExc_ValueError)));
    static py::object value_error = make_exception(m, "C3ValueError", py::make_tuple(base, py::handle(PyExc_ValueError)));
    static py::object config_error = make_exception(m, "ConfigError", py::make_tuple(base, py::handle(PyExc_ValueError)));
    static py::object tokenizer_error = make_exception(m, "TokenizerError", py::make_tuple(value_error));
    static py::object utf8_error = make_exception(m, "Utf8Error", py::make_tuple(tokenizer_error));
    py::register_exception_translator([](std::exception_ptr pointer) {
        try {
            if (pointer) std::rethrow_exception(pointer);
        } catch (const FormatError& e) {
            raise(format_error, e.what());
        } catch (const IOError& e) {
            raise(io_error, e.what());
        } catch (const ShapeError& e) {
            raise(shape_error, e.what());
        } catch (const Utf8Error& e) {
            raise(utf8_error, e.what());
        } catch (const TokenizerError& e) {
            raise(tokenizer_error, e.what());
        } catch (const ValueError& e) {
            raise(value_error, e.what());
        } catch (const ConfigError& e) {
            raise(config_error, e.what());
        } catch (const Error& e) {
            raise(base, e.what());
        }
    });
    py::class_<BufferLease>(m, "_BufferLease", "Keeps the buffer behind NumPy views alive (see python/src/bindings.hpp).");

    m.def("num_threads", &num_threads, "Number of threads the C++ kernels use.");
    m.def(
        "load_onednn",
        [](const std::string& path) {
            ops::load_onednn(path);
            return ops::onednn_in_use();
        },
        py::arg("path"),
        "Loads libdnnl (a CPU build on GNU OpenMP) from path and sends every large float32 product to its sgemm; "
        "returns its description. C3IOError if it cannot be loaded, C3ValueError if it is no such build.");
    m.def("unload_onednn", &ops::unload_onednn, "Sends every float32 product back to c3's own kernels.");
    m.def(
        "onednn_in_use", [] { return ops::onednn_in_use(); },
        "'oneDNN <version> (<path>)' while its sgemm takes the large float32 products, else ''.");
    m.def("measure_read_bandwidth",
          [](size_t megabytes, size_t repeats) {
              // Sums a buffer far larger than the caches with all threads: the memory read rate, in bytes/s.
              std::vector<float> buffer(megabytes * (1 << 20) / sizeof(float), 1.0f);
              const size_t chunks = size_t(num_threads()) * 16, chunk = (buffer.size() + chunks - 1) / chunks;
              std::vector<float> partial(chunks);
              double best = 0;
              py::gil_scoped_release release;
              for (size_t r = 0; r < repeats; ++r) {
                  const auto start = std::chrono::steady_clock::now();
                  parallel_for(chunks, [&](size_t c) {
                      float lanes[64] = {};  // four vector accumulators: enough loads in flight to saturate memory
                      const size_t end = std::min(buffer.size(), (c + 1) * chunk);
                      size_t i = c * chunk;
                      for (; i + 64 <= end; i += 64)
                          for (size_t k = 0; k < 64; ++k) lanes[k] += buffer[i + k];
                      for (; i < end; ++i) lanes[0] += buffer[i];
                      float total = 0;
                      for (float lane : lanes) total += lane;
                      partial[c] = total;
                  });
                  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                  best = std::max(best, double(buffer.size() * sizeof(float)) / seconds);
              }
              return best;
          },
          py::arg("megabytes") = 1024, py::arg("repeats") = 5, "Measured memory read bandwidth in bytes/s (all threads).");
    m.def("measure_gemm_rate",
          [](size_t size, size_t repeats, size_t rows, size_t out) {
              // c3's float GEMM (ops::linear_forward, blocked across the threads; oneDNN's sgemm where loaded) on
              // [rows, size] x [size, out], size^3 by default: the FLOP rate that the benchmarks take as the
              // machine's GEMM peak.
              rows = rows ? rows : size, out = out ? out : size;
              C3_CHECK(size >= 1 && repeats >= 1 && size <= (size_t(1) << 15) && rows <= (size_t(1) << 15) &&
                       out <= (size_t(1) << 15), ValueError, "measure_gemm_rate: sizes from 1 to 32768 and at "
                       "least one repeat, got size=", size, ", rows=", rows, ", out=", out, ", repeats=", repeats);
              std::vector<float> x(rows * size, 0.5f), w(out * size, 0.25f), y(rows * out);
              double best = 0;
              py::gil_scoped_release release;
              for (size_t r = 0; r < repeats + 1; ++r) {  // the first call warms the caches and the threads
                  const auto start = std::chrono::steady_clock::now();
                  ops::linear_forward(y.data(), x.data(), w.data(), static_cast<const float*>(nullptr), rows, size,
                                      out);
                  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                  if (r > 0) best = std::max(best, 2.0 * double(rows) * double(size) * double(out) / seconds);
              }
              return best;
          },
          py::arg("size") = 1024, py::arg("repeats") = 5, py::arg("rows") = 0, py::arg("out") = 0,
          "Measured float32 GEMM rate in FLOP/s (all threads) of [rows, size] x [size, out]; rows and out default "
          "to size.");
    m.def("build_info", [] {
        const BuildInfo info = c3::build_info();
        py::dict result;
        result["level"] = C3_ISA_LEVEL;
        result["compiler"] = info.compiler;
        result["compile_flags"] = C3_COMPILE_FLAGS;
        result["instruction_sets"] = info.instruction_sets;
        result["openmp"] = info.openmp.empty() ? py::object(py::none()) : py::object(py::str(info.openmp));
        result["eigen"] = info.eigen;
        result["eigen_simd"] = info.eigen_simd;
        result["kernels"] = info.kernels;
        return result;
    }, "What this build of the module was compiled with (compile-time facts).");
    m.def("cpu_info", [] {
        const CpuInfo& info = c3::cpu_info();
        py::dict result, blocking;
        result["l1d_bytes"] = info.cache.l1d;
        result["l2_bytes"] = info.cache.l2;
        result["l3_bytes"] = info.cache.l3;
        result["cache_source"] = info.cache_source;
        result["vector_bits"] = info.vector_bits;
        for (const auto& [name, size] : c3::kernel_blocking()) blocking[py::str(name)] = size;
        result["blocking"] = blocking;
        return result;
    }, "The CPU's cache sizes (per core for L1d and L2), where they were read, its widest vectors, and the cache "
       "blocking the kernels derive from them. C3_CACHE_SIZES=l1d=32K,l2=1M,l3=32M replaces the sizes.");
    m.def("set_num_threads", &set_num_threads, py::arg("threads"), "Set the number of threads the C++ kernels use.");

    bind_io(m);
    bind_model(m);
    bind_text(m);
    bind_analysis(m);
    bind_train(m);
    bind_cascade(m);
}

}  // namespace c3::python
