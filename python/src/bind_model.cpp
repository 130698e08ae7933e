// c3._core.Transformer: a float32 Qwen2/Llama model, its parameters as zero-copy NumPy views, forward and
// greedy or sampled generation with the KV cache.
#include <map>

#include "bindings.hpp"
#include "config_convert.hpp"
#include "model_arrays.hpp"
#include "c3/io/hf_model.hpp"
#include "c3/model/generate.hpp"

namespace c3::python {

using Model = Transformer<float>;

LogitsMode logits_mode_from_string(const std::string& name) {
    if (name == "all") return LogitsMode::All;
    if (name == "last") return LogitsMode::Last;
    if (name == "none") return LogitsMode::None;
    throw ValueError("logits must be 'all', 'last' or 'none', got '" + name + "'");
}

py::dict parameter_views(Model& model, std::vector<float>& buffer, py::handle owner) {
    C3_CHECK(!model.stores_bf16(), ValueError, "this model stores its weights in bf16: parameters() needs float storage");
    return layout_views(model.layout, buffer, owner);
}

// Before a call that replaces the model's buffers: live views keep the old ones (see BufferLease).
void retire_model_buffers(Model& model) {
    retire_viewed_buffer(model.parameters);
    retire_viewed_buffer(model.gradients);
    model.rebind();
}

// Every value is converted and checked before the first is written: an error leaves the model unchanged.
void set_parameters(Model& model, const py::dict& values, bool strict) {
    std::vector<std::pair<size_t, Array<float>>> checked;
    for (auto item : values) {
        C3_CHECK(py::isinstance<py::str>(item.first), ValueError, "parameter names must be str, got ",
                 std::string(py::repr(item.first)));
        const std::string name = py::str(item.first);
        const size_t e = model.parameter_index(name);
        const ParameterInfo& info = model.layout[e];
        auto array = Array<float>::ensure(item.second);
        C3_CHECK(array, ValueError, "parameter ", name, " must be a float array");
        C3_CHECK(array_shape(array) == info.shape, ShapeError, "parameter ", name, ": expected shape ",
                 shape_string(info.shape), ", got ", shape_string(array_shape(array)));
        checked.emplace_back(e, std::move(array));
    }
    C3_CHECK(!strict || checked.size() == model.layout.size(), ValueError, "set_parameters(strict=True) got ",
             checked.size(), " of ", model.layout.size(), " parameters");
    for (const auto& [e, array] : checked) model.assign_parameter(e, array.data());
}

void bind_model(py::module_& m) {
    m.def(
        "compute_trial",
        [](size_t rows, size_t in, size_t out, const std::string& baseline) {
            const std::map<std::string, ops::ComputeBaseline> baselines = {
                {"float32", ops::ComputeBaseline::Float},
                {"float32_transposed", ops::ComputeBaseline::FloatTransposed},
                {"bf16_widened", ops::ComputeBaseline::Bf16Widened}};
            C3_CHECK(baselines.count(baseline), ValueError, "compute_trial: baseline must be 'float32', "
                     "'float32_transposed' or 'bf16_widened', got '", baseline, "'");
            ops::ComputeTrial trial;
            {
                py::gil_scoped_release release;
                trial = ops::compute_trial(rows, in, out, baselines.at(baseline));
            }
            py::dict result;
            result["rows"] = trial.rows;
            result["in"] = trial.in;
            result["out"] = trial.out;
            result["compute"] = trial.bf16 ? "bf16" : "float32";
            result["float_seconds"] = trial.float_seconds;
            result["bf16_seconds"] = trial.bf16_seconds;
            result["reason"] = trial.reason;
            return result;
        },
        py::arg("rows"), py::arg("in_features"), py::arg("out_features"), py::arg("baseline") = "float32",
        "What compute 'auto' chooses for products [rows, in] x [in, out] on this CPU and thread count: 'compute' "
        "('bf16' only where the CPU has bf16 dot products and they measured at least 5% faster than the baseline: "
        "'float32' weights as stored, 'float32_transposed' as a float32 training step multiplies, or "
        "'bf16_widened', bf16 weights with float compute), the best time of each (0 where not measured) and the "
        "reason. Rows must exceed 4 (fewer take the float kernel whatever the compute). Measured once per shape, "
        "baseline and thread count in a process.");
    py::class_<Model, std::shared_ptr<Model>>(m, "Transformer", "A Qwen2/Llama-style decoder-only transformer (float32).")
        .def(py::init([](const py::dict& config, uint64_t seed) {
                 auto model = std::make_shared<Model>(config_from_dict(config));
                 model->init_random(seed);
                 return model;
             }),
             py::arg("config"), py::arg("seed") = 0)
        .def_static("load", [](const std::string& directory, const std::string& storage) {
                 C3_CHECK(storage == "float32" || storage == "bf16", ValueError,
                          "storage must be 'float32' or 'bf16', got '", storage, "'");
                 py::gil_scoped_release release;
                 return std::make_shared<Model>(io::load_transformer<float>(
                     directory, storage == "bf16" ? WeightStorage::Bf16 : WeightStorage::Float));
             }, py::arg("directory"), py::arg("storage") = "float32",
             "Load a Hugging Face Qwen2/Llama directory (config.json + safetensors, single or sharded). "
             "storage='bf16' keeps the matrices in bfloat16 (inference only; compute in float32).")
        .def_property_readonly("storage", [](const Model& self) { return self.stores_bf16() ? "bf16" : "float32"; })
        .def_property(
            "compute", [](const Model& self) { return self.stores_bf16() && self.bf16_compute ? "bf16" : "float32"; },
            [](Model& self, const std::string& compute) {
                C3_CHECK(compute == "float32" || compute == "bf16" || compute == "auto", ValueError,
                         "compute must be 'float32', 'bf16' or 'auto', got '", compute, "'");
                C3_CHECK(compute != "bf16" || self.stores_bf16(), ValueError,
                         "compute='bf16' needs bf16 storage (load with storage='bf16' or call store_as_bf16())");
                if (compute == "auto") {
                    py::gil_scoped_release release;  // the first trial at a shape runs products for a moment
                    self.choose_compute();
                } else {
                    self.bf16_compute = compute == "bf16";
                }
            },
            "'bf16': prompt passes (more than 4 rows) round activations to bf16 and use bf16 dot products "
            "(AVX512-BF16), as PyTorch's bf16 inference does; decode steps stay float32. Needs bf16 storage. "
            "'auto': 'bf16' where the storage is bf16 and compute_trial at this model's shape measures bf16 products "
            "faster on this CPU, else 'float32'; reading compute back gives the choice.")
        .def("resize_vocabulary",
             [](Model& self, size_t vocab_size, uint64_t seed) {
                 C3_CHECK(!self.stores_bf16(), ValueError, "resize_vocabulary needs float storage");
                 TransformerConfig resized = self.config;
                 resized.vocab_size = vocab_size;
                 resized.validate();
                 retire_model_buffers(self);
                 self.resize_vocabulary(vocab_size, seed);
             },
             py::arg("vocab_size"), py::arg("seed") = 0,
             "Grow the vocabulary (new embedding and lm_head rows start at the mean of the old ones). NumPy views "
             "taken before keep the old buffers and no longer alias the model.")
        .def("store_as_bf16",
             [](Model& self) {
                 retire_model_buffers(self);
                 self.store_as_bf16();
             },
             "Convert the matrices to bfloat16 storage (inference only). NumPy views taken before keep the old "
             "float buffer and no longer alias the model.")
        .def("save", [](const Model& self, const std::string& directory, const std::string& dtype) {
                 const io::DType stored = io::dtype_from_name(dtype);
                 py::gil_scoped_release release;
                 io::save_transformer(self, directory, stored);
             }, py::arg("directory"), py::arg("dtype") = "F32",
             "Save as a Hugging Face directory (config.json + model.safetensors) that transformers can load.")
        .def_property_readonly("config", [](const Model& self) { return config_to_dict(self.config); })
        .def_property_readonly("num_parameters", &Model::num_parameters)
        .def("parameters", [](py::object self) { Model& model = self.cast<Model&>();
                 return parameter_views(model, model.parameters, self); },
             "Every parameter as a NumPy view into the model's flat buffer (writes go into the model).")
        .def("gradients", [](py::object self) { Model& model = self.cast<Model&>();
                 model.enable_gradients();
                 return parameter_views(model, model.gradients, self); },
             "Every gradient as a NumPy view into the flat gradient buffer.")
        .def_property_readonly("flat_parameters", [](py::object self) { Model& model = self.cast<Model&>();
                 C3_CHECK(!model.stores_bf16(), ValueError, "flat_parameters needs float storage");
                 return leased_view(model.parameters, 0, {model.parameters.size()}, self); })
        .def("set_parameters", &set_parameters, py::arg("values"), py::arg("strict") = false,
             "Overwrite parameters by name (bf16 storage rounds the matrices). Every array is checked before "
             "any is written.")
        .def("forward",
             [](const Model& self, py::object ids, py::object embeddings, py::object attention_mask,
                py::object position_ids, const std::string& logits) {
                 BatchInput batch(ids, embeddings, attention_mask, position_ids, self.config.hidden_size);
                 const LogitsMode mode = logits_mode_from_string(logits);
                 // Per thread and reused: a fresh set of buffers per call would page-fault megabytes every time.
                 // hidden and logits are moved out to NumPy below, so only the scratch is kept.
                 thread_local Activations<float> activations;
                 {
                     py::gil_scoped_release release;
                     self.forward(batch.input, activations, mode, false);
                 }
                 const size_t B = batch.input.batch, L = batch.input.length;
                 activations.hidden.resize(B * L * self.config.hidden_size);
                 py::object hidden = move_to_array(std::move(activations.hidden), {B, L, self.config.hidden_size});
                 py::object out_logits = py::none();
                 if (mode == LogitsMode::All) {
                     activations.logits.resize(B * L * self.config.vocab_size);
                     out_logits = move_to_array(std::move(activations.logits), {B, L, self.config.vocab_size});
                 } else if (mode == LogitsMode::Last) {
                     activations.logits.resize(B * self.config.vocab_size);
                     out_logits = move_to_array(std::move(activations.logits), {B, self.config.vocab_size});
                 }
                 return py::make_tuple(hidden, out_logits);
             },
             py::arg("ids") = py::none(), py::arg("embeddings") = py::none(), py::arg("attention_mask") = py::none(),
             py::arg("position_ids") = py::none(), py::arg("logits") = "all",
             "Forward pass. Returns (hidden [B,T,d] after the final norm, logits [B,T,V] | [B,V] | None).")
        .def("generate",
             [](const Model& self, py::object ids, py::object embeddings, py::object attention_mask,
                size_t max_new_tokens, std::vector<int32_t> stop_tokens, bool sample, double temperature,
                size_t top_k, double top_p, size_t no_repeat_ngram_size, uint64_t seed, int32_t pad_token) {
                 BatchInput batch(ids, embeddings, attention_mask, py::none(), self.config.hidden_size);
                 const GenerationOptions options = generation_options(max_new_tokens, std::move(stop_tokens), sample,
                                                                      temperature, top_k, top_p, no_repeat_ngram_size,
                                                                      seed, pad_token);
                 GenerationResult result;
                 {
                     py::gil_scoped_release release;
                     result = generate(self, batch.input, options);
                 }
                 return generation_result_to_python(std::move(result));
             },
             py::arg("ids") = py::none(), py::arg("embeddings") = py::none(), py::arg("attention_mask") = py::none(),
             py::arg("max_new_tokens") = 64, py::arg("stop_tokens") = std::vector<int32_t>{},
             py::arg("sample") = false, py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
             py::arg("no_repeat_ngram_size") = 0, py::arg("seed") = 0, py::arg("pad_token") = 0,
             "Generate from a left-padded prompt with the KV cache. Returns (tokens [B, steps], lengths [B]).");
}

}  // namespace c3::python
