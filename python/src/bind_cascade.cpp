// c3._core.CascadeModel and CascadeTrainer: the C3 encoder -> projector -> decoder on token ids.
// Text goes through the Python layer (c3.Cascade), which owns the tokenizer.
#include "bindings.hpp"
#include "config_convert.hpp"
#include "model_arrays.hpp"
#include "c3/io/c3_checkpoint.hpp"
#include "c3/train/cascade_trainer.hpp"

namespace c3::python {

using CascadeModel = Cascade<float>;
TrainingOptions training_options_from_kwargs(double, double, double, double, double, size_t, size_t, double, double);
py::dict step_report_to_dict(const StepReport& report);

namespace {

py::dict cascade_config_to_dict(const CascadeConfig& c) {
    py::dict d;
    d["encoder"] = config_to_dict(c.encoder);
    d["decoder"] = config_to_dict(c.decoder);
    d["num_latents"] = c.num_latents;
    d["projector"] = c.projector == ProjectorKind::Mlp ? "mlp" : "linear";
    d["latent_start_token"] = c.latent_start_token;
    d["latent_end_token"] = c.latent_end_token;
    d["latent_pad_token"] = c.latent_pad_token;
    d["prompt_prefix"] = c.prompt_prefix;
    d["prompt_suffix"] = c.prompt_suffix;
    d["stop_tokens"] = c.stop_tokens;
    return d;
}

CascadeConfig cascade_config_from_dict(const py::dict& d) {
    CascadeConfig c;
    for (auto item : d) {
        const std::string key = py::str(item.first);
        py::handle value = item.second;
        if (key == "encoder") c.encoder = config_from_dict(value.cast<py::dict>());
        else if (key == "decoder") c.decoder = config_from_dict(value.cast<py::dict>());
        else if (key == "num_latents") c.num_latents = value.cast<size_t>();
        else if (key == "projector") {
            const std::string kind = value.cast<std::string>();
            C3_CHECK(kind == "linear" || kind == "mlp", ConfigError, "projector must be 'linear' or 'mlp', got '", kind, "'");
            c.projector = kind == "mlp" ? ProjectorKind::Mlp : ProjectorKind::Linear;
        } else if (key == "latent_start_token") c.latent_start_token = value.cast<int32_t>();
        else if (key == "latent_end_token") c.latent_end_token = value.cast<int32_t>();
        else if (key == "latent_pad_token") c.latent_pad_token = value.cast<int32_t>();
        else if (key == "prompt_prefix") c.prompt_prefix = value.cast<std::vector<int32_t>>();
        else if (key == "prompt_suffix") c.prompt_suffix = value.cast<std::vector<int32_t>>();
        else if (key == "stop_tokens") c.stop_tokens = value.cast<std::vector<int32_t>>();
        else throw ConfigError("unknown cascade config key '" + key + "'");
    }
    c.validate();
    return c;
}

// Latents [B, N, d_dec] from NumPy, checked.
Array<float> latents_from_array(const CascadeModel& cascade, const py::object& object) {
    auto latents = Array<float>::ensure(object);
    C3_CHECK(latents, ValueError, "latents must be a float array");
    expect_shape(latents, {0, cascade.config.num_latents, cascade.config.decoder.hidden_size}, "latents");
    check_finite(latents.data(), size_t(latents.size()), "latents");
    return latents;
}

struct IdBatch {
    std::vector<int32_t> ids;
    std::vector<uint8_t> mask;
    size_t batch = 0, length = 0;
    IdBatch(const py::object& ids_object, const py::object& mask_object, const char* what) {
        py::array array = py::array::ensure(ids_object);
        C3_CHECK(array, ValueError, what, " must be an integer array");
        ids = ids_from_array(array, what);
        batch = size_t(array.shape(0));
        length = size_t(array.shape(1));
        mask = mask_from_array(mask_object, batch, length);
    }
    const uint8_t* mask_data() const { return mask.empty() ? nullptr : mask.data(); }
};

void check_vocabulary(const std::vector<int32_t>& ids, size_t vocab, const char* what) {
    for (size_t i = 0; i < ids.size(); ++i)
        C3_CHECK(size_t(ids[i]) < vocab, ValueError, what, ": token id ", ids[i], " at flat index ", i,
                 " is outside the vocabulary of ", vocab);
}

// Contexts and answers of one batch, checked against each other and against the cascade's vocabularies.
struct ContextsAndAnswers {
    IdBatch contexts, answers;
    ContextsAndAnswers(const CascadeConfig& config, const py::object& contexts_object, const py::object& context_mask,
                       const py::object& answers_object, const py::object& answer_mask)
        : contexts(contexts_object, context_mask, "contexts"), answers(answers_object, answer_mask, "answers") {
        C3_CHECK(contexts.batch == answers.batch, ShapeError, "contexts have batch ", contexts.batch, ", answers ",
                 answers.batch);
        check_vocabulary(contexts.ids, config.encoder.vocab_size, "contexts");
        check_vocabulary(answers.ids, config.decoder.vocab_size, "answers");
    }
};

}  // namespace

void bind_cascade(py::module_& m) {
    py::class_<CascadeModel, std::shared_ptr<CascadeModel>>(m, "CascadeModel",
                                                            "C3 on token ids: encoder, queries, projector, decoder.")
        .def(py::init([](const py::dict& config, uint64_t seed) {
                 auto cascade = std::make_shared<CascadeModel>(cascade_config_from_dict(config));
                 cascade->init_random(seed);
                 return cascade;
             }),
             py::arg("config"), py::arg("seed") = 0)
        .def_static("from_models",
                    [](const Transformer<float>& encoder, const Transformer<float>& decoder, const py::dict& config,
                       uint64_t seed) {
                        py::dict full = config;
                        full["encoder"] = config_to_dict(encoder.config);
                        full["decoder"] = config_to_dict(decoder.config);
                        auto cascade = std::make_shared<CascadeModel>(cascade_config_from_dict(full));
                        cascade->init_random(seed);
                        cascade->encoder.parameters = encoder.parameters;
                        cascade->decoder.parameters = decoder.parameters;
                        return cascade;
                    },
                    py::arg("encoder"), py::arg("decoder"), py::arg("config"), py::arg("seed") = 0,
                    "A cascade from two (pretrained) transformers, copied in; Q and the projector start random.")
        .def_static("load",
                    [](const std::string& directory, const py::dict& defaults, const std::string& storage) {
                        C3_CHECK(storage == "float32" || storage == "bf16", ValueError,
                                 "storage must be 'float32' or 'bf16', got '", storage, "'");
                        CascadeConfig fallback;
                        fallback.latent_start_token = io::kOfficialImageStart;
                        fallback.latent_end_token = io::kOfficialImageEnd;
                        fallback.latent_pad_token = io::kOfficialImagePad;
                        for (auto item : defaults) {
                            const std::string key = py::str(item.first);
                            if (key == "prompt_prefix") fallback.prompt_prefix = item.second.cast<std::vector<int32_t>>();
                            else if (key == "prompt_suffix") fallback.prompt_suffix = item.second.cast<std::vector<int32_t>>();
                            else if (key == "stop_tokens") fallback.stop_tokens = item.second.cast<std::vector<int32_t>>();
                            else if (key == "latent_start_token") fallback.latent_start_token = item.second.cast<int32_t>();
                            else if (key == "latent_end_token") fallback.latent_end_token = item.second.cast<int32_t>();
                            else if (key == "latent_pad_token") fallback.latent_pad_token = item.second.cast<int32_t>();
                            else if (key == "projector") fallback.projector = item.second.cast<std::string>() == "mlp" ? ProjectorKind::Mlp : ProjectorKind::Linear;
                            else throw ConfigError("unknown default '" + key + "'");
                        }
                        py::gil_scoped_release release;
                        return std::make_shared<CascadeModel>(io::load_c3<float>(
                            directory, fallback, storage == "bf16" ? WeightStorage::Bf16 : WeightStorage::Float));
                    },
                    py::arg("directory"), py::arg("defaults") = py::dict(), py::arg("storage") = "float32",
                    "Load the official C3 layout (decoder directory with llm1/ encoder).")
        .def("save",
             [](const CascadeModel& self, const std::string& directory, const std::string& dtype) {
                 const io::DType stored = io::dtype_from_name(dtype);
                 py::gil_scoped_release release;
                 io::save_c3(self, directory, stored);
             },
             py::arg("directory"), py::arg("dtype") = "F32")
        .def_property_readonly("config", [](const CascadeModel& self) { return cascade_config_to_dict(self.config); })
        .def_property_readonly("num_parameters", &CascadeModel::num_parameters)
        .def_property_readonly("encoder", [](CascadeModel& self) -> Transformer<float>& { return self.encoder; },
                               py::return_value_policy::reference_internal)
        .def_property_readonly("decoder", [](CascadeModel& self) -> Transformer<float>& { return self.decoder; },
                               py::return_value_policy::reference_internal)
        .def("bridge_parameters",
             [](py::object self_object) {
                 auto& self = self_object.cast<CascadeModel&>();
                 return layout_views(self.bridge, self.bridge_parameters.data(), self_object);
             },
             "Q and the projector as NumPy views (writes go into the model).")
        .def("bridge_gradients",
             [](py::object self_object) {
                 auto& self = self_object.cast<CascadeModel&>();
                 return layout_views(self.bridge, self.bridge_gradients.data(), self_object);
             })
        .def("set_trainable", &CascadeModel::set_trainable, py::arg("part"), py::arg("trainable"),
             "Freeze (False) or unfreeze a part: 'encoder', 'decoder', 'queries' or 'projector'.")
        .def("compress",
             [](const CascadeModel& self, py::object contexts, py::object attention_mask) {
                 IdBatch batch(contexts, attention_mask, "contexts");
                 check_vocabulary(batch.ids, self.config.encoder.vocab_size, "contexts");
                 thread_local CascadeActivations<float> a;  // reused per thread: see Transformer.forward
                 {
                     py::gil_scoped_release release;
                     self.compress(batch.ids.data(), batch.mask_data(), batch.batch, batch.length, a, false);
                 }
                 return move_to_array(std::move(a.latents),
                                      {batch.batch, self.config.num_latents, self.config.decoder.hidden_size});
             },
             py::arg("contexts"), py::arg("attention_mask") = py::none(),
             "Contexts [B, L] (left-padded) -> latents [B, N, d_dec].")
        .def("reconstruct",
             [](const CascadeModel& self, py::object latents_object, size_t max_new_tokens,
                std::optional<std::vector<int32_t>> stop_tokens, bool sample, double temperature, size_t top_k,
                double top_p, size_t no_repeat_ngram_size, uint64_t seed, int32_t pad_token) {
                 auto latents = latents_from_array(self, latents_object);
                 const GenerationOptions options = generation_options(
                     max_new_tokens, stop_tokens ? *stop_tokens : self.config.stop_tokens,  // [] = never stop
                     sample, temperature, top_k, top_p, no_repeat_ngram_size, seed, pad_token);
                 GenerationResult result;
                 {
                     py::gil_scoped_release release;
                     result = self.reconstruct(latents.data(), size_t(latents.shape(0)), options);
                 }
                 return generation_result_to_python(std::move(result));
             },
             py::arg("latents"), py::arg("max_new_tokens") = 256, py::arg("stop_tokens") = py::none(),
             py::arg("sample") = false, py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
             py::arg("no_repeat_ngram_size") = 0, py::arg("seed") = 0, py::arg("pad_token") = 0,
             "Latents -> (tokens [B, steps], lengths [B]) by greedy or sampled decoding with the KV cache.")
        .def("score",
             [](const CascadeModel& self, py::object latents_object, py::object answers, py::object answer_mask) {
                 auto latents = latents_from_array(self, latents_object);
                 IdBatch batch(answers, answer_mask, "answers");
                 check_vocabulary(batch.ids, self.config.decoder.vocab_size, "answers");
                 C3_CHECK(batch.batch == size_t(latents.shape(0)), ShapeError, "answers have batch ", batch.batch,
                          ", latents have ", latents.shape(0));
                 CascadeActivations<float> a;
                 AnswerScores scores;
                 {
                     py::gil_scoped_release release;
                     scores = self.score(latents.data(), batch.ids.data(), batch.mask_data(), batch.batch, batch.length, a);
                 }
                 py::dict out;
                 const Shape shape = {scores.batch, scores.length};
                 out["log_probability"] = move_to_array(std::move(scores.log_probability), shape);
                 out["rank"] = move_to_array(std::move(scores.rank), shape);
                 out["predicted"] = move_to_array(std::move(scores.predicted), shape);
                 out["valid"] = move_to_array(std::move(scores.valid), shape).attr("astype")("bool");
                 return out;
             },
             py::arg("latents"), py::arg("answers"), py::arg("attention_mask") = py::none(),
             "Teacher-forced per-position scores of reference answers [B, La] (right-padded) given latents.")
        .def("loss",
             [](CascadeModel& self, py::object contexts, py::object context_mask, py::object answers,
                py::object answer_mask) {
                 const ContextsAndAnswers batch(self.config, contexts, context_mask, answers, answer_mask);
                 const IdBatch &c = batch.contexts, &a = batch.answers;
                 CascadeActivations<float> activations;
                 size_t tokens = 0;
                 py::gil_scoped_release release;
                 const double total = self.loss(c.ids.data(), c.mask_data(), c.length, a.ids.data(), a.mask_data(),
                                                a.length, c.batch, false, 0.f, activations, &tokens);
                 C3_CHECK(tokens > 0, ValueError, "the answers hold no tokens");
                 return total / double(tokens);
             },
             py::arg("contexts"), py::arg("context_mask") = py::none(), py::arg("answers") = py::none(),
             py::arg("answer_mask") = py::none(), "Mean answer-token loss without gradients.")
        .def("loss_and_gradients",
             [](CascadeModel& self, py::object contexts, py::object context_mask, py::object answers,
                py::object answer_mask) {
                 const ContextsAndAnswers batch(self.config, contexts, context_mask, answers, answer_mask);
                 const IdBatch &c = batch.contexts, &a = batch.answers;
                 size_t tokens = 0;
                 for (size_t i = 0; i < a.ids.size(); ++i) tokens += a.mask.empty() || a.mask[i];
                 C3_CHECK(tokens > 0, ValueError, "the answers hold no tokens");
                 py::gil_scoped_release release;
                 // Every gradient buffer is zeroed, frozen parts included, so that they read as exact zeros.
                 self.encoder.enable_gradients();
                 self.decoder.enable_gradients();
                 self.encoder.zero_gradients();
                 self.decoder.zero_gradients();
                 std::fill(self.bridge_gradients.begin(), self.bridge_gradients.end(), 0.f);
                 CascadeActivations<float> activations;
                 const double total = self.loss(c.ids.data(), c.mask_data(), c.length, a.ids.data(), a.mask_data(),
                                                a.length, c.batch, true, float(1.0 / double(tokens)), activations);
                 return total / double(tokens);
             },
             py::arg("contexts"), py::arg("context_mask") = py::none(), py::arg("answers") = py::none(),
             py::arg("answer_mask") = py::none(),
             "Mean answer-token loss; zeroes every gradient, then accumulates d(mean loss) into the trainable parts "
             "(read them with encoder.gradients(), decoder.gradients(), bridge_gradients()).");

    m.def("banned_ngram_tokens",
          [](const std::vector<int32_t>& history, size_t vocab_size, size_t ngram_size) {
              std::vector<float> logits(vocab_size, 0.f);
              detail::ban_repeated_ngrams(logits.data(), vocab_size, history, ngram_size);
              std::vector<int32_t> banned;
              for (size_t v = 0; v < vocab_size; ++v)
                  if (std::isinf(logits[v])) banned.push_back(int32_t(v));
              return banned;
          },
          py::arg("history"), py::arg("vocab_size"), py::arg("ngram_size"),
          "The tokens that generation's no_repeat_ngram_size rule bans after `history` (for tests).");

    py::class_<CascadeTrainer<float>>(m, "CascadeTrainer", "AdamW training of a cascade, with any part frozen.")
        .def(py::init([](CascadeModel& cascade, double learning_rate, double weight_decay, double beta1, double beta2,
                         double epsilon, size_t warmup_steps, size_t total_steps, double min_lr_ratio,
                         double max_grad_norm) {
                 return std::make_unique<CascadeTrainer<float>>(
                     cascade, training_options_from_kwargs(learning_rate, weight_decay, beta1, beta2, epsilon,
                                                           warmup_steps, total_steps, min_lr_ratio, max_grad_norm));
             }),
             py::arg("cascade"), py::arg("learning_rate") = 1e-3, py::arg("weight_decay") = 0.0,
             py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("epsilon") = 1e-8,
             py::arg("warmup_steps") = 0, py::arg("total_steps") = 1000, py::arg("min_lr_ratio") = 0.0,
             py::arg("max_grad_norm") = 1.0, py::keep_alive<1, 2>())
        .def("step",
             [](CascadeTrainer<float>& self, py::object contexts, py::object context_mask, py::object answers,
                py::object answer_mask, size_t micro_batches) {
                 const ContextsAndAnswers batch(self.cascade.config, contexts, context_mask, answers, answer_mask);
                 const IdBatch &c = batch.contexts, &a = batch.answers;
                 C3_CHECK(micro_batches >= 1 && c.batch % micro_batches == 0, ValueError, "micro_batches (",
                          micro_batches, ") must divide the batch size (", c.batch, ")");
                 const size_t rows = c.batch / micro_batches;
                 std::vector<CascadeTrainer<float>::Batch> parts;
                 for (size_t k = 0; k < micro_batches; ++k)
                     parts.push_back({c.ids.data() + k * rows * c.length,
                                      c.mask.empty() ? nullptr : c.mask.data() + k * rows * c.length, c.length,
                                      a.ids.data() + k * rows * a.length,
                                      a.mask.empty() ? nullptr : a.mask.data() + k * rows * a.length, a.length, rows});
                 StepReport report;
                 {
                     py::gil_scoped_release release;
                     report = self.step(parts);
                 }
                 return step_report_to_dict(report);
             },
             py::arg("contexts"), py::arg("context_mask") = py::none(), py::arg("answers") = py::none(),
             py::arg("answer_mask") = py::none(), py::arg("micro_batches") = 1)
        .def_property_readonly("step_count", [](const CascadeTrainer<float>& self) { return self.trainer.optimizer.step; })
        .def("optimizer_state",
             [](py::object self_object) {
                 auto& self = self_object.cast<CascadeTrainer<float>&>();
                 auto& optimizer = self.trainer.optimizer;
                 if (optimizer.first_moment.empty())
                     for (const auto& group : self.trainer.groups) {
                         optimizer.first_moment.emplace_back(group.size(), 0.f);
                         optimizer.second_moment.emplace_back(group.size(), 0.f);
                     }
                 py::dict state;
                 state["step"] = optimizer.step;
                 for (size_t g = 0; g < self.trainer.groups.size(); ++g) {
                     const std::string name = self.trainer.groups[g].name;
                     state[py::str(name + ".first_moment")] = view_array(optimizer.first_moment[g].data(), {optimizer.first_moment[g].size()}, self_object);
                     state[py::str(name + ".second_moment")] = view_array(optimizer.second_moment[g].data(), {optimizer.second_moment[g].size()}, self_object);
                 }
                 return state;
             })
        .def("load_optimizer_state", [](CascadeTrainer<float>& self, const py::dict& state) {
                 auto& optimizer = self.trainer.optimizer;
                 optimizer.step = state["step"].cast<size_t>();
                 optimizer.first_moment.clear();
                 optimizer.second_moment.clear();
                 for (const auto& group : self.trainer.groups) {
                     for (const char* kind : {".first_moment", ".second_moment"}) {
                         auto array = Array<float>::ensure(state[py::str(group.name + kind)]);
                         expect_shape(array, {group.size()}, (group.name + kind).c_str());
                         auto& target = std::string(kind) == ".first_moment" ? optimizer.first_moment : optimizer.second_moment;
                         target.emplace_back(array.data(), array.data() + array.size());
                     }
                 }
             });
}

}  // namespace c3::python
