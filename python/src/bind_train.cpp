// c3._core.LanguageModelTrainer: AdamW training of a Transformer on batches of token ids.
#include "bindings.hpp"
#include "model_arrays.hpp"
#include "trainer_state.hpp"
#include "c3/train/trainer.hpp"

namespace c3::python {

using Model = Transformer<float>;

py::dict step_report_to_dict(const StepReport& r) {
    py::dict d;
    d["step"] = r.step;
    d["loss"] = r.loss;
    d["gradient_norm"] = r.gradient_norm;
    d["learning_rate"] = r.learning_rate;
    d["tokens"] = r.tokens;
    d["seconds"] = r.seconds;
    d["data_parallel_shares"] = r.data_parallel_shares;
    return d;
}

struct TrainBatch {
    BatchInput batch;
    std::vector<int32_t> targets;
    TrainBatch(const py::object& ids, const py::object& mask, const py::object& targets_object, size_t hidden)
        : batch(ids, py::none(), mask, py::none(), hidden) {
        if (targets_object.is_none()) {
            targets = shifted_targets(batch.ids, batch.mask, batch.input.batch, batch.input.length);
        } else {
            py::array array = py::array::ensure(targets_object);
            C3_CHECK(array, ValueError, "targets must be an integer array");
            expect_shape(array, {batch.input.batch, batch.input.length}, "targets");
            auto wide = Array<int64_t>::ensure(array);
            targets.assign(wide.data(), wide.data() + wide.size());
        }
    }
};

void bind_train(py::module_& m) {
    m.attr("max_data_parallel_shares") = py::int_(kMaxDataParallelShares);  // data_parallel_shares' upper bound
    py::class_<LanguageModelTrainer<float>> trainer_class(m, "LanguageModelTrainer",
                                            "AdamW with clipping, warmup + cosine schedule and accumulation. data_parallel: each thread runs "
                                            "forward and backward on its share of the batch's sequences (used when "
                                            "the batch has at least as many sequences as threads). "
                                            "sequences_per_pass: each share runs in passes of this many sequences "
                                            "(0: automatic, passes of at least 128 rows where the model's gradients "
                                            "are smaller than one pass's saved activations). "
                                            "data_parallel_shares: always this many shares, summed in share order "
                                            "(0: one per thread; at most 1024; needs data_parallel), so that the "
                                            "trained parameters do not depend on the thread count. "
                                            "compute_dtype: 'float32', 'bfloat16' for mixed precision (float32 "
                                            "weights and AdamW moments; each step's forward products and input "
                                            "gradients multiply bf16 copies of the weights, with float32 sums), or "
                                            "'auto' (bfloat16 where compute_trial measures bf16 products faster at "
                                            "the model's shape; the property compute_dtype holds the choice).");
    bind_trainer_constructor<LanguageModelTrainer<float>, Model>(trainer_class, "model");
    trainer_class
        .def("step",
             [](LanguageModelTrainer<float>& self, py::object ids, py::object attention_mask, py::object targets,
                size_t micro_batches) {
                 TrainBatch data(ids, attention_mask, targets, self.model.config.hidden_size);
                 StepReport report;
                 {
                     py::gil_scoped_release release;
                     report = self.step(data.batch.input, data.targets.data(), micro_batches);
                 }
                 return step_report_to_dict(report);
             },
             py::arg("ids"), py::arg("attention_mask") = py::none(), py::arg("targets") = py::none(),
             py::arg("micro_batches") = 1,
             "One optimiser step. targets default to the next token (ignored across padding). Returns a report dict.")
        .def("evaluate",
             [](LanguageModelTrainer<float>& self, py::object ids, py::object attention_mask, py::object targets) {
                 TrainBatch data(ids, attention_mask, targets, self.model.config.hidden_size);
                 py::gil_scoped_release release;
                 return self.evaluate(data.batch.input, data.targets.data());
             },
             py::arg("ids"), py::arg("attention_mask") = py::none(), py::arg("targets") = py::none(),
             "Mean token loss without gradients.")
        .def_property_readonly("step_count", [](const LanguageModelTrainer<float>& self) { return self.trainer.optimizer.step; })
        .def("learning_rate_at", [](const LanguageModelTrainer<float>& self, size_t step) { return self.trainer.schedule.at(step); });
    bind_trainer_state(trainer_class);

    m.def("language_model_gradients",
          [](Model& model, py::object ids, py::object attention_mask, py::object targets) {
              TrainBatch data(ids, attention_mask, targets, model.config.hidden_size);
              py::gil_scoped_release release;
              Activations<float> activations;
              return language_model_gradients(model, data.batch.input, data.targets.data(), activations);
          },
          py::arg("model"), py::arg("ids"), py::arg("attention_mask") = py::none(), py::arg("targets") = py::none(),
          "Mean next-token loss; its gradients replace the model's gradient buffer (see Transformer.gradients()).");
    m.def("set_trainable", [](Model& model, const std::string& prefix, bool value) { return model.set_trainable(prefix, value); },
          py::arg("model"), py::arg("prefix"), py::arg("trainable"),
          "Freeze (False) or unfreeze every parameter whose name starts with prefix; returns how many matched.");
}

}  // namespace c3::python
