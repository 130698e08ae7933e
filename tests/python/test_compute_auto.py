"""compute "auto": bf16 products only where this CPU measures them faster (ops/compute_choice.hpp). The oracle of a
model or trainer on "auto" is the same model or trainer with the mode the trial chose, set by hand: their outputs
must agree bit for bit. What the trial chooses is checked against its own timings, and a build without bf16
dot-product instructions must choose float32 without measuring. Runs at every wheel level (scripts/test_wheel.sh)."""
import numpy as np
import pytest

import c3

CONFIG = dict(vocab_size=64, hidden_size=32, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2,
              max_position_embeddings=64)
HAS_BF16_DOT = "AVX512BF16" in c3.build_info()["instruction_sets"]


def bf16_model(compute):
    model = c3.Transformer(CONFIG, seed=3)
    model.store_as_bf16()
    model.compute = compute
    return model


@pytest.mark.parametrize("baseline", ["float32", "float32_transposed", "bf16_widened"])
def test_the_trial_chooses_by_its_own_timings_and_is_measured_once(baseline):
    trial = c3.compute_trial(64, 32, 96, baseline)
    assert (trial["rows"], trial["in"], trial["out"]) == (64, 32, 96)
    if HAS_BF16_DOT:
        assert trial["float_seconds"] > 0 and trial["bf16_seconds"] > 0
        assert (trial["compute"] == "bf16") == (trial["bf16_seconds"] < 0.95 * trial["float_seconds"])
        assert trial["reason"].endswith(trial["compute"])
    else:
        assert trial == dict(rows=64, **{"in": 32}, out=96, compute="float32", float_seconds=0.0,
                             bf16_seconds=0.0, reason=trial["reason"])
        assert "no bf16 dot-product instructions" in trial["reason"]
    # The same shape is not measured again: the same timings come back, so every model of it chooses alike.
    assert c3.compute_trial(64, 32, 96, baseline) == trial


@pytest.mark.skipif(not HAS_BF16_DOT, reason="nothing is measured without bf16 dot products")
def test_the_trial_is_measured_per_thread_count():
    threads = c3.num_threads()
    try:
        c3.set_num_threads(1)
        one = c3.compute_trial(128, 48, 112)
        c3.set_num_threads(2)
        two = c3.compute_trial(128, 48, 112)
    finally:
        c3.set_num_threads(threads)
    assert (one["float_seconds"], one["bf16_seconds"]) != (two["float_seconds"], two["bf16_seconds"])


def test_a_bf16_model_on_auto_computes_what_the_trial_chose_bit_for_bit():
    chosen = c3.compute_trial(256, CONFIG["hidden_size"], CONFIG["intermediate_size"], "bf16_widened")["compute"]
    automatic = bf16_model("auto")
    assert automatic.compute == chosen
    ids = np.random.default_rng(0).integers(0, 64, size=(2, 24)).astype(np.int32)
    np.testing.assert_array_equal(automatic.forward(ids)[1], bf16_model(chosen).forward(ids)[1])
    # Both modes are real and differ on a prompt, so the comparison above could fail.
    assert not np.array_equal(bf16_model("bf16").forward(ids)[1], bf16_model("float32").forward(ids)[1])


def test_a_float32_model_on_auto_stays_float32_after_taking_bf16_storage():
    """auto on float storage chooses float32 (bf16 compute needs bf16 weights): storing bf16 afterwards does not turn
    bf16 compute on by itself."""
    model = c3.Transformer(CONFIG, seed=3)
    model.compute = "auto"
    assert model.compute == "float32"
    model.store_as_bf16()
    assert model.compute == "float32"
    model.compute = "bf16"
    assert model.compute == "bf16"  # the flag is readable once the storage is bf16


def test_a_trainer_on_auto_trains_as_the_mode_it_chose():
    chosen = {"bf16": "bfloat16", "float32": "float32"}[
        c3.compute_trial(256, CONFIG["hidden_size"], CONFIG["intermediate_size"], "float32_transposed")["compute"]]
    ids = np.random.default_rng(1).integers(0, 64, size=(4, 16)).astype(np.int32)
    parameters = {}
    for dtype in ("auto", chosen):
        model = c3.Transformer(CONFIG, seed=5)
        trainer = c3.LanguageModelTrainer(model, learning_rate=1e-2, compute_dtype=dtype)
        assert trainer.compute_dtype == chosen
        for _ in range(2):
            trainer.step(ids)
        parameters[dtype] = model.parameters()
    assert parameters["auto"].keys() == parameters[chosen].keys()
    for name, values in parameters["auto"].items():
        np.testing.assert_array_equal(values, parameters[chosen][name], err_msg=name)


def test_a_cascade_trainer_on_auto_trains_as_the_mode_it_chose_at_the_decoder_shape():
    shapes = [dict(CONFIG, hidden_size=hidden, intermediate_size=intermediate)
              for hidden, intermediate in ((32, 64), (64, 160))]
    for shape in shapes:
        del shape["vocab_size"]
    chosen = {"bf16": "bfloat16", "float32": "float32"}[
        c3.compute_trial(256, 64, 160, "float32_transposed")["compute"]]
    contexts = np.random.default_rng(2).integers(0, 200, size=(4, 16)).astype(np.int32)
    parameters = {}
    for dtype in ("auto", chosen):
        cascade = c3.Cascade.new(shapes[0], shapes[1], 4, seed=0)
        trainer = cascade.trainer(learning_rate=1e-2, compute_dtype=dtype)
        assert trainer.compute_dtype == chosen
        for _ in range(2):
            cascade.train_step(trainer, contexts)
        parameters[dtype] = cascade.model.identity()  # SHA-256 over the configuration and every parameter
    assert parameters["auto"] == parameters[chosen]


@pytest.mark.parametrize("setting", ["fast", "bfloat16", ""])
def test_unknown_compute_modes_are_value_errors(setting):
    model = c3.Transformer(CONFIG, seed=3)
    with pytest.raises(ValueError, match="compute must be"):
        model.compute = setting
    assert model.compute == "float32"


def test_unknown_compute_dtypes_are_value_errors():
    with pytest.raises(ValueError, match="compute_dtype must be"):
        c3.LanguageModelTrainer(c3.Transformer(CONFIG, seed=3), compute_dtype="bf16")


@pytest.mark.parametrize("sizes", [(0, 8, 8), (4, 8, 8), (8, 0, 8), (8, 8, 0), (1 << 20, 1 << 16, 8),
                                   (8, 1 << 14, 1 << 13), (1 << 40, 1, 1 << 40)])
def test_impossible_trial_sizes_are_value_errors(sizes):
    with pytest.raises(ValueError, match="compute_trial"):
        c3.compute_trial(*sizes)


def test_an_unknown_trial_baseline_is_a_value_error():
    with pytest.raises(ValueError, match="baseline must be"):
        c3.compute_trial(8, 8, 8, "float16")
