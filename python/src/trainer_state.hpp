// The optimiser-state and checkpoint methods, one Python signature for both trainers: AdamW::state and
// load_state (train/adamw.hpp), and the training checkpoint (train/checkpoint.hpp).
#pragma once
#include <climits>

#include "bindings.hpp"
#include "config_convert.hpp"
#include "c3/train/checkpoint.hpp"

namespace c3::python {

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
