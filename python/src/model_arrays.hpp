// Conversions between NumPy batches and the C++ forward inputs, shared by the model and cascade bindings.
#pragma once
#include <optional>

#include "bindings.hpp"
#include "c3/model/generate.hpp"

namespace c3::python {

// Token ids [batch, length] as int32, whatever integer dtype came in; ids that do not fit are errors.
inline std::vector<int32_t> ids_from_array(const py::array& array, const char* what) {
    C3_CHECK(array.ndim() == 2, ShapeError, what, ": expected a 2-d array [batch, length], got ", array.ndim(),
             " dimensions");
    C3_CHECK(py::isinstance<py::array_t<int64_t>>(array) || py::isinstance<py::array_t<int32_t>>(array) ||
                 array.dtype().kind() == 'i' || array.dtype().kind() == 'u',
             ValueError, what, ": token ids must be integers, got dtype ", std::string(py::str(array.dtype())));
    auto wide = Array<int64_t>::ensure(array);
    std::vector<int32_t> ids(size_t(wide.size()));
    const int64_t* data = wide.data();
    for (size_t i = 0; i < ids.size(); ++i) {
        C3_CHECK(data[i] >= 0 && data[i] < (int64_t(1) << 31), ValueError, what, ": token id ", data[i],
                 " at flat index ", i, " is negative or too large");
        ids[i] = int32_t(data[i]);
    }
    return ids;
}

// An array [batch, length] of whole numbers as int64: integer and bool arrays, or float arrays whose values
// are all whole numbers; a fraction (1.5) or a value past int64 is an error rather than truncated.
inline std::vector<int64_t> whole_numbers(const py::object& object, size_t batch, size_t length, const char* what) {
    py::array array = py::array::ensure(object);
    C3_CHECK(array, ValueError, what, " must be an array of integers");
    const char kind = array.dtype().kind();
    C3_CHECK(kind == 'i' || kind == 'u' || kind == 'b' || kind == 'f', ValueError, what,
             " must hold integers, got dtype ", std::string(py::str(array.dtype())));
    expect_shape(array, {batch, length}, what);
    if (kind != 'f') {
        const auto integers = Array<int64_t>::ensure(array);
        return std::vector<int64_t>(integers.data(), integers.data() + integers.size());
    }
    const auto floats = Array<double>::ensure(array);
    std::vector<int64_t> values(size_t(floats.size()));
    for (size_t i = 0; i < values.size(); ++i) {
        const double value = floats.data()[i];
        C3_CHECK(std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9.2e18, ValueError, what,
                 ": value ", value, " at flat index ", i, " is not a whole number (integers expected)");
        values[i] = int64_t(value);
    }
    return values;
}

// A padding mask [batch, length] of 0/1 values, or an empty vector when none is given.
inline std::vector<uint8_t> mask_from_array(const py::object& object, size_t batch, size_t length) {
    if (object.is_none()) return {};
    const std::vector<int64_t> values = whole_numbers(object, batch, length, "attention_mask");
    std::vector<uint8_t> mask(values.size());
    for (size_t i = 0; i < mask.size(); ++i) {
        C3_CHECK(values[i] == 0 || values[i] == 1, ValueError, "attention_mask: value ", values[i], " at flat index ",
                 i, " is not 0 or 1");
        mask[i] = uint8_t(values[i]);
    }
    return mask;
}

inline std::vector<int64_t> positions_from_array(const py::object& object, size_t batch, size_t length) {
    if (object.is_none()) return {};
    return whole_numbers(object, batch, length, "position_ids");
}

// Rejects NaN and Inf before they spread through a forward pass.
inline void check_finite(const float* data, size_t count, const char* what) {
    for (size_t i = 0; i < count; ++i)
        C3_CHECK(std::isfinite(data[i]), ValueError, what, ": non-finite value ", data[i], " at flat index ", i);
}

// Owns the converted arrays behind a ForwardInput.
struct BatchInput {
    std::vector<int32_t> ids;
    Array<float> embeddings;
    std::vector<uint8_t> mask;
    std::vector<int64_t> positions;
    ForwardInput<float> input;

    BatchInput(const py::object& ids_object, const py::object& embeddings_object, const py::object& mask_object,
               const py::object& positions_object, size_t hidden_size) {
        C3_CHECK(ids_object.is_none() != embeddings_object.is_none(), ValueError,
                 "pass token ids or input embeddings, exactly one of them");
        if (!ids_object.is_none()) {
            py::array array = py::array::ensure(ids_object);
            C3_CHECK(array, ValueError, "ids must be an array");
            ids = ids_from_array(array, "ids");
            input.batch = size_t(array.shape(0));
            input.length = size_t(array.shape(1));
            input.ids = ids.data();
        } else {
            embeddings = Array<float>::ensure(embeddings_object);
            C3_CHECK(embeddings, ValueError, "embeddings must be a float array");
            expect_shape(embeddings, {0, 0, hidden_size}, "embeddings");
            check_finite(embeddings.data(), size_t(embeddings.size()), "embeddings");
            input.batch = size_t(embeddings.shape(0));
            input.length = size_t(embeddings.shape(1));
            input.embeddings = embeddings.data();
        }
        mask = mask_from_array(mask_object, input.batch, input.length);
        positions = positions_from_array(positions_object, input.batch, input.length);
        input.mask = mask.empty() ? nullptr : mask.data();
        input.positions = positions.empty() ? nullptr : positions.data();
    }
};

// Every tensor of a layout as a NumPy view into `buffer` (zero copy out), leased (see BufferLease).
inline py::dict layout_views(const std::vector<ParameterInfo>& layout, std::vector<float>& buffer, py::handle owner) {
    py::dict views;
    for (const auto& info : layout) views[py::str(info.name)] = leased_view(buffer, info.offset, info.shape, owner);
    return views;
}

// The keyword arguments of generate / reconstruct, checked.
inline GenerationOptions generation_options(size_t max_new_tokens, std::vector<int32_t> stop_tokens, bool sample,
                                            double temperature, size_t top_k, double top_p,
                                            size_t no_repeat_ngram_size, uint64_t seed, int32_t pad_token) {
    GenerationOptions options;
    options.max_new_tokens = max_new_tokens;
    options.stop_tokens = std::move(stop_tokens);
    options.sample = sample;
    options.temperature = temperature;
    options.top_k = top_k;
    options.top_p = top_p;
    options.no_repeat_ngram_size = no_repeat_ngram_size;
    options.seed = seed;
    options.pad_token = pad_token;
    options.validate();
    return options;
}

// (tokens [B, steps] int32, lengths [B] int64), moved into NumPy.
inline py::tuple generation_result_to_python(GenerationResult&& result) {
    std::vector<int64_t> lengths(result.lengths.begin(), result.lengths.end());
    return py::make_tuple(move_to_array(std::move(result.tokens), {result.batch, result.steps}),
                          move_to_array(std::move(lengths), {result.batch}));
}

}  // namespace c3::python
