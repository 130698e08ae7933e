// What both trainers share in Python: the constructor's keyword arguments (TrainingOptions), and the
// optimiser-state and checkpoint methods: AdamW::state and load_state (train/adamw.hpp), and the training
// checkpoint (train/checkpoint.hpp).
#pragma once
#include <climits>
#include <memory>
#include <string>

#include "bindings.hpp"
#include "config_convert.hpp"
#include "c3/train/checkpoint.hpp"
#include "c3/train/trainer.hpp"

namespace c3::python {

py::dict step_report_to_dict(const StepReport& report);  // bind_train.cpp

// TrainerType(model, TrainingOptions): the constructor with one keyword argument per option; the trainer keeps
// the model alive. model_argument names the first argument.
template <typename TrainerType, typename ModelType>
void bind_trainer_constructor(py::class_<TrainerType>& trainer_class, const char* model_argument) {
    const TrainingOptions defaults{};  // the keyword defaults are C++'s
    trainer_class.def(
        py::init([](ModelType& model, double learning_rate, double weight_decay, double beta1, double beta2,
                    double epsilon, size_t warmup_steps, size_t total_steps, double min_lr_ratio,
                    double max_grad_norm, bool data_parallel, size_t sequences_per_pass, size_t data_parallel_shares,
                    const std::string& compute_dtype, double lr_decay_fraction,
                    const std::map<std::string, double>& learning_rate_scales) {
            TrainingOptions options;
            options.adamw = {learning_rate, beta1, beta2, epsilon, weight_decay};
            options.warmup_steps = warmup_steps;
            options.total_steps = total_steps;
            options.min_lr_ratio = min_lr_ratio;
            options.lr_decay_fraction = lr_decay_fraction;
            options.max_grad_norm = max_grad_norm;
            options.data_parallel = data_parallel;
            options.sequences_per_pass = sequences_per_pass;
            options.data_parallel_shares = data_parallel_shares;
            options.compute_dtype = compute_dtype;
            options.learning_rate_scales = learning_rate_scales;
            py::gil_scoped_release release;  // compute_dtype "auto" may time products (or wait for a trial)
            return std::make_unique<TrainerType>(model, options);
        }),
        py::arg(model_argument), py::arg("learning_rate") = defaults.adamw.learning_rate,
        py::arg("weight_decay") = defaults.adamw.weight_decay, py::arg("beta1") = defaults.adamw.beta1,
        py::arg("beta2") = defaults.adamw.beta2, py::arg("epsilon") = defaults.adamw.epsilon,
        py::arg("warmup_steps") = defaults.warmup_steps, py::arg("total_steps") = defaults.total_steps,
        py::arg("min_lr_ratio") = defaults.min_lr_ratio, py::arg("max_grad_norm") = defaults.max_grad_norm,
        py::arg("data_parallel") = defaults.data_parallel, py::arg("sequences_per_pass") = defaults.sequences_per_pass,
        py::arg("data_parallel_shares") = defaults.data_parallel_shares,
        py::arg("compute_dtype") = defaults.compute_dtype, py::arg("lr_decay_fraction") = defaults.lr_decay_fraction,
        py::arg("learning_rate_scales") = defaults.learning_rate_scales, py::keep_alive<1, 2>());
}

// TrainerType has `trainer` (a Trainer<float>) and parameter_groups().
template <typename TrainerType>
void bind_trainer_state(py::class_<TrainerType>& trainer_class) {
    trainer_class
        .def("optimizer_state",
             [](TrainerType& self) {
                 AdamWState<float> state = self.trainer.optimizer.state(self.parameter_groups());
                 py::dict result;
                 result["step"] = state.step;
                 for (auto& [name, values] : state.moments) {
                     const size_t size = values.size();
                     result[py::str(name)] = move_to_array(std::move(values), {size});
                 }
                 return result;
             },
             "The AdamW state as a dict: 'step', and '<group>.first_moment' and '<group>.second_moment' for every "
             "parameter group (copies, flat in the group's layout; before the first step the moments are zeros).")
        .def("load_optimizer_state",
             [](TrainerType& self, const py::dict& state) {
                 C3_CHECK(state.contains("step"), ValueError, "optimizer state has no 'step'");
                 AdamWState<float> loaded;
                 loaded.step = size_t(integer_from_python("step", state["step"], 0, INT64_MAX));
                 for (auto item : state) {
                     const std::string key = string_from_python("optimizer state key", item.first);
                     if (key == "step") continue;
                     auto array = Array<float>::ensure(item.second);
                     C3_CHECK(array, ValueError, key, " must be a float array");
                     expect_shape(array, {0}, key.c_str());
                     loaded.moments[key].assign(array.data(), array.data() + array.size());
                 }
                 self.trainer.optimizer.load_state(self.parameter_groups(), std::move(loaded), "load_optimizer_state");
             },
             py::arg("state"), "Takes a dict of optimizer_state's layout; it is checked whole before anything changes.")
        .def_property_readonly(
            "compute_dtype", [](const TrainerType& self) { return self.trainer.options.compute_dtype; },
            "What the products compute in: 'float32' or 'bfloat16'; a trainer built with 'auto' holds its choice.")
        .def("save_checkpoint",
             [](TrainerType& self, const std::string& path, const io::Metadata& metadata) {
                 py::gil_scoped_release release;
                 save_training_checkpoint(path, self.parameter_groups(), self.trainer.optimizer, metadata);
             },
             py::arg("path"), py::arg("metadata") = io::Metadata{},
             "Parameters, AdamW state and step in one safetensors file ('<group>.parameters', the moments, metadata "
             "c3.step plus `metadata`), written atomically.")
        .def("load_checkpoint",
             [](TrainerType& self, const std::string& path) {
                 py::gil_scoped_release release;
                 std::vector<ParameterGroup<float>> groups = self.parameter_groups();
                 return load_training_checkpoint(path, groups, self.trainer.optimizer);
             },
             py::arg("path"),
             "Restores what save_checkpoint wrote (everything is checked before anything changes); returns the "
             "file's metadata.");
}

}  // namespace c3::python
