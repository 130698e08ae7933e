"""Baselines under the same latent budget (mean pooling, truncation, no context, full context) against NumPy, the
decoder's own forward and the PyTorch reference; continuation loss; the weighted reconstruction + continuation
step; saving the method; and the errors-by-surprisal analysis against brute force and a known generating model."""
import json
import math
import os
import warnings

import numpy as np
import pytest
import torch

import c3
from c3 import _core, plots
from c3.eval import continuation, evaluate, surprisal
from c3.cascade import scratch_model_config
from c3_reference import named_gradients

from conftest import two_threads
from test_cascade import END, N, PREFIX, START, SUFFIX, assert_gradients_match, batches
from test_cascade import build as build_cascade

METHODS = ["c3", "mean_pool", "truncate", "truncate_last", "no_context", "full_context"]


def build(tmp_path, method, seed=0):
    """(c3 CascadeModel, reference) of one method: a Qwen2 encoder (width 32) and a Llama decoder (width 48)."""
    return build_cascade(tmp_path, seed=seed, method=method)


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# ---- the methods' latent blocks -------------------------------------------------------------------------------
def test_mean_pooling_matches_numpy(tmp_path):
    model, _ = build(tmp_path, "mean_pool")
    contexts, context_mask, _, _ = batches(seed=1)
    assert len(set(context_mask.sum(axis=1))) > 1
    latents = model.compress(contexts, context_mask)
    embed = model.encoder.parameters()["model.embed_tokens.weight"].astype(np.float64)
    bridge = model.bridge_parameters()
    weight, bias = bridge["model.mm_projector.weight"].astype(np.float64), bridge["model.mm_projector.bias"]
    for b in range(len(contexts)):
        real = contexts[b][context_mask[b] == 1]
        L = len(real)
        pooled = np.stack([embed[real[i * L // N:(i + 1) * L // N]].mean(axis=0) for i in range(N)])
        np.testing.assert_allclose(latents[b], pooled @ weight.T + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["truncate", "truncate_last", "no_context", "full_context"])
def test_token_methods_match_the_decoders_own_forward(tmp_path, method):
    """The cascade's teacher-forced scores equal the c3 decoder run on ids: prompt, <img>, the kept context tokens
    (first N, last N, none, all), </img>, suffix, answer."""
    model, _ = build(tmp_path, method)
    contexts, context_mask, answers, answer_mask = batches(seed=2)
    latents, latent_mask = model.compress_with_mask(contexts, context_mask)
    scores = model.score(latents, answers, answer_mask, latent_mask=latent_mask)
    for b in range(len(contexts)):
        real = [int(t) for t in contexts[b][context_mask[b] == 1]]
        kept = {"truncate": real[:N], "truncate_last": real[-N:], "no_context": [], "full_context": real}[method]
        answer = [int(t) for t in answers[b][answer_mask[b] == 1]]
        ids = np.array([PREFIX + [START] + kept + [END] + SUFFIX + answer], np.int32)
        _, logits = model.decoder.forward(ids=ids)
        expected = log_softmax(logits[0])
        start = len(PREFIX) + len(kept) + 2 + len(SUFFIX)
        for t, token in enumerate(answer):
            assert abs(scores["log_probability"][b, t] - expected[start + t - 1, token]) < 1e-4


def test_truncation_needs_n_tokens_and_unknown_methods_are_typed_errors(tmp_path):
    model, _ = build(tmp_path, "truncate")
    short = np.array([[0, 0, 0, 0, 0, 0, 1, 2, 3]], np.int32)
    mask = (short != 0).astype(np.uint8)
    with pytest.raises(c3.C3ValueError, match="N = 4"):
        model.compress(short, mask)
    config = model.config
    config["method"] = "gist"
    with pytest.raises(c3.ConfigError, match="unknown compression method 'gist'"):
        c3._core.CascadeModel(config)


# ---- continuation loss ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_continuation_loss_matches_reference(tmp_path, method):
    model, reference = build(tmp_path, method)
    contexts, context_mask, follow, follow_mask = batches(seed=3)
    ours = continuation.continuation_nats(model, contexts, context_mask, follow, follow_mask)
    with torch.no_grad():
        expected = reference.continuation_nats(method, contexts, context_mask, follow, follow_mask)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_bits_per_byte_counts_the_continuation_bytes():
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = scratch_model_config(shape, 64, 4)
    cascade = c3.Cascade.new(config, config, 4, method="truncate")
    contexts, follow = ["some context here", "another context"], ["é and more", "x"]
    result = continuation.bits_per_byte(cascade, contexts, follow, batch_size=1)
    assert result["bytes"] == len("é and more".encode()) + 1 and result["tokens"] == result["bytes"]
    ids, mask = cascade.context_batch(contexts)
    answers, answer_mask = cascade.answer_batch(follow, add_stop=False)
    nats = continuation.continuation_nats(cascade.model, ids, mask, answers, answer_mask).sum()
    assert abs(result["bits_per_byte"] - nats / math.log(2) / result["bytes"]) < 1e-9


# ---- training the baselines -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mean_pool", "truncate", "full_context"])
def test_baseline_gradients_match_autograd(tmp_path, method):
    model, reference = build(tmp_path, method)
    contexts, context_mask, answers, answer_mask = batches(seed=4)
    expected = reference.method_loss(method, contexts, context_mask, answers, answer_mask)
    expected.backward()
    loss = model.loss_and_gradients(contexts, context_mask, answers, answer_mask)
    assert abs(loss - expected.item()) < 1e-5
    parts = {"encoder": (model.encoder.gradients(), named_gradients(reference.encoder)),
             "decoder": (model.decoder.gradients(), named_gradients(reference.decoder)),
             "bridge": (model.bridge_gradients(), named_gradients(reference.bridge))}
    for part, (ours, theirs) in parts.items():
        for name, gradient in ours.items():
            norm = np.linalg.norm(theirs[name])
            if norm == 0:
                assert not gradient.any(), f"{part} {name}: autograd gives zero, c3 does not"
            else:
                assert np.linalg.norm(gradient - theirs[name]) / norm < 1e-4, f"{part} {name}"
    if method == "mean_pool":  # only the embeddings and the projector learn
        assert model.encoder.gradients()["model.embed_tokens.weight"].any()
        assert not model.bridge_gradients()["model.Q.weight"].any()


def test_weighted_step_mixes_reconstruction_and_continuation(tmp_path):
    model, _ = build(tmp_path, "c3")
    contexts, context_mask, answers, answer_mask = batches(seed=5)
    follow, follow_mask = answers[:, :4], answer_mask[:, :4]
    reconstruction = model.loss(contexts, context_mask, answers, answer_mask)
    follow_loss = model.loss(contexts, context_mask, follow, follow_mask)
    trainer = c3.CascadeTrainer(model, learning_rate=1e-2)
    report = trainer.step_weighted([(contexts, context_mask, answers, answer_mask),
                                    (contexts, context_mask, follow, follow_mask)], [0.75, 0.25])
    assert abs(report["loss"] - (0.75 * reconstruction + 0.25 * follow_loss)) < 1e-5
    # Weight 1 on one group is the plain step, bit for bit.
    one, _ = build(tmp_path / "one", "c3")
    two, _ = build(tmp_path / "two", "c3")
    c3.CascadeTrainer(one, learning_rate=1e-2).step(contexts, context_mask, answers, answer_mask)
    c3.CascadeTrainer(two, learning_rate=1e-2).step_weighted(
        [(contexts, context_mask, answers, answer_mask), (contexts, context_mask, follow, follow_mask)], [1.0, 0.0])
    for name, value in one.decoder.parameters().items():
        np.testing.assert_array_equal(value, two.decoder.parameters()[name])


# ---- data-parallel training: each thread a share of the sequences, its own gradient buffers ------------------
def every_parameter(model):
    values = {f"encoder.{k}": v.copy() for k, v in model.encoder.parameters().items()}
    values.update({f"decoder.{k}": v.copy() for k, v in model.decoder.parameters().items()})
    values.update({f"bridge.{k}": v.copy() for k, v in model.bridge_parameters().items()})
    return values


@pytest.mark.parametrize("method", METHODS)
def test_data_parallel_step_leaves_autograds_gradients(tmp_path, method):
    """A data-parallel step at learning rate 0 without clipping keeps its summed gradients in the buffers: they
    must be autograd's for the whole batch (two micro-batches of two sequences, one per thread)."""
    model, reference = build(tmp_path, method)
    contexts, context_mask, answers, answer_mask = batches(seed=9, batch=4)
    expected = reference.method_loss(method, contexts, context_mask, answers, answer_mask)
    expected.backward()
    trainer = c3.CascadeTrainer(model, learning_rate=0.0, max_grad_norm=0.0, data_parallel=True)
    with two_threads():
        report = trainer.step(contexts, context_mask, answers, answer_mask, micro_batches=2)
    assert report["data_parallel_shares"] == 2
    assert abs(report["loss"] - expected.item()) < 1e-5
    assert assert_gradients_match(model, reference) > 0


# An update lr * m / (sqrt(v) + epsilon) moves at most lr / epsilon (here 100) times a gradient's rounding, while
# gradients well above epsilon are still normalised by Adam. On these tiny cascades the largest serial/data-parallel
# difference after three steps is about 2e-6 at this epsilon and about 2e-5 (one element) at 1e-8.
ADAM_EPSILON_ABOVE_ROUNDING = 1e-4


@pytest.mark.parametrize("method,projector,frozen", [("c3", "linear", ()), ("c3", "mlp", ("encoder", "decoder")),
                                                     ("mean_pool", "linear", ()), ("truncate", "linear", ()),
                                                     ("full_context", "linear", ())])
def test_data_parallel_steps_repeat_bit_for_bit_and_match_serial(tmp_path, method, projector, frozen):
    """Three AdamW steps (with micro-batches on the second): two data-parallel runs give the same bits; a serial
    run (each product split across the threads instead) agrees to float summation order. With Adam's usual epsilon
    (1e-8), m / sqrt(v) turns a rounding-level change in a near-zero gradient into a whole learning-rate step; an
    epsilon above the gradients' rounding (ADAM_EPSILON_ABOVE_ROUNDING) keeps the update a smooth function of the
    gradient, so the summation order can only show as rounding."""
    contexts, context_mask, answers, answer_mask = batches(seed=11, batch=4)
    runs = {}
    for run, data_parallel in (("first", True), ("second", True), ("serial", False)):
        model, _ = build_cascade(tmp_path / run, projector=projector, method=method)
        for part in frozen:
            model.set_trainable(part, False)
        before = every_parameter(model)
        trainer = c3.CascadeTrainer(model, learning_rate=1e-2, weight_decay=0.1, max_grad_norm=0.5,
                                    epsilon=ADAM_EPSILON_ABOVE_ROUNDING, data_parallel=data_parallel)
        with two_threads():
            reports = [trainer.step(contexts, context_mask, answers, answer_mask, micro_batches=1 + step % 2)
                       for step in range(3)]
        assert [r["data_parallel_shares"] for r in reports] == [2 if data_parallel else 1] * 3
        runs[run] = ([(r["loss"], r["gradient_norm"]) for r in reports], every_parameter(model), before)
    first, second, serial = runs["first"], runs["second"], runs["serial"]
    assert first[0] == second[0]
    for name, value in first[1].items():
        assert value.tobytes() == second[1][name].tobytes(), name
    np.testing.assert_allclose(np.array(first[0]), np.array(serial[0]), rtol=1e-5, atol=1e-6)
    for name, value in first[1].items():
        np.testing.assert_allclose(value, serial[1][name], rtol=0, atol=2e-5, err_msg=name)
        if name.split(".")[0] in frozen:
            np.testing.assert_array_equal(value, first[2][name], err_msg=name)
    assert any((value != first[2][name]).any() for name, value in first[1].items())


def test_data_parallel_weighted_step_matches_serial(tmp_path):
    """Reconstruction and continuation groups in one weighted step, data parallel and serial (epsilon as above)."""
    contexts, context_mask, answers, answer_mask = batches(seed=12, batch=4)
    groups = [(contexts, context_mask, answers, answer_mask), (contexts, context_mask, answers[:, :4],
                                                               answer_mask[:, :4])]
    results = []
    for data_parallel in (True, False):
        model, _ = build(tmp_path / str(data_parallel), "c3")
        trainer = c3.CascadeTrainer(model, learning_rate=1e-2, epsilon=ADAM_EPSILON_ABOVE_ROUNDING,
                                    data_parallel=data_parallel)
        with two_threads():
            reports = [trainer.step_weighted(groups, [0.75, 0.25]) for _ in range(2)]
        assert [r["data_parallel_shares"] for r in reports] == [2 if data_parallel else 1] * 2
        losses = [r["loss"] for r in reports]
        results.append((losses, every_parameter(model)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for name, value in results[0][1].items():
        np.testing.assert_allclose(value, results[1][1][name], rtol=0, atol=2e-5, err_msg=name)


def test_method_survives_save_and_load_and_a_bad_one_is_refused(tmp_path):
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = scratch_model_config(shape, 64, 4)
    cascade = c3.Cascade.new(config, config, 4, method="mean_pool", seed=1)
    cascade.save(str(tmp_path / "pool"))
    loaded = c3.Cascade.load(str(tmp_path / "pool"))
    assert loaded.method == "mean_pool"
    np.testing.assert_array_equal(loaded.compress(["a text of some length"]), cascade.compress(["a text of some length"]))
    path = tmp_path / "pool" / "config.json"
    data = json.loads(path.read_text())
    data["c3"]["method"] = "vision"
    path.write_text(json.dumps(data))
    with pytest.raises(c3.ConfigError, match="unknown compression method 'vision'"):
        c3.Cascade.load(str(tmp_path / "pool"))


# ---- errors by position and surprisal -------------------------------------------------------------------------
def test_error_table_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=30)
    errors = [rng.integers(0, 2, size=n) for n in lengths]
    bits = [rng.exponential(3.0, size=n) for n in lengths]
    bits[0][0] = np.nan  # left out
    table = surprisal.error_table(errors, bits, position_bins=7, surprisal_bins=4)
    edges = table["surprisal_edges"]
    count, wrong = np.zeros((7, 4), int), np.zeros((7, 4), int)
    for error, values in zip(errors, bits):
        for i, (e, s) in enumerate(zip(error, values)):
            if np.isnan(s):
                continue
            p = i * 7 // len(error)
            j = next((k for k in range(4) if edges[k] <= s < edges[k + 1]), 3 if s >= edges[4] else 0)
            count[p, j] += 1
            wrong[p, j] += e
    np.testing.assert_array_equal(table["count"], count)
    np.testing.assert_array_equal(table["errors"], wrong)
    assert count.sum() == sum(lengths) - 1
    np.testing.assert_allclose(table["rate"][count > 0], wrong[count > 0] / count[count > 0])


def test_logistic_regression_recovers_a_known_model():
    rng = np.random.default_rng(1)
    n = 20000
    position, bits = rng.random(n), rng.exponential(2.0, n)
    truth = np.array([-2.0, 1.5, 0.4])
    probability = 1 / (1 + np.exp(-(truth[0] + truth[1] * position + truth[2] * bits)))
    outcome = (rng.random(n) < probability).astype(float)
    fit = surprisal.logistic_regression(np.stack([position, bits], 1), outcome, ["position", "surprisal"])
    assert fit["converged"]
    assert np.all(np.abs(fit["coefficients"] - truth) < 4 * fit["stderr"])
    assert np.all(fit["stderr"] < 0.1)
    try:
        import statsmodels.api as sm
    except ImportError:
        return
    reference = sm.Logit(outcome, sm.add_constant(np.stack([position, bits], 1))).fit(disp=0)
    np.testing.assert_allclose(fit["coefficients"], reference.params, rtol=1e-6)
    np.testing.assert_allclose(fit["stderr"], reference.bse, rtol=1e-5)


def test_logistic_regression_on_a_separable_outcome_warns_of_nothing_and_says_it_did_not_converge():
    """Errors only in the second half: the likelihood has no maximum and the coefficients run off; the fit must
    report that rather than overflow."""
    position = np.linspace(0.0, 1.0, 200)
    outcome = (position > 0.5).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = surprisal.logistic_regression(position, outcome, ["position"], iterations=60)
    assert not fit["converged"]
    assert fit["coefficients"][1] > 50


def test_a_constant_or_collinear_feature_gives_unidentified_coefficients_not_a_crash():
    rng = np.random.default_rng(0)
    errors = [rng.integers(0, 2, 30), rng.integers(0, 2, 20)]
    constant = [np.full(30, 2.5), np.full(20, 2.5)]  # every token equally surprising
    fit = surprisal.position_surprisal_regression(errors, constant)
    assert np.isnan(fit["coefficients"]).all() and not fit["converged"] and fit["tokens"] == 50
    position = np.linspace(0, 1, 40)
    collinear = surprisal.logistic_regression(np.stack([position, 2 * position], axis=1), rng.integers(0, 2, 40))
    assert np.isnan(collinear["stderr"]).all() and collinear["names"] == ["intercept", "x1", "x2"]
    # An identified fit is unchanged by the check.
    fit = surprisal.position_surprisal_regression(errors, [rng.uniform(0, 8, 30), rng.uniform(0, 8, 20)])
    assert np.isfinite(fit["coefficients"]).all()


def test_prior_surprisal_is_the_no_context_decoder():
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = scratch_model_config(shape, 64, 4)
    cascade = c3.Cascade.new(config, config, 4, method="no_context", seed=2, prompt="ab{latents}c")
    texts = ["first text", "the second, longer text"]
    rows = cascade.tokenize(texts)
    bits = surprisal.prior_surprisal(cascade, rows)
    latents = cascade.compress(texts)
    scores = cascade.score(latents, texts)
    for k, row in enumerate(rows):
        np.testing.assert_allclose(bits[k], -scores["log_probability"][k, :len(row)] / math.log(2), rtol=1e-4)


def test_accuracy_curves_separate_propagation_from_loss():
    reference = np.arange(10)
    inserted = np.concatenate([[99], reference])  # one slip at the start
    strict = surprisal.strict_correct(reference, inserted)
    aligned = surprisal.aligned_correct(reference, inserted)
    assert strict.sum() == 0 and aligned.sum() == 10
    curves = surprisal.accuracy_curves([reference], [inserted], [np.ones(10)], bins=5)
    assert np.all(curves["strict_greedy"]["accuracy"] == 0) and np.all(curves["aligned_greedy"]["accuracy"] == 1)
    figure = plots.plot_accuracy_curves(curves)
    assert figure.axes
    table = surprisal.error_table([1 - strict], [np.linspace(0, 5, 10)], position_bins=5, surprisal_bins=2)
    assert plots.plot_error_heatmap(table).axes


def test_full_context_masks_the_padding_of_shorter_texts(monkeypatch):
    """Texts of unequal length score together as they do alone (encode's mask hides the padding; without it they
    would not), and c3 eval's pipeline passes the mask on."""
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = dict(scratch_model_config(shape, 64, 4), initializer_range=0.5)
    cascade = c3.Cascade.new(config, config, 4, method="full_context", seed=3)
    texts = ["a short one", "a much longer text than the first"]
    latents, mask = cascade.encode(texts)
    together = cascade.score(latents, texts, latent_mask=mask)["log_probability"]
    unmasked = cascade.score(latents, texts)["log_probability"]
    short = cascade.score(*cascade.encode(texts[:1])[:1], texts[:1])["log_probability"][0]
    np.testing.assert_allclose(together[0, :len(texts[0])], short, atol=1e-5)
    assert np.abs(unmasked[0, :len(texts[0])] - short).max() > 1e-3
    seen = []
    score = c3.Cascade.score
    monkeypatch.setattr(c3.Cascade, "score", lambda self, latents, rows, latent_mask=None: seen.append(
        latent_mask) or score(self, latents, rows, latent_mask=latent_mask))
    evaluate(cascade, texts, max_new_tokens=4)
    assert len(seen) == 1 and seen[0] is not None and not seen[0].all()


def test_cli_trains_and_saves_a_baseline(tmp_path, capsys):
    from c3 import cli

    output = str(tmp_path / "pool")
    assert cli.main(["train", "--output", output, "--method", "mean_pool", "--latents", "4", "--ratio", "2",
                     "--steps", "2", "--batch", "2", "--hidden-size", "16", "--layers", "1", "--quiet"]) == 0
    assert c3.Cascade.load(output).method == "mean_pool"
    capsys.readouterr()
    assert cli.main(["train", "--output", str(tmp_path / "other"), "--method", "truncate", "--encoder", output,
                     "--decoder", output]) == 2
    assert "--method other than c3 trains from scratch" in capsys.readouterr().err
