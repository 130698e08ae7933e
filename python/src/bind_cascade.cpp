// c3._core.CascadeModel and CascadeTrainer: the C3 encoder -> projector -> decoder on token ids.
// Text goes through the Python layer (c3.Cascade), which owns the tokenizer.
#include "bindings.hpp"
#include "config_convert.hpp"
#include "model_arrays.hpp"
#include "trainer_state.hpp"
#include <climits>

#include "c3/cascade/chunks.hpp"
#include "c3/io/c3_checkpoint.hpp"
#include "c3/train/cascade_trainer.hpp"

namespace c3::python {

using CascadeModel = Cascade<float>;

namespace {

py::dict cascade_config_to_dict(const CascadeConfig& c) {
    py::dict d;
    d["encoder"] = config_to_dict(c.encoder);
    d["decoder"] = config_to_dict(c.decoder);
    d["num_latents"] = c.num_latents;
    d["projector"] = c.projector == ProjectorKind::Mlp ? "mlp" : "linear";
    d["method"] = method_name(c.method);
    d["latent_start_token"] = c.latent_start_token;
    d["latent_end_token"] = c.latent_end_token;
    d["latent_pad_token"] = c.latent_pad_token;
    d["prompt_prefix"] = c.prompt_prefix;
    d["prompt_suffix"] = c.prompt_suffix;
    d["stop_tokens"] = c.stop_tokens;
    return d;
}

// Reads a dict into `c`: the model configs and num_latents here (when models_allowed; Cascade.load's defaults
// take none), every other key through io::read_cascade_settings, the parser config.json's "c3" key goes through.
void cascade_keys_from_dict(const py::dict& d, CascadeConfig& c, bool models_allowed) {
    nlohmann::json settings = nlohmann::json::object();
    for (auto item : d) {
        C3_CHECK(py::isinstance<py::str>(item.first), ConfigError, "cascade config keys must be str, got ",
                 std::string(py::repr(item.first)));
        const std::string key = py::str(item.first);
        py::handle value = item.second;
        if (models_allowed && (key == "encoder" || key == "decoder")) {
            C3_CHECK(py::isinstance<py::dict>(value), ConfigError, "cascade config key '", key, "' must be a dict");
            (key == "encoder" ? c.encoder : c.decoder) = config_from_dict(value.cast<py::dict>(), "cascade " + key);
        } else if (models_allowed && key == "num_latents") {
            c.num_latents = size_from_python(key, value);
        } else {
            settings[key] = json_from_python(value, "cascade config key '" + key + "'");
        }
    }
    io::read_cascade_settings(settings, "cascade config", c);
}

CascadeConfig cascade_config_from_dict(const py::dict& d) {
    CascadeConfig c;
    cascade_keys_from_dict(d, c, true);
    c.validate();
    return c;
}

// Latents [B, K * W, d_dec] from NumPy (K blocks, 1 by default), checked: W is N, 0 without context, any width
// with the full context (then one block).
Array<float> latents_from_array(const CascadeModel& cascade, const py::object& object, size_t blocks = 1) {
    auto latents = Array<float>::ensure(object);
    C3_CHECK(latents, ValueError, "latents must be a float array");
    C3_CHECK(latents.ndim() == 3, ShapeError, "latents must be [batch, width, d_dec], got ", latents.ndim(),
             " dimensions");
    C3_CHECK(blocks >= 1, ValueError, "blocks must be at least 1, got ", blocks);
    const bool any_width = cascade.config.method == CompressionMethod::FullContext;
    const size_t width = cascade.config.block_width(0);
    C3_CHECK(blocks == 1 || (!any_width && width > 0), ValueError, "method ", method_name(cascade.config.method),
             " reads one block (", any_width ? "as wide as its context" : "an empty one", "), got blocks=", blocks);
    // Compared by division: a hostile block count must not wrap a product into a matching width.
    const size_t rows = size_t(latents.shape(1));
    C3_CHECK(any_width || (rows % blocks == 0 && rows / blocks == width), ShapeError, "latents have ", rows,
             " rows, not ", blocks, " blocks of ", width);
    expect_shape(latents, {0, rows, cascade.config.decoder.hidden_size}, "latents");
    check_finite(latents.data(), size_t(latents.size()), "latents");
    return latents;
}

// The latent block's mask [B, W] (None: every row real).
std::vector<uint8_t> latent_mask_from_object(const py::object& object, const Array<float>& latents) {
    if (object.is_none()) return {};
    return mask_from_array(object, size_t(latents.shape(0)), size_t(latents.shape(1)));
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

// A task's decoder suffix per row, [B, S] left-padded (None: the prompt's suffix), checked against the decoder's
// vocabulary and the batch.
struct TaskIds {
    std::optional<IdBatch> ids;
    TaskIds(const CascadeConfig& config, const py::object& ids_object, const py::object& mask_object, size_t batch) {
        if (ids_object.is_none()) {
            C3_CHECK(mask_object.is_none(), ValueError, "task_mask without task ids");
            return;
        }
        ids.emplace(ids_object, mask_object, "task");
        C3_CHECK(ids->length > 0, ShapeError, "task ids must hold at least one token per row (None: the prompt's "
                 "suffix)");
        check_vocabulary(ids->ids, config.decoder.vocab_size, "task");
        C3_CHECK(ids->batch == batch, ShapeError, "task ids have batch ", ids->batch, ", the answers ", batch);
    }
    TaskSuffix suffix() const {
        return ids ? TaskSuffix{ids->ids.data(), ids->mask_data(), ids->length} : TaskSuffix{};
    }
};

// Contexts and answers of one batch, checked against each other and against the cascade's vocabularies. With
// blocks = K, each answer reads K consecutive context rows (the chunks of one document), and task ids, when given,
// replace the prompt's suffix.
struct ContextsAndAnswers {
    IdBatch contexts, answers;
    size_t blocks;
    TaskIds task;
    ContextsAndAnswers(const CascadeConfig& config, const py::object& contexts_object, const py::object& context_mask,
                       const py::object& answers_object, const py::object& answer_mask, size_t blocks_ = 1,
                       const py::object& task_ids = py::none(), const py::object& task_mask = py::none())
        : contexts(contexts_object, context_mask, "contexts"), answers(answers_object, answer_mask, "answers"),
          blocks(blocks_), task(config, task_ids, task_mask, answers.batch) {
        C3_CHECK(blocks >= 1, ValueError, "blocks must be at least 1, got ", blocks);
        C3_CHECK(blocks == 1 || (config.method != CompressionMethod::FullContext &&
                                 config.method != CompressionMethod::NoContext),
                 ValueError, "blocks of chunks need a block of N rows per chunk; method ", method_name(config.method),
                 " has none");
        C3_CHECK(contexts.batch % blocks == 0 && contexts.batch / blocks == answers.batch, ShapeError,
                 "contexts have batch ", contexts.batch, ", answers ", answers.batch, blocks > 1 ?
                 " (each answer reads " + std::to_string(blocks) + " context rows)" : std::string());
        check_vocabulary(contexts.ids, config.encoder.vocab_size, "contexts");
        check_vocabulary(answers.ids, config.decoder.vocab_size, "answers");
    }
    CascadeTrainer<float>::Batch trainer_batch() const {
        return {contexts.ids.data(), contexts.mask_data(), contexts.length, answers.ids.data(), answers.mask_data(),
                answers.length, answers.batch, blocks, task.suffix()};
    }
};

// Latents that compress made are finite, or a ValueError: the first non-finite parameter when the weights hold
// one (float storage), else the first non-finite latent. NaN latents saved to a file would decode as garbage.
void check_compressed(const CascadeModel& self, const std::vector<float>& latents) {
    for (size_t i = 0; i < latents.size(); ++i) {
        if (std::isfinite(latents[i])) continue;
        const std::string what = "compress";
        if (!self.encoder.stores_bf16())
            io::check_finite_parameters(self.encoder.layout, self.encoder.parameters.data(), what + " (encoder)");
        if (!self.decoder.stores_bf16())
            io::check_finite_parameters(self.decoder.layout, self.decoder.parameters.data(), what + " (decoder)");
        io::check_finite_parameters(self.bridge, self.bridge_parameters.data(), what);
        throw ValueError(::c3::detail::concat("compress: non-finite latent value ", latents[i], " at flat index ", i,
                                              " (the weights are finite: an activation overflowed)"));
    }
}

// The shared body of compress and compress_with_mask: contexts [B, L] (checked against the encoder's vocabulary)
// compressed into `a` with the GIL released; returns B.
size_t compress_into(const CascadeModel& self, const py::object& contexts, const py::object& attention_mask,
                     CascadeActivations<float>& a) {
    const IdBatch batch(contexts, attention_mask, "contexts");
    check_vocabulary(batch.ids, self.config.encoder.vocab_size, "contexts");
    py::gil_scoped_release release;
    self.compress(batch.ids.data(), batch.mask_data(), batch.batch, batch.length, a, false);
    check_compressed(self, a.latents);
    return batch.batch;
}

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
                        // The models give the encoder's and decoder's configs; the dict's own are ignored.
                        py::dict settings_dict = config.attr("copy")();
                        settings_dict.attr("pop")("encoder", py::none());
                        settings_dict.attr("pop")("decoder", py::none());
                        CascadeConfig settings;
                        cascade_keys_from_dict(settings_dict, settings, true);
                        return std::make_shared<CascadeModel>(cascade_from_models(encoder, decoder, settings, seed));
                    },
                    py::arg("encoder"), py::arg("decoder"), py::arg("config"), py::arg("seed") = 0,
                    "A cascade from two (pretrained) transformers, copied in; Q and the projector start random.")
        .def_static("load",
                    [](const std::string& directory, const py::dict& defaults, const std::string& storage) {
                        C3_CHECK(storage == "float32" || storage == "bf16", ValueError,
                                 "storage must be 'float32' or 'bf16', got '", storage, "'");
                        CascadeConfig fallback = io::official_cascade_defaults();
                        cascade_keys_from_dict(defaults, fallback, false);
                        py::gil_scoped_release release;
                        return std::make_shared<CascadeModel>(io::load_c3<float>(
                            directory, fallback, storage == "bf16" ? WeightStorage::Bf16 : WeightStorage::Float));
                    },
                    py::arg("directory"), py::arg("defaults") = py::dict(), py::arg("storage") = "float32",
                    "Load the official C3 layout (decoder directory with llm1/ encoder).")
        .def("save",
             [](const CascadeModel& self, const std::string& directory, const std::string& dtype,
                const std::map<std::string, std::string>& extra_files) {
                 const io::DType stored = io::dtype_from_name(dtype);
                 py::gil_scoped_release release;
                 io::save_c3(self, directory, stored, extra_files);
             },
             py::arg("directory"), py::arg("dtype") = "F32", py::arg("extra_files") = std::map<std::string, std::string>{})
        .def("identity",
             [](const CascadeModel& self) {
                 py::gil_scoped_release release;
                 return io::cascade_identity(self);
             },
             "Which cascade this is (16 hex digits): SHA-256 over the configuration and every parameter, computed "
             "from the weights in memory at each call (so a changed weight changes it).")
        .def("parameters_fingerprint",
             [](const CascadeModel& self) {
                 py::gil_scoped_release release;
                 return io::parameters_fingerprint(self);
             },
             "A fast 64-bit fingerprint of every parameter's bytes: it changes whenever a weight does (Cascade keys "
             "its cached identity on it).")
        .def_property_readonly("config", [](const CascadeModel& self) { return cascade_config_to_dict(self.config); })
        .def_property_readonly("num_parameters", &CascadeModel::num_parameters)
        // The decoder prompt's layout, from CascadeConfig (the one place it is defined).
        .def("prompt_length",
             [](const CascadeModel& self, size_t block_width, size_t blocks, std::optional<size_t> suffix_length) {
                 DecoderLayout layout = self.config.layout(block_width, blocks);
                 if (suffix_length) layout.suffix = *suffix_length;
                 C3_CHECK(blocks >= 1 && blocks <= (SIZE_MAX / 4) / (block_width + 2) && layout.suffix <= SIZE_MAX / 4,
                          ValueError, "blocks must be between 1 and ", (SIZE_MAX / 4) / (block_width + 2),
                          " and the suffix at most ", SIZE_MAX / 4, " tokens; got blocks=", blocks);
                 return layout.prompt_length();
             },
             py::arg("block_width"), py::arg("blocks") = 1, py::arg("suffix_length") = py::none(),
             "Tokens of the decoder prompt: prefix, then `blocks` latent blocks of `block_width` rows each in <img> "
             "... </img>, then the suffix (the prompt's, or a task's of suffix_length tokens).")
        .def("block_width",
             [](const CascadeModel& self, size_t context_length) { return self.config.block_width(context_length); },
             py::arg("context_length"),
             "Rows of the decoder's latent block for contexts of `context_length` tokens: N, 0 for no_context, the "
             "context length for full_context.")
        .def_property_readonly("max_context_length",
                               [](const CascadeModel& self) { return self.config.max_context_length(); },
                               "The longest context the encoder reads beside its N queries and their two markers.")
        .def_property_readonly("encoder", [](CascadeModel& self) -> Transformer<float>& { return self.encoder; },
                               py::return_value_policy::reference_internal)
        .def_property_readonly("decoder", [](CascadeModel& self) -> Transformer<float>& { return self.decoder; },
                               py::return_value_policy::reference_internal)
        .def("bridge_parameters",
             [](py::object self_object) {
                 auto& self = self_object.cast<CascadeModel&>();
                 return layout_views(self.bridge, self.bridge_parameters, self_object);
             },
             "Q and the projector as NumPy views (writes go into the model).")
        .def("bridge_gradients",
             [](py::object self_object) {
                 auto& self = self_object.cast<CascadeModel&>();
                 return layout_views(self.bridge, self.bridge_gradients, self_object);
             })
        .def("set_trainable", &CascadeModel::set_trainable, py::arg("part"), py::arg("trainable"),
             "Freeze (False) or unfreeze a part: 'encoder', 'decoder', 'queries', 'projector' or 'hierarchical' "
             "(the hierarchical baseline's blocks).")
        .def("compress",
             [](const CascadeModel& self, py::object contexts, py::object attention_mask) {
                 thread_local CascadeActivations<float> a;  // reused per thread: see Transformer.forward
                 const size_t batch = compress_into(self, contexts, attention_mask, a);
                 return move_to_array(std::move(a.latents), {batch, a.block_width, self.config.decoder.hidden_size});
             },
             py::arg("contexts"), py::arg("attention_mask") = py::none(),
             "Contexts [B, L] (left-padded) -> latents [B, W, d_dec] (W = N; 0 for no_context, L for full_context).")
        .def("compress_with_mask",
             [](const CascadeModel& self, py::object contexts, py::object attention_mask) {
                 CascadeActivations<float> a;
                 const size_t batch = compress_into(self, contexts, attention_mask, a);
                 py::object mask = py::none();
                 if (!a.block_mask.empty())
                     mask = move_to_array(std::move(a.block_mask), {batch, a.block_width}).attr("astype")("bool");
                 return py::make_tuple(
                     move_to_array(std::move(a.latents), {batch, a.block_width, self.config.decoder.hidden_size}), mask);
             },
             py::arg("contexts"), py::arg("attention_mask") = py::none(),
             "(latents [B, W, d_dec], their mask [B, W] or None when every row is real): full_context masks the "
             "contexts' padding.")
        .def("compress_chunks",
             [](const CascadeModel& self, const py::iterable& ids_list, size_t chunk_tokens, size_t batch_chunks) {
                 std::vector<std::vector<int32_t>> documents;
                 for (py::handle item : ids_list) {
                     py::array array = py::array::ensure(item);
                     C3_CHECK(array && array.ndim() == 1, ShapeError, "document ", documents.size(),
                              ": token ids must be a 1-d integer array");
                     const std::string what = "document " + std::to_string(documents.size());
                     documents.push_back(ids_from_array(array.reshape({py::ssize_t(1), array.shape(0)}), what.c_str()));
                 }
                 std::vector<TokenSpan> spans;
                 for (const std::vector<int32_t>& document : documents)
                     spans.push_back({document.data(), document.size()});
                 std::vector<ChunkedLatents<float>> results;
                 {
                     py::gil_scoped_release release;
                     results = compress_chunks(self, spans, chunk_tokens, batch_chunks);
                 }
                 py::list out;
                 for (ChunkedLatents<float>& result : results) {
                     check_compressed(self, result.latents);
                     const size_t chunks = result.chunks();
                     out.append(py::make_tuple(
                         move_to_array(std::move(result.latents),
                                       {chunks, self.config.num_latents, self.config.decoder.hidden_size}),
                         move_to_array(std::move(result.offsets), {chunks}),
                         move_to_array(std::move(result.lengths), {chunks})));
                 }
                 return out;
             },
             py::arg("ids_list"), py::arg("chunk_tokens"), py::arg("batch_chunks") = 32,
             "Documents of any length (a list of 1-d token-id arrays) -> one (latents [K, N, d_dec], offsets [K], "
             "lengths [K]) per document: its K consecutive chunks of chunk_tokens tokens (the last one shorter), each "
             "compressed as compress compresses it alone, in batches of at most batch_chunks chunks (include/c3/"
             "cascade/chunks.hpp).")
        .def("reconstruct",
             [](const CascadeModel& self, py::object latents_object, size_t max_new_tokens,
                std::optional<std::vector<int32_t>> stop_tokens, bool sample, double temperature, size_t top_k,
                double top_p, size_t no_repeat_ngram_size, uint64_t seed, int32_t pad_token, py::object latent_mask,
                size_t blocks, py::object task, py::object task_mask) {
                 auto latents = latents_from_array(self, latents_object, blocks);
                 const std::vector<uint8_t> mask = latent_mask_from_object(latent_mask, latents);
                 const TaskIds task_ids(self.config, task, task_mask, size_t(latents.shape(0)));
                 const GenerationOptions options = generation_options(
                     max_new_tokens, stop_tokens ? *stop_tokens : self.config.stop_tokens,  // [] = never stop
                     sample, temperature, top_k, top_p, no_repeat_ngram_size, seed, pad_token);
                 GenerationResult result;
                 {
                     py::gil_scoped_release release;
                     result = self.reconstruct(latents.data(), size_t(latents.shape(1)) / blocks, blocks,
                                               mask.empty() ? nullptr : mask.data(), task_ids.suffix(),
                                               size_t(latents.shape(0)), options);
                 }
                 return generation_result_to_python(std::move(result));
             },
             py::arg("latents"), py::arg("max_new_tokens") = 256, py::arg("stop_tokens") = py::none(),
             py::arg("sample") = false, py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
             py::arg("no_repeat_ngram_size") = 0, py::arg("seed") = 0, py::arg("pad_token") = 0,
             py::arg("latent_mask") = py::none(), py::arg("blocks") = 1, py::arg("task") = py::none(),
             py::arg("task_mask") = py::none(),
             "Latents -> (tokens [B, steps], lengths [B]) by greedy or sampled decoding with the KV cache. blocks=K: "
             "latents [B, K * N, d_dec] are K blocks, each in its own <img> ... </img>; task [B, S] (left-padded, "
             "task_mask): a task's decoder suffix in place of the prompt's.")
        .def("score",
             [](const CascadeModel& self, py::object latents_object, py::object answers, py::object answer_mask,
                py::object latent_mask, size_t blocks, py::object task, py::object task_mask) {
                 auto latents = latents_from_array(self, latents_object, blocks);
                 const std::vector<uint8_t> mask = latent_mask_from_object(latent_mask, latents);
                 IdBatch batch(answers, answer_mask, "answers");
                 check_vocabulary(batch.ids, self.config.decoder.vocab_size, "answers");
                 C3_CHECK(batch.batch == size_t(latents.shape(0)), ShapeError, "answers have batch ", batch.batch,
                          ", latents have ", latents.shape(0));
                 const TaskIds task_ids(self.config, task, task_mask, batch.batch);
                 CascadeActivations<float> a;
                 AnswerScores scores;
                 {
                     py::gil_scoped_release release;
                     scores = self.score(latents.data(), size_t(latents.shape(1)) / blocks, blocks,
                                         mask.empty() ? nullptr : mask.data(), task_ids.suffix(), batch.ids.data(),
                                         batch.mask_data(), batch.batch, batch.length, a);
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
             py::arg("latent_mask") = py::none(), py::arg("blocks") = 1, py::arg("task") = py::none(),
             py::arg("task_mask") = py::none(),
             "Teacher-forced per-position scores of reference answers [B, La] (right-padded) given latents "
             "(blocks, task: as in reconstruct).")
        .def("loss",
             [](CascadeModel& self, py::object contexts, py::object context_mask, py::object answers,
                py::object answer_mask, size_t blocks, py::object task, py::object task_mask) {
                 const ContextsAndAnswers batch(self.config, contexts, context_mask, answers, answer_mask, blocks,
                                                task, task_mask);
                 CascadeActivations<float> activations;
                 py::gil_scoped_release release;
                 return CascadeTrainer<float>::mean_loss(self, batch.trainer_batch(), false, activations);
             },
             py::arg("contexts"), py::arg("context_mask") = py::none(), py::arg("answers") = py::none(),
             py::arg("answer_mask") = py::none(), py::arg("blocks") = 1, py::arg("task") = py::none(),
             py::arg("task_mask") = py::none(),
             "Mean answer-token loss without gradients. blocks=K: each answer reads the K consecutive rows of "
             "contexts (one document's chunks), each compressed into its own block; task [B, S]: a task's decoder "
             "suffix in place of the prompt's.")
        .def("loss_and_gradients",
             [](CascadeModel& self, py::object contexts, py::object context_mask, py::object answers,
                py::object answer_mask, size_t blocks, py::object task, py::object task_mask) {
                 const ContextsAndAnswers batch(self.config, contexts, context_mask, answers, answer_mask, blocks,
                                                task, task_mask);
                 py::gil_scoped_release release;
                 CascadeActivations<float> activations;
                 return CascadeTrainer<float>::mean_loss(self, batch.trainer_batch(), true, activations);
             },
             py::arg("contexts"), py::arg("context_mask") = py::none(), py::arg("answers") = py::none(),
             py::arg("answer_mask") = py::none(), py::arg("blocks") = 1, py::arg("task") = py::none(),
             py::arg("task_mask") = py::none(),
             "Mean answer-token loss; zeroes every gradient, then accumulates d(mean loss) into the trainable parts "
             "(read them with encoder.gradients(), decoder.gradients(), bridge_gradients()).");

    m.def("task_names", &task_names, "The tasks a decoder prompt of a document's blocks asks for (cascade.hpp).");
    m.def("task_prompt", &task_prompt, py::arg("task"), py::arg("chunk") = 0,
          "The text of a task's decoder suffix: 'chunk' (the text of chunk `chunk`, 0-based) or 'continue' (the "
          "text that follows the document).");
    m.def("method_names", &method_names,
          "The compression methods a cascade's 'method' may name: c3 and the baselines (cascade/baselines.hpp).");

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

    py::class_<CascadeTrainer<float>> trainer_class(m, "CascadeTrainer",
                                                    "AdamW training of a cascade, with any part frozen. data_parallel: "
                                                    "each thread runs encoder, projector and decoder forward and "
                                                    "backward on its share of the batch's sequences (used when every "
                                                    "micro-batch has at least as many sequences as threads). "
                                                    "sequences_per_pass: each share runs in passes of this many "
                                                    "sequences (0: one pass). data_parallel_shares: always this "
                                                    "many shares (0: one per thread; at most 1024; needs "
                                                    "data_parallel), so that the trained parameters "
                                                    "do not depend on the thread count. compute_dtype: 'float32', "
                                                    "'bfloat16' for mixed precision or 'auto', chosen at the "
                                                    "decoder's shape (as in LanguageModelTrainer).");
    bind_trainer_constructor<CascadeTrainer<float>, CascadeModel>(trainer_class, "cascade");
    trainer_class
        .def("step",
             [](CascadeTrainer<float>& self, py::object contexts, py::object context_mask, py::object answers,
                py::object answer_mask, size_t micro_batches) {
                 const ContextsAndAnswers batch(self.cascade.config, contexts, context_mask, answers, answer_mask);
                 StepReport report;
                 {
                     py::gil_scoped_release release;
                     report = self.step(batch.trainer_batch(), micro_batches);
                 }
                 return step_report_to_dict(report);
             },
             py::arg("contexts"), py::arg("context_mask") = py::none(), py::arg("answers") = py::none(),
             py::arg("answer_mask") = py::none(), py::arg("micro_batches") = 1)
        .def("step_weighted",
             [](CascadeTrainer<float>& self, const py::list& groups, const std::vector<double>& weights) {
                 // Each group: (contexts, context_mask, answers, answer_mask); kept alive for the step.
                 std::vector<ContextsAndAnswers> batches;
                 batches.reserve(groups.size());
                 for (auto group : groups) {
                     auto items = group.cast<py::tuple>();
                     C3_CHECK(items.size() == 4 || items.size() == 7, ValueError,
                              "each group is (contexts, context_mask, answers, answer_mask), or that and (blocks, "
                              "task, task_mask)");
                     if (items.size() == 4)
                         batches.emplace_back(self.cascade.config, items[0], items[1], items[2], items[3]);
                     else {
                         const py::handle blocks = items[4];
                         C3_CHECK(py::isinstance<py::int_>(blocks) && !py::isinstance<py::bool_>(blocks) &&
                                      blocks.cast<py::int_>() >= py::int_(1) &&
                                      blocks.cast<py::int_>() <= py::int_(size_t(SIZE_MAX)),
                                  ValueError, "a group's blocks must be an integer at least 1, got ",
                                  std::string(py::repr(blocks)));
                         batches.emplace_back(self.cascade.config, items[0], items[1], items[2], items[3],
                                              items[4].cast<size_t>(), items[5], items[6]);
                     }
                 }
                 std::vector<std::vector<CascadeTrainer<float>::Batch>> parts;
                 for (const ContextsAndAnswers& b : batches) parts.push_back({b.trainer_batch()});
                 StepReport report;
                 {
                     py::gil_scoped_release release;
                     report = self.step_weighted(parts, weights);
                 }
                 return step_report_to_dict(report);
             },
             py::arg("groups"), py::arg("weights"),
             "One step on sum_g weights[g] * (mean answer-token loss of group g); groups are (contexts, "
             "context_mask, answers, answer_mask) tuples (reconstruction and continuation, say), optionally "
             "followed by (blocks, task, task_mask) as in loss.")
        .def_property_readonly("step_count", [](const CascadeTrainer<float>& self) { return self.trainer.optimizer.step; });
    bind_trainer_state(trainer_class);
}

}  // namespace c3::python
