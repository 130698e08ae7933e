"""c3.torch: a cascade handed to PyTorch and taken back. Both sides agree on latents, teacher-forced
log-probabilities, greedy text, the loss and its gradients, for C3 and every baseline method; round trips through the
official layout are exact (the method included), in float32 and in bf16. The official layout is also checked against
the independent reference (c3_reference.py)."""
import json
import os

import numpy as np
import pytest
import torch

import c3
import c3.torch as c3_torch
from c3_reference import ReferenceCascade
from conftest import make_hf_model
from test_cascade import OFFICIAL_N, TEXTS, left_padded, official, one_torch_thread, right_padded  # noqa: F401

ENCODER = dict(hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
               max_position_embeddings=64)
DECODER = dict(hidden_size=48, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=1,
               max_position_embeddings=96)
SAMPLES = ["The quick brown fox jumps over the lazy dog.", "short", "Context cascade compression, in PyTorch."]
METHODS = ["c3", "mean_pool", "truncate", "truncate_last", "no_context", "full_context"]
# Every method with the linear projector, and the two that use a projector with the MLP one as well.
METHOD_PROJECTORS = [(method, "linear") for method in METHODS] + [("c3", "mlp"), ("mean_pool", "mlp")]


def new_cascade(projector, method="c3"):
    cascade = c3.Cascade.new(ENCODER, DECODER, n_latents=4, projector=projector, seed=3, method=method)
    # Larger Q and projector than the default init, so that the latents steer the decoder visibly.
    rng = np.random.default_rng(5)
    for name, value in cascade.model.bridge_parameters().items():
        value[:] = (rng.standard_normal(value.shape) * (0.5 if "Q" in name else 0.2)).astype(np.float32)
    return cascade


def pretrained_cascade(tmp_path, projector):
    """Cascade.from_pretrained on two transformers models whose vocabulary lacks the latent tokens (c3 grows it)."""
    encoder = make_hf_model(kind="qwen2", hidden=32, intermediate=48, vocab=259, seed=1, max_positions=64)
    decoder = make_hf_model(kind="llama", heads=4, kv_heads=1, hidden=48, intermediate=64, vocab=259, tied=True,
                            seed=2, max_positions=96)
    encoder.save_pretrained(tmp_path / "encoder")
    decoder.save_pretrained(tmp_path / "decoder")
    return c3.Cascade.from_pretrained(str(tmp_path / "encoder"), str(tmp_path / "decoder"), 4,
                                      tokenizer=c3.byte_tokenizer(), projector=projector, seed=4)


def tensors(cascade, texts):
    context_ids, context_mask = cascade.context_batch(texts)
    answer_ids, answer_mask = cascade.answer_batch(texts)
    return [torch.from_numpy(np.asarray(a, np.int64)) for a in (context_ids, context_mask, answer_ids, answer_mask)]


def max_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual - expected).max()) if actual.size else 0.0


def check_agreement(cascade, module, texts):
    """Latents, teacher-forced log-probabilities, greedy tokens and text, and the loss: c3 against the module."""
    context_ids, context_mask, answer_ids, answer_mask = tensors(cascade, texts)
    latents, latent_mask = cascade.encode(texts)
    with torch.no_grad():
        module_latents, module_latent_mask = module.encode(context_ids, context_mask)
    assert max_error(module_latents.numpy(), latents) < 1e-4
    assert (module_latent_mask is None) == (latent_mask is None)
    if latent_mask is not None:  # full_context: the contexts' padding, masked
        assert not latent_mask.all()
        np.testing.assert_array_equal(module_latent_mask.numpy().astype(bool), latent_mask)
    mask_tensor = None if latent_mask is None else torch.from_numpy(latent_mask.astype(np.int64))
    scores = cascade.score(latents, texts, latent_mask=latent_mask)
    reference_ids, reference_mask = cascade.answer_batch(texts, add_stop=False)
    module_scores = module.score(torch.from_numpy(latents), torch.from_numpy(reference_ids.astype(np.int64)),
                                 torch.from_numpy(reference_mask.astype(np.int64)), latent_mask=mask_tensor)
    valid = scores["valid"]
    assert valid.sum() > 0
    assert max_error(module_scores["log_probability"].numpy()[valid], scores["log_probability"][valid]) < 1e-4
    np.testing.assert_array_equal(module_scores["predicted"].numpy()[valid], scores["predicted"][valid])
    tokens, lengths = cascade.model.reconstruct(latents, max_new_tokens=12, latent_mask=latent_mask)
    module_tokens, module_lengths, step_log_probabilities = module.generate(
        torch.from_numpy(latents), max_new_tokens=12, latent_mask=mask_tensor, return_log_probabilities=True)
    np.testing.assert_array_equal(module_tokens.numpy(), tokens)
    np.testing.assert_array_equal(module_lengths.numpy(), lengths)
    # Each step's log-probability (through the KV cache, positions continuing after a masked block) equals c3's
    # teacher-forced score of the greedy output: finer than the tokens, which a small position error leaves alone.
    generated_mask = (np.arange(tokens.shape[1])[None, :] < lengths[:, None]).astype(np.uint8)
    generated_scores = cascade.model.score(latents, tokens, generated_mask, latent_mask=latent_mask)
    assert generated_scores["valid"].sum() > 0
    assert max_error(step_log_probabilities.numpy()[generated_scores["valid"]],
                     generated_scores["log_probability"][generated_scores["valid"]]) < 1e-4
    assert cascade.decode(module_tokens.numpy(), module_lengths.numpy()) == \
        cascade.reconstruct(latents, 12, latent_mask=latent_mask)
    with torch.no_grad():
        loss = module(context_ids, context_mask, answer_ids, answer_mask).item()
    assert abs(loss - cascade.loss(texts)) < 1e-4
    # Without masks (every token real: the training script's fast path) on the rows of the longest length.
    full = [i for i, row in enumerate(context_mask) if bool(row.all()) and bool(answer_mask[i].all())]
    assert full
    with torch.no_grad():
        unmasked = module(context_ids[full], None, answer_ids[full], None).item()
        masked = module(context_ids[full], context_mask[full], answer_ids[full], answer_mask[full]).item()
    assert abs(unmasked - masked) < 1e-5
    return latents


def check_round_trip(cascade, module, tmp_path):
    """from_torch writes what c3 loads with every parameter equal, and to_torch of that gives the module back."""
    path = str(tmp_path / "from_torch")
    c3_torch.from_torch(module, path)
    assert json.load(open(os.path.join(path, "config.json")))["c3"]["method"] == cascade.method
    reloaded = c3.Cascade.load(path)
    assert reloaded.model.config == cascade.model.config and reloaded.method == cascade.method
    for part in ("encoder", "decoder"):
        expected = getattr(cascade.model, part).parameters()
        actual = getattr(reloaded.model, part).parameters()
        assert sorted(actual) == sorted(expected)
        for name in expected:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=f"{part} {name}")
    for name, value in cascade.model.bridge_parameters().items():
        np.testing.assert_array_equal(reloaded.model.bridge_parameters()[name], value, err_msg=name)
    assert reloaded.identity() == cascade.identity()
    again = c3_torch.to_torch(reloaded)
    before = module.state_dict()
    assert sorted(again.state_dict()) == sorted(before)
    for name, value in again.state_dict().items():
        assert torch.equal(value, before[name]), name
    # The pure-PyTorch loader reads the same directory into the same numbers.
    loaded = c3_torch.load(path)
    assert again.method == loaded.method == cascade.method
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("method,projector", METHOD_PROJECTORS)
def test_new_cascade_agrees_and_round_trips(method, projector, tmp_path):
    cascade = new_cascade(projector, method)
    module = c3_torch.to_torch(cascade)
    assert module.method == method
    names = dict(module.named_parameters())
    assert names["model.Q.weight"].shape == (4, 32)
    if projector == "linear":
        assert names["model.mm_projector.weight"].shape == (48, 32) and "model.mm_projector.bias" in names
    else:
        assert {"model.mm_projector.0.weight", "model.mm_projector.2.weight"} <= set(names)
    check_agreement(cascade, module, SAMPLES)
    check_round_trip(cascade, module, tmp_path)


@pytest.mark.parametrize("projector", ["linear", "mlp"])
def test_pretrained_cascade_agrees_and_round_trips(projector, tmp_path):
    cascade = pretrained_cascade(tmp_path, projector)
    module = c3_torch.to_torch(cascade)
    assert module.decoder.config.tie_word_embeddings
    assert module.decoder.config.model_type == "llama"
    check_agreement(cascade, module, SAMPLES)
    check_round_trip(cascade, module, tmp_path)


def test_official_layout_agrees_with_c3_and_the_reference(official, tmp_path):  # noqa: F811
    directory, tokenizer, reference = official
    cascade = c3.Cascade.load(directory)
    module = c3_torch.to_torch(cascade)
    # The module holds the reference's numbers, under the official names.
    reference_state = {**{f"encoder.{k}": v for k, v in reference.encoder.state_dict().items()},
                       **{f"decoder.{k}": v for k, v in reference.decoder.state_dict().items()},
                       **dict(reference.bridge.named_parameters())}
    state = module.state_dict()
    assert sorted(state) == sorted(reference_state)
    for name, value in state.items():
        assert torch.equal(value, reference_state[name]), name
    latents = check_agreement(cascade, module, TEXTS)
    # Against the independent reference: latents and teacher-forced log-probabilities through the official prompt.
    rows = [tokenizer.encode(text, add_special_tokens=False).ids for text in TEXTS]
    with torch.no_grad():
        expected = reference.compress(*left_padded(rows)).numpy()
        actual = module.compress(*[torch.from_numpy(a) for a in left_padded(rows)]).numpy()
    assert max_error(actual, expected) < 1e-4 and max_error(latents, expected) < 1e-4
    answers, answer_mask = right_padded(rows)
    with torch.no_grad():
        log_softmax = reference.answer_log_softmax(torch.from_numpy(latents), answers, answer_mask).numpy()
    gathered = np.take_along_axis(log_softmax, answers[..., None], axis=-1)[..., 0]
    scores = module.score(torch.from_numpy(latents), torch.from_numpy(answers), torch.from_numpy(answer_mask))
    valid = answer_mask.astype(bool)
    assert max_error(scores["log_probability"].numpy()[valid], gathered[valid]) < 1e-4
    check_round_trip(cascade, module, tmp_path)
    assert open(os.path.join(tmp_path, "from_torch", "tokenizer.json")).read() == \
        open(os.path.join(directory, "tokenizer.json")).read()


def test_official_checkpoint_without_c3_key_needs_cascade_load(official):  # noqa: F811
    directory, _, _ = official
    assert "c3" not in json.load(open(os.path.join(directory, "config.json")))
    with pytest.raises(c3.ConfigError, match="to_torch"):
        c3_torch.load(directory)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_match_c3(method, tmp_path):
    """The module's backward equals c3's loss_and_gradients for every parameter, so training can move between them."""
    cascade = new_cascade("mlp", method)
    module = c3_torch.to_torch(cascade)
    context_ids, context_mask, answer_ids, answer_mask = tensors(cascade, SAMPLES)
    loss = module(context_ids, context_mask, answer_ids, answer_mask)
    loss.backward()
    c3_loss = cascade.model.loss_and_gradients(*[t.numpy() for t in (context_ids, context_mask, answer_ids,
                                                                      answer_mask)])
    assert abs(loss.item() - c3_loss) < 1e-5
    parameters = dict(module.named_parameters())
    expected = {**{f"encoder.{k}": v for k, v in cascade.model.encoder.gradients().items()},
                **{f"decoder.{k}": v for k, v in cascade.model.decoder.gradients().items()},
                **cascade.model.bridge_gradients()}
    checked = 0
    for name, gradient in expected.items():
        parameter = parameters[name]
        actual = parameter.grad.numpy() if parameter.grad is not None else np.zeros(parameter.shape, np.float32)
        scale = max(1.0, float(np.abs(gradient).max()))
        assert max_error(actual, gradient) < 1e-4 * scale, name
        checked += 1
    assert checked == len(expected)
    # The gradient reaches the parts each method uses: the projector (C3, mean pooling), the decoder (all).
    uses_projector = method in ("c3", "mean_pool")
    assert any(np.abs(g).max() > 0 for g in cascade.model.bridge_gradients().values()) == uses_projector
    assert np.abs(cascade.model.decoder.gradients()["model.embed_tokens.weight"]).max() > 0


@pytest.mark.parametrize("method", ["mean_pool", "truncate", "truncate_last"])
def test_methods_that_keep_n_tokens_refuse_shorter_contexts(method):
    """As c3 does: a context shorter than N raises a typed error rather than a block of fewer rows."""
    cascade = new_cascade("linear", method)
    module = c3_torch.to_torch(cascade)
    context_ids, context_mask, answer_ids, answer_mask = tensors(cascade, ["abc", "long enough"])
    with pytest.raises(c3.C3ValueError, match=method):
        module(context_ids, context_mask, answer_ids, answer_mask)
    with pytest.raises(c3.C3ValueError):
        cascade.loss(["abc", "long enough"])


def test_unknown_method_in_a_directory_is_a_config_error(tmp_path):
    path = str(tmp_path / "cascade")
    new_cascade("linear", "truncate").save(path)
    config = json.load(open(os.path.join(path, "config.json")))
    config["c3"]["method"] = "summarise"
    json.dump(config, open(os.path.join(path, "config.json"), "w"))
    with pytest.raises(c3.ConfigError, match="summarise"):
        c3_torch.load(path)


def test_bf16_files_hold_the_rounded_parameters(tmp_path):
    cascade = new_cascade("linear")
    module = c3_torch.to_torch(cascade)
    path = str(tmp_path / "bf16")
    c3_torch.from_torch(module, path, dtype="bf16")
    from safetensors import safe_open
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as handle:
        assert {handle.get_tensor(name).dtype for name in handle.keys()} == {torch.bfloat16}
    reloaded = c3.Cascade.load(path)
    rounded = {name: value.to(torch.bfloat16).float() for name, value in module.state_dict().items()}
    for name, value in reloaded.model.encoder.parameters().items():
        np.testing.assert_array_equal(value, rounded[f"encoder.{name}"].numpy(), err_msg=name)
    for name, value in reloaded.model.bridge_parameters().items():
        np.testing.assert_array_equal(value, rounded[name].numpy(), err_msg=name)
    for name, value in c3_torch.load(path).state_dict().items():
        assert torch.equal(value, rounded[name]), name


def test_freezing_parts_and_the_byte_codec():
    cascade = new_cascade("linear")
    module = c3_torch.to_torch(cascade)
    module.set_trainable("encoder", False)
    module.set_trainable("queries", False)
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("decoder.", "model.mm_projector.")) for name in trainable)
    with pytest.raises(ValueError, match="unknown part"):
        module.set_trainable("everything", False)
    codec = c3_torch.codec_for(module)
    text = "héllo, wörld"
    assert codec.encode(text) == [int(i) for i in cascade.tokenizer.encode(text)]
    ids = np.array(codec.encode(text) + [cascade.stop_token], dtype=np.int32)
    assert codec.decode(ids) == cascade.tokenizer.decode(ids)


@pytest.mark.parametrize("method", ["mean_pool", "truncate", "full_context"])
def test_baselines_freeze_the_parts_they_never_run(method):
    """Every trainable parameter gets a gradient from one step (what DDP needs), and set_trainable keeps unused parts
    frozen: mean pooling uses the encoder's embeddings and the projector; the token methods use the decoder alone."""
    cascade = new_cascade("linear", method)
    module = c3_torch.to_torch(cascade)
    for part in c3_torch.PARTS:
        module.set_trainable(part, True)
    module(*tensors(cascade, SAMPLES)).backward()
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert all(module.get_parameter(name).grad is not None for name in trainable)
    parts = {"decoder" if name.startswith("decoder.") else name for name in trainable}
    expected = {"decoder"} | ({"encoder.model.embed_tokens.weight", "model.mm_projector.weight",
                               "model.mm_projector.bias"} if method == "mean_pool" else set())
    assert parts == expected


def test_the_mirror_knows_every_method_of_c3_or_says_it_does_not_mirror_it():
    # c3.torch keeps its own list so that it runs where the compiled core is missing; C++ is the source.
    assert sorted(c3_torch.METHODS + c3_torch.UNMIRRORED_METHODS) == sorted(c3._core.method_names())
    assert not set(c3_torch.METHODS) & set(c3_torch.UNMIRRORED_METHODS)
