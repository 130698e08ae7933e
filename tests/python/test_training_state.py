"""What the bindings now hand to C++: option checks, the one cascade-settings parser, the AdamW state with one
dict layout for both trainers, and the one training-checkpoint format."""
import math

import numpy as np
import pytest

import c3
from c3 import _core

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2, model_type="llama",
             attention_bias=False, tie_word_embeddings=False, max_position_embeddings=64, vocab_size=40)
OPTIONS = dict(learning_rate=1e-2, weight_decay=0.1, warmup_steps=1, total_steps=8)


def cascade_config():
    return dict(encoder=SHAPE, decoder=SHAPE, num_latents=3, latent_start_token=37, latent_end_token=38,
                latent_pad_token=39, stop_tokens=[2])


def language_batch(seed=0):
    return np.random.default_rng(seed).integers(0, 40, size=(4, 9))


def cascade_batch(seed=0):
    rng = np.random.default_rng(seed)
    contexts, answers = rng.integers(3, 37, size=(4, 7)), rng.integers(3, 37, size=(4, 5))
    answer_mask = np.ones_like(answers)
    answer_mask[1, 4] = 0
    return contexts, None, answers, answer_mask


def language_trainer(seed=1):
    model = c3.Transformer(SHAPE, seed=seed)
    return model, c3.LanguageModelTrainer(model, **OPTIONS)


def cascade_trainer(seed=1):
    model = c3.CascadeModel(cascade_config(), seed=seed)
    return model, c3.CascadeTrainer(model, **OPTIONS)


def all_parameters(model):
    if isinstance(model, c3.CascadeModel):
        parts = (model.encoder.parameters(), model.decoder.parameters(), model.bridge_parameters())
        return {f"{k}.{name}": np.array(v) for k, part in enumerate(parts) for name, v in part.items()}
    return {name: np.array(value) for name, value in model.parameters().items()}


def copy_parameters(source, target):
    if isinstance(source, c3.CascadeModel):
        target.encoder.set_parameters(source.encoder.parameters(), strict=True)
        target.decoder.set_parameters(source.decoder.parameters(), strict=True)
        bridge = target.bridge_parameters()
        for name, value in source.bridge_parameters().items():
            bridge[name][...] = value
    else:
        target.set_parameters(source.parameters(), strict=True)


STEPPERS = {
    "language_model": (language_trainer, lambda trainer, seed: trainer.step(language_batch(seed))),
    "cascade": (cascade_trainer, lambda trainer, seed: trainer.step(*cascade_batch(seed))),
}


@pytest.mark.parametrize("bad", [dict(learning_rate=-1.0), dict(learning_rate=math.inf), dict(beta1=1.0),
                                 dict(beta2=-0.1), dict(epsilon=math.nan), dict(weight_decay=-0.5),
                                 dict(min_lr_ratio=2.0), dict(max_grad_norm=math.nan),
                                 dict(compute_dtype="float16"), dict(lr_decay_fraction=1.5),
                                 dict(lr_decay_fraction=math.nan)])
def test_training_options_are_validated_in_cpp_for_both_trainers(bad):
    with pytest.raises(c3.C3ValueError):
        c3.LanguageModelTrainer(c3.Transformer(SHAPE, seed=0), **bad)
    with pytest.raises(c3.C3ValueError):
        c3.CascadeTrainer(c3.CascadeModel(cascade_config(), seed=0), **bad)


def test_warmup_stable_decay_holds_the_peak_then_falls_in_a_line():
    trainer = c3.LanguageModelTrainer(c3.Transformer(SHAPE, seed=0), learning_rate=1.0, warmup_steps=10,
                                      total_steps=110, min_lr_ratio=0.1, lr_decay_fraction=0.25)
    assert [trainer.learning_rate_at(step) for step in (5, 10, 85)] == [0.5, 1.0, 1.0]
    assert trainer.learning_rate_at(90) == pytest.approx(1.0 - 0.9 * 5 / 25, abs=1e-12)
    assert trainer.learning_rate_at(110) == pytest.approx(0.1, abs=1e-12)
    cosine = c3.LanguageModelTrainer(c3.Transformer(SHAPE, seed=0), learning_rate=1.0, warmup_steps=10,
                                     total_steps=110, min_lr_ratio=0.1)
    assert cosine.learning_rate_at(60) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-12)


@pytest.mark.parametrize("bad,match", [(dict(temperature=0.0), "temperature"), (dict(top_p=0.0), "top_p"),
                                       (dict(top_p=1.5), "top_p"), (dict(pad_token=-1), "pad_token")])
def test_generation_options_are_validated_in_cpp(bad, match):
    model = c3.Transformer(SHAPE, seed=0)
    with pytest.raises(c3.C3ValueError, match=match):
        model.generate(language_batch()[:, :4], max_new_tokens=2, **bad)
    cascade = c3.CascadeModel(cascade_config(), seed=0)
    latents = cascade.compress(cascade_batch()[0])
    with pytest.raises(c3.C3ValueError, match=match):
        cascade.reconstruct(latents, max_new_tokens=2, **bad)


def test_one_cascade_parser_refuses_an_unknown_projector_everywhere(tmp_path):
    directory = str(tmp_path / "cascade")
    c3.CascadeModel(cascade_config(), seed=0).save(directory)
    assert _core.CascadeModel.load(directory, {"projector": "mlp"}).config["projector"] == "linear"  # the file's
    for defaults in ({"projector": "conv"}, {"projector": 3}, {"projecter": "linear"}, {"latent_pad_token": -1}):
        with pytest.raises(c3.ConfigError):
            _core.CascadeModel.load(directory, defaults)
    with pytest.raises(c3.ConfigError, match='"conv"'):
        c3.CascadeModel(dict(cascade_config(), projector="conv"))
    with pytest.raises(c3.ConfigError, match="out of range"):
        c3.CascadeModel(dict(cascade_config(), latent_pad_token=2**70))
    assert c3.CascadeModel(dict(cascade_config(), projector="mlp", latent_pad_token=np.int64(36))).config[
        "latent_pad_token"] == 36


@pytest.mark.parametrize("kind", sorted(STEPPERS))
def test_optimizer_state_round_trip_continues_bit_identically(kind):
    make, step = STEPPERS[kind]
    straight_model, straight = make()
    for seed in range(4):
        step(straight, seed)
    first_model, first = make()
    for seed in range(2):
        step(first, seed)
    state = first.optimizer_state()
    groups = ["model"] if kind == "language_model" else ["encoder", "decoder", "bridge"]
    assert sorted(state) == sorted(["step"] + [f"{g}.{m}" for g in groups for m in ("first_moment", "second_moment")])
    assert state["step"] == 2
    resumed_model, resumed = make(seed=7)
    copy_parameters(first_model, resumed_model)
    resumed.load_optimizer_state(state)
    assert resumed.step_count == 2
    for seed in range(2, 4):
        step(resumed, seed)
    expected, got = all_parameters(straight_model), all_parameters(resumed_model)
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)
    # A bad state is refused whole: nothing changes.
    bad = dict(state, step=9)
    bad[f"{groups[0]}.second_moment"] = -np.ones_like(state[f"{groups[0]}.second_moment"])
    with pytest.raises(c3.C3ValueError, match="second moment"):
        resumed.load_optimizer_state(bad)
    short = dict(state)
    short[f"{groups[-1]}.first_moment"] = state[f"{groups[-1]}.first_moment"][:-1]
    with pytest.raises(c3.ShapeError):
        resumed.load_optimizer_state(short)
    assert resumed.step_count == 4


@pytest.mark.parametrize("kind", sorted(STEPPERS))
def test_one_checkpoint_format_for_both_trainers(tmp_path, kind):
    make, step = STEPPERS[kind]
    straight_model, straight = make()
    for seed in range(3):
        step(straight, seed)
    first_model, first = make()
    step(first, 0)
    path = str(tmp_path / "checkpoint.safetensors")
    c3.save_checkpoint(path, first_model, first, extra={"data": [1, 2]})
    metadata = c3.safetensors_metadata(path)
    assert metadata["c3.step"] == "1"
    tensors = c3.read_safetensors(path)
    groups = ["model"] if kind == "language_model" else ["encoder", "decoder", "bridge"]
    assert sorted(tensors) == sorted(f"{g}.{part}" for g in groups
                                     for part in ("parameters", "first_moment", "second_moment"))
    resumed_model, resumed = make(seed=9)  # everything must come from the file
    assert c3.load_checkpoint(path, resumed_model, resumed) == {"data": [1, 2]}
    for seed in range(1, 3):
        step(resumed, seed)
    expected, got = all_parameters(straight_model), all_parameters(resumed_model)
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)
    # The other trainer's file is refused before anything changes.
    other = "cascade" if kind == "language_model" else "language_model"
    other_model, other_trainer = STEPPERS[other][0]()
    before = all_parameters(other_model)
    with pytest.raises(c3.FormatError, match="missing tensors"):
        c3.load_checkpoint(path, other_model, other_trainer)
    after = all_parameters(other_model)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert other_trainer.step_count == 0
