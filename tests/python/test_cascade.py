"""The cascade against a PyTorch reference of C3 (tests/python/c3_reference.py) on tiny transformers models:
latents, teacher-forced scores, greedy reconstruction with stop tokens and the n-gram rule, the loss and every
gradient against autograd, AdamW steps against torch, the official checkpoint layout in miniature, latents as
data, and hostile input."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

import c3
from c3 import _core
from c3_reference import ReferenceCascade, make_cascade_pair, named_gradients
from conftest import make_hf_model, padded_batch, two_threads

transformers = pytest.importorskip("transformers")

# A small shared id space: ordinary tokens below 56, then the cascade's own.
VOCAB, TEXT_VOCAB = 64, 56
START, END, PAD, STOP = 58, 59, 60, 61
PREFIX, SUFFIX = [3, 4, 5], [6, 7]
N = 4


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: torch's second OpenMP thread only spin-waits (and on a busy 2-core machine it slows every
    forward, c3's included, by orders of magnitude)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cascade_config(projector="linear", method="c3"):
    return dict(num_latents=N, projector=projector, latent_start_token=START, latent_end_token=END,
                latent_pad_token=PAD, prompt_prefix=PREFIX, prompt_suffix=SUFFIX, stop_tokens=[STOP], method=method)


def build(tmp_path, projector="linear", tied_decoder=False, seed=0, method="c3"):
    """(c3 CascadeModel, reference) with different encoder and decoder widths (32 vs 48), so that a transposed
    projector or a swapped hidden size shows; the encoder is a Qwen2 (QKV bias), the decoder a Llama (GQA 4:1)."""
    encoder = make_hf_model(kind="qwen2", heads=4, kv_heads=2, hidden=32, intermediate=48, vocab=VOCAB,
                            seed=seed + 1, max_positions=64)
    decoder = make_hf_model(kind="llama", heads=4, kv_heads=1, hidden=48, intermediate=64, vocab=VOCAB,
                            tied=tied_decoder, seed=seed + 2, max_positions=64)
    model, reference = make_cascade_pair(tmp_path, encoder, decoder, cascade_config(projector, method), seed=seed + 3)
    # Larger Q and projector than the default init, so that the latents steer the decoder visibly.
    rng = np.random.default_rng(seed)
    for name, value in model.bridge_parameters().items():
        value[:] = (rng.standard_normal(value.shape) * (0.5 if "Q" in name else 0.2)).astype(np.float32)
    reference.load_bridge(model.bridge_parameters())
    return model, reference


def batches(seed=0, batch=3, context_length=9, answer_length=7):
    rng = np.random.default_rng(seed)
    contexts, context_mask = padded_batch(rng, batch, context_length, TEXT_VOCAB, side="left")
    answers, answer_mask = padded_batch(rng, batch, answer_length, TEXT_VOCAB, side="right")
    return contexts, context_mask, answers, answer_mask


def max_error(actual, expected):
    return float(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)).max())


@pytest.fixture(params=["linear", "mlp"])
def pair(request, tmp_path):
    return build(tmp_path, projector=request.param)


# ---- forward, scores, generation ------------------------------------------------------------------------------
def test_latents_match_reference_on_unequal_contexts(pair):
    model, reference = pair
    contexts, context_mask, _, _ = batches()
    assert len(set(context_mask.sum(axis=1))) > 1  # unequal lengths, left-padded
    latents = model.compress(contexts, context_mask)
    assert latents.shape == (3, N, 48) and latents.dtype == np.float32
    with torch.no_grad():
        expected = reference.compress(contexts, context_mask).numpy()
    assert max_error(latents, expected) < 1e-4
    # Left padding is invisible: each row alone gives the same latents.
    for row in range(3):
        real = contexts[row][context_mask[row] == 1][None]
        assert max_error(model.compress(real), latents[row:row + 1]) < 1e-4


def test_scores_match_reference_log_softmax(pair):
    model, reference = pair
    contexts, context_mask, answers, answer_mask = batches(seed=1)
    latents = model.compress(contexts, context_mask)
    scores = model.score(latents, answers, answer_mask)
    with torch.no_grad():
        log_softmax = reference.answer_log_softmax(torch.from_numpy(latents), answers, answer_mask).numpy()
    valid = answer_mask.astype(bool)
    np.testing.assert_array_equal(scores["valid"], valid)
    expected = np.take_along_axis(log_softmax, answers[..., None], axis=-1)[..., 0]
    assert max_error(scores["log_probability"][valid], expected[valid]) < 1e-4
    np.testing.assert_array_equal(scores["predicted"][valid], log_softmax.argmax(-1)[valid])
    ranks = (log_softmax > expected[..., None]).sum(-1)
    np.testing.assert_array_equal(scores["rank"][valid], ranks[valid])
    # The padding carries no scores.
    assert (scores["log_probability"][~valid] == 0).all() and (scores["predicted"][~valid] == -1).all()


def test_greedy_reconstruction_matches_reference_and_teacher_forcing(pair):
    model, reference = pair
    contexts, context_mask, _, _ = batches(seed=2)
    latents = model.compress(contexts, context_mask)
    tokens, lengths = model.reconstruct(latents, max_new_tokens=12)
    expected, expected_lengths = reference.greedy(torch.from_numpy(latents), 12, stop_tokens=[STOP])
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_array_equal(lengths, expected_lengths)
    # Teacher forcing on its own greedy output predicts exactly that output.
    mask = (np.arange(tokens.shape[1])[None] < lengths[:, None]).astype(np.int64)
    scores = model.score(latents, tokens, mask)
    np.testing.assert_array_equal(scores["predicted"][mask == 1], tokens[mask == 1])
    assert (scores["rank"][mask == 1] == 0).all()


def test_stop_tokens_end_rows_like_the_reference(tmp_path):
    model, reference = build(tmp_path)
    contexts, context_mask, _, _ = batches(seed=3)
    latents = model.compress(contexts, context_mask)
    free, _ = model.reconstruct(latents, max_new_tokens=10, stop_tokens=[VOCAB + 100])
    assert free.shape == (3, 10)
    stop = int(free[0, 4])
    first = list(free[0]).index(stop)
    tokens, lengths = model.reconstruct(latents, max_new_tokens=10, stop_tokens=[stop], pad_token=1)
    assert lengths[0] == first + 1 and tokens[0, first] == stop
    assert (tokens[0, first + 1:] == 1).all()
    expected, expected_lengths = reference.greedy(torch.from_numpy(latents), 10, stop_tokens=[stop], pad_token=1)
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_array_equal(lengths, expected_lengths)


def test_no_repeat_ngram_bans_what_transformers_bans():
    rng = np.random.default_rng(4)
    checked = banned_any = 0
    for _ in range(300):
        vocab = int(rng.integers(2, 7))
        n = int(rng.integers(1, 5))
        history = [int(t) for t in rng.integers(0, vocab, size=int(rng.integers(0, 25)))]
        ours = sorted(_core.banned_ngram_tokens(history, vocab, n))
        scores = torch.zeros(1, vocab)
        processed = transformers.NoRepeatNGramLogitsProcessor(n)(torch.tensor([history], dtype=torch.long), scores)
        expected = sorted(int(v) for v in torch.nonzero(torch.isinf(processed[0])).flatten())
        assert ours == expected, (history, n)
        checked += 1
        banned_any += bool(expected)
    assert banned_any > 100


def test_no_repeat_ngram_generation_matches_reference(tmp_path):
    model, reference = build(tmp_path)
    contexts, context_mask, _, _ = batches(seed=5)
    latents = model.compress(contexts, context_mask)
    plain, _ = reference.greedy(torch.from_numpy(latents), 24, stop_tokens=[STOP])
    for n in (1, 2, 3):
        tokens, lengths = model.reconstruct(latents, max_new_tokens=24, no_repeat_ngram_size=n)
        expected, expected_lengths = reference.greedy(torch.from_numpy(latents), 24, stop_tokens=[STOP],
                                                      no_repeat_ngram_size=n)
        np.testing.assert_array_equal(tokens, expected)
        np.testing.assert_array_equal(lengths, expected_lengths)
        if n <= 2:
            assert (expected != plain).any(), "the n-gram rule never changed a choice: the test checks nothing"


# ---- loss, gradients, training ------------------------------------------------------------------------------
def assert_gradients_match(model, reference, frozen=()):
    """Every c3 gradient tensor against autograd; frozen parts ('encoder', 'decoder') must be exactly zero."""
    parts = {"encoder": (model.encoder.gradients(), named_gradients(reference.encoder)),
             "decoder": (model.decoder.gradients(), named_gradients(reference.decoder)),
             "bridge": (model.bridge_gradients(), named_gradients(reference.bridge))}
    checked = 0
    for part, (ours, expected) in parts.items():
        assert sorted(ours) == sorted(expected), part
        for name, gradient in ours.items():
            if part in frozen:
                assert not gradient.any(), f"{part} {name}: frozen but has a gradient"
                continue
            norm = np.linalg.norm(expected[name])
            if norm == 0:
                assert not gradient.any(), f"{part} {name}: autograd gives zero, c3 does not"
            else:
                error = np.linalg.norm(gradient - expected[name]) / norm
                assert error < 1e-4, f"{part} {name}: normalised gradient error {error:.2e}"
            checked += 1
    return checked


@pytest.mark.parametrize("projector,tied", [("linear", False), ("mlp", False), ("linear", True)])
def test_loss_and_every_gradient_match_autograd(tmp_path, projector, tied):
    model, reference = build(tmp_path, projector=projector, tied_decoder=tied)
    contexts, context_mask, answers, answer_mask = batches(seed=6)
    expected = reference.loss(contexts, context_mask, answers, answer_mask)
    expected.backward()
    assert abs(model.loss(contexts, context_mask, answers, answer_mask) - expected.item()) < 1e-5
    loss = model.loss_and_gradients(contexts, context_mask, answers, answer_mask)
    assert abs(loss - expected.item()) < 1e-5
    checked = assert_gradients_match(model, reference)
    assert checked == len(model.encoder.parameters()) + len(model.decoder.parameters()) + len(model.bridge_parameters())
    # The signal reached every part: Q, the projector and the encoder's embeddings of the context tokens.
    assert np.abs(model.bridge_gradients()["model.Q.weight"]).min(axis=1).all()
    assert np.linalg.norm(model.encoder.gradients()["model.embed_tokens.weight"][contexts[context_mask == 1]]) > 0


@pytest.mark.parametrize("projector", ["linear", "mlp"])
def test_only_queries_and_projector_trainable(tmp_path, projector):
    model, reference = build(tmp_path, projector=projector)
    contexts, context_mask, answers, answer_mask = batches(seed=7)
    model.loss_and_gradients(contexts, context_mask, answers, answer_mask)  # fills every buffer first
    assert model.encoder.gradients()["model.norm.weight"].any()
    model.set_trainable("encoder", False)
    model.set_trainable("decoder", False)
    loss = model.loss_and_gradients(contexts, context_mask, answers, answer_mask)
    expected = reference.loss(contexts, context_mask, answers, answer_mask)
    expected.backward()
    assert abs(loss - expected.item()) < 1e-5
    assert_gradients_match(model, reference, frozen=("encoder", "decoder"))
    # Only the projector: Q gets nothing either.
    model.set_trainable("queries", False)
    model.loss_and_gradients(contexts, context_mask, answers, answer_mask)
    bridge = model.bridge_gradients()
    assert not bridge["model.Q.weight"].any()
    assert all(bridge[name].any() for name in bridge if "mm_projector" in name)
    # A training step moves the projector only: frozen tensors get neither updates nor weight decay.
    frozen = {f"encoder.{k}": v.copy() for k, v in model.encoder.parameters().items()}
    frozen.update({f"decoder.{k}": v.copy() for k, v in model.decoder.parameters().items()})
    frozen["model.Q.weight"] = model.bridge_parameters()["model.Q.weight"].copy()
    projector = {k: v.copy() for k, v in model.bridge_parameters().items() if "mm_projector" in k}
    trainer = c3.CascadeTrainer(model, learning_rate=1e-2, weight_decay=0.1)
    trainer.step(contexts, context_mask, answers, answer_mask)
    current = {f"encoder.{k}": v for k, v in model.encoder.parameters().items()}
    current.update({f"decoder.{k}": v for k, v in model.decoder.parameters().items()})
    current.update(model.bridge_parameters())
    for name, value in frozen.items():
        np.testing.assert_array_equal(current[name], value, err_msg=name)
    assert all((current[name] != value).any() for name, value in projector.items())


@pytest.mark.parametrize("scales", [{}, {"encoder": 0.1, "bridge": 4.0}])
def test_trainer_steps_match_torch_adamw(tmp_path, scales):
    """c3's AdamW against torch.optim.AdamW; with learning_rate_scales, against torch's parameter groups of their
    own lr (decay scales with each group's lr, as torch's does)."""
    model, reference = build(tmp_path, projector="mlp")
    hyper = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    named = [(f"{part}.{name}", p) for part in ("encoder", "decoder", "bridge")
             for name, p in getattr(reference, part).named_parameters()]
    no_decay = lambda name: name.endswith("bias") or "norm" in name  # noqa: E731
    groups = []
    for part in ("encoder", "decoder", "bridge"):
        lr = hyper["lr"] * scales.get(part, 1.0)
        mine = [(n, p) for n, p in named if n.startswith(part + ".")]
        groups += [{"params": [p for n, p in mine if not no_decay(n)], "lr": lr},
                   {"params": [p for n, p in mine if no_decay(n)], "weight_decay": 0.0, "lr": lr}]
    optimizer = torch.optim.AdamW(groups, **hyper)
    trainer = c3.CascadeTrainer(model, learning_rate=hyper["lr"], beta1=0.9, beta2=0.95, epsilon=1e-8,
                                weight_decay=0.1, max_grad_norm=1.0, warmup_steps=0, total_steps=10**9,
                                learning_rate_scales=scales)
    for step in range(5):
        contexts, context_mask, answers, answer_mask = batches(seed=10 + step, batch=4)
        optimizer.zero_grad()
        loss = reference.loss(contexts, context_mask, answers, answer_mask)
        loss.backward()
        for _, p in named:  # c3 updates (decays) tensors with a zero gradient, such as the encoder's lm_head
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
        optimizer.step()
        with two_threads():  # data parallel: micro-batches of 4 and 2 sequences
            report = trainer.step(contexts, context_mask, answers, answer_mask, micro_batches=1 + step % 2)
        assert report["step"] == step + 1 and report["tokens"] == int(answer_mask.sum())
        assert report["data_parallel_shares"] == 2
        assert report["gradient_norm"] > 1.0  # clipping is exercised
        assert abs(report["loss"] - loss.item()) < 1e-4, f"step {step}: {report['loss']} vs {loss.item()}"
    ours = {f"encoder.{k}": v for k, v in model.encoder.parameters().items()}
    ours.update({f"decoder.{k}": v for k, v in model.decoder.parameters().items()})
    ours.update({f"bridge.{k}": v for k, v in model.bridge_parameters().items()})
    for name, p in named:
        np.testing.assert_allclose(ours[name], p.detach().numpy(), atol=2e-4, err_msg=name)


def test_learning_rate_scales_are_checked(tmp_path):
    model, _ = build(tmp_path)
    with pytest.raises(c3.C3ValueError, match="names no parameter group 'projector'.*encoder, decoder, bridge"):
        c3.CascadeTrainer(model, learning_rate_scales={"projector": 2.0})
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(c3.C3ValueError, match="learning_rate_scales\\['encoder'\\]"):
            c3.CascadeTrainer(model, learning_rate_scales={"encoder": bad})
    with pytest.raises(TypeError):
        c3.CascadeTrainer(model, learning_rate_scales={"encoder": "fast"})
    # A frozen part with scale 0 stays bit for bit; the others move.
    trainer = c3.CascadeTrainer(model, learning_rate=1e-2, learning_rate_scales={"decoder": 0.0})
    before = {k: v.copy() for k, v in model.decoder.parameters().items()}
    contexts, context_mask, answers, answer_mask = batches(seed=3, batch=2)
    trainer.step(contexts, context_mask, answers, answer_mask)
    for name, value in model.decoder.parameters().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# ---- the official checkpoint layout, in miniature ------------------------------------------------------------
OFFICIAL_SPECIALS = ["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>"]
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
OFFICIAL_N, OFFICIAL_D_ENC, OFFICIAL_D_DEC = 6, 32, 48
TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "Context cascade compression packs a long text into a few latent tokens, then reads it back.",
         "Short one."]


def corpus_lines():
    import pydoc_data.topics
    text = "\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))
    return text.split("\n\n")[:400] + TEXTS * 3


def build_tokenizer():
    """A small byte-level BPE in the Qwen2 style, trained offline, with the official special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=OFFICIAL_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus_lines(), trainer)
    return tokenizer


def write_official_layout(directory, tokenizer, encoder, decoder, bridge):
    """The released checkpoint's layout: decoder directory (model_type "C3", latent_token_len,
    contexts_compression_llm_hidden_size; extra tensors in model.safetensors), encoder in llm1/, tokenizer.json."""
    from safetensors.torch import load_file, save_file

    decoder.save_pretrained(directory)
    encoder.save_pretrained(os.path.join(directory, "llm1"))
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    config_path = os.path.join(directory, "config.json")
    config = json.load(open(config_path))
    config.update(model_type="C3", architectures=["C3QwenForCausalLM"], latent_token_len=OFFICIAL_N,
                  contexts_compression_llm_hidden_size=OFFICIAL_D_ENC)
    json.dump(config, open(config_path, "w"), indent=2)
    weights_path = os.path.join(directory, "model.safetensors")
    tensors = load_file(weights_path)
    tensors.update({name: torch.from_numpy(value).contiguous() for name, value in bridge.items()})
    save_file(tensors, weights_path, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(directory, tokenizers.Tokenizer, ReferenceCascade) for a miniature official C3 checkpoint."""
    tokenizer = build_tokenizer()
    vocab = tokenizer.get_vocab_size()
    # Tied embeddings, as in Qwen2.5-1.5B and -3B.
    encoder = make_hf_model(kind="qwen2", heads=4, kv_heads=2, hidden=OFFICIAL_D_ENC, intermediate=48, vocab=vocab,
                            tied=True, seed=11, max_positions=96)
    decoder = make_hf_model(kind="qwen2", heads=4, kv_heads=2, hidden=OFFICIAL_D_DEC, intermediate=64, vocab=vocab,
                            tied=True, seed=12, max_positions=256)
    rng = np.random.default_rng(13)
    normal = lambda shape, scale: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    bridge = {"model.Q.weight": normal((OFFICIAL_N, OFFICIAL_D_ENC), 0.5),
              "model.mm_projector.weight": normal((OFFICIAL_D_DEC, OFFICIAL_D_ENC), 0.3),
              "model.mm_projector.bias": normal(OFFICIAL_D_DEC, 0.1)}
    directory = str(tmp_path_factory.mktemp("official_c3"))
    write_official_layout(directory, tokenizer, encoder, decoder, bridge)
    # The prompt as the official code builds it: the whole mpt string with the latent block, tokenized at once.
    block = "<img>" + "<imgpad>" * OFFICIAL_N + "</img>"
    prompt = tokenizer.encode(c3.OFFICIAL_PROMPT.replace("{latents}", block), add_special_tokens=False).ids
    start = prompt.index(tokenizer.token_to_id("<img>"))
    reference = ReferenceCascade(encoder, decoder, OFFICIAL_N, "linear", tokenizer.token_to_id("<img>"),
                                 tokenizer.token_to_id("</img>"), tokenizer.token_to_id("<imgpad>"), prompt[:start],
                                 prompt[start + OFFICIAL_N + 2:])
    assert reference.prompt_ids() == prompt
    reference.load_bridge(bridge)
    return directory, tokenizer, reference


def left_padded(rows):
    length = max(len(row) for row in rows)
    ids, mask = np.zeros((len(rows), length), np.int64), np.zeros((len(rows), length), np.int64)
    for index, row in enumerate(rows):
        ids[index, length - len(row):], mask[index, length - len(row):] = row, 1
    return ids, mask


def right_padded(rows):
    length = max(len(row) for row in rows)
    ids, mask = np.zeros((len(rows), length), np.int64), np.zeros((len(rows), length), np.int64)
    for index, row in enumerate(rows):
        ids[index, :len(row)], mask[index, :len(row)] = row, 1
    return ids, mask


def check_against_reference(cascade, tokenizer, reference):
    rows = [tokenizer.encode(text, add_special_tokens=False).ids for text in TEXTS]
    latents = cascade.compress(TEXTS)
    with torch.no_grad():
        expected = reference.compress(*left_padded(rows)).numpy()
    assert max_error(latents, expected) < 1e-4
    # Teacher-forced log-probabilities (the logits at the answer positions) through the official prompt.
    scores = cascade.score(latents, TEXTS)
    answers, answer_mask = right_padded(rows)
    np.testing.assert_array_equal(scores["reference"], answers)
    with torch.no_grad():
        log_softmax = reference.answer_log_softmax(torch.from_numpy(latents), answers, answer_mask).numpy()
    valid = answer_mask.astype(bool)
    gathered = np.take_along_axis(log_softmax, answers[..., None], axis=-1)[..., 0]
    assert max_error(scores["log_probability"][valid], gathered[valid]) < 1e-4
    np.testing.assert_array_equal(scores["predicted"][valid], log_softmax.argmax(-1)[valid])
    # Greedy decoding, stopping at <|im_end|>.
    stop = tokenizer.token_to_id("<|im_end|>")
    ids = cascade.reconstruct(latents, max_new_tokens=16, return_ids=True)
    tokens, lengths = reference.greedy(torch.from_numpy(latents), 16, stop_tokens=[stop])
    expected_ids = [[t for t in row[:length] if t != stop] for row, length in zip(tokens, lengths)]
    assert [list(map(int, row)) for row in ids] == expected_ids
    texts = cascade.reconstruct(latents, max_new_tokens=16)
    assert texts == [tokenizer.decode(row, skip_special_tokens=False) for row in expected_ids]
    return latents, scores, texts


def test_official_layout_matches_reference(official):
    directory, tokenizer, reference = official
    cascade = c3.Cascade.load(directory)
    config = cascade.model.config
    assert config["num_latents"] == OFFICIAL_N and config["projector"] == "linear"
    assert config["encoder"]["hidden_size"] == OFFICIAL_D_ENC and config["decoder"]["hidden_size"] == OFFICIAL_D_DEC
    assert (config["latent_start_token"], config["latent_end_token"], config["latent_pad_token"]) == \
        tuple(tokenizer.token_to_id(name) for name in ("<img>", "</img>", "<imgpad>"))
    assert config["prompt_prefix"] == reference.prompt_prefix and config["prompt_suffix"] == reference.prompt_suffix
    assert config["stop_tokens"] == [tokenizer.token_to_id("<|im_end|>")]
    for name, value in cascade.model.bridge_parameters().items():
        np.testing.assert_array_equal(value, dict(reference.bridge.named_parameters())[name].detach().numpy())
    check_against_reference(cascade, tokenizer, reference)


def test_official_layout_save_and_reload_is_identical(official, tmp_path):
    directory, tokenizer, reference = official
    cascade = c3.Cascade.load(directory)
    latents = cascade.compress(TEXTS)
    scores = cascade.score(latents, TEXTS)
    texts = cascade.reconstruct(latents, max_new_tokens=16)
    saved = str(tmp_path / "saved")
    cascade.save(saved)
    assert os.path.isdir(os.path.join(saved, "llm1"))
    config = json.load(open(os.path.join(saved, "config.json")))
    assert config["model_type"] == "C3" and config["latent_token_len"] == OFFICIAL_N
    assert config["contexts_compression_llm_hidden_size"] == OFFICIAL_D_ENC
    from safetensors.numpy import load_file
    stored = load_file(os.path.join(saved, "model.safetensors"))
    assert stored["model.Q.weight"].shape == (OFFICIAL_N, OFFICIAL_D_ENC)
    assert stored["model.mm_projector.weight"].shape == (OFFICIAL_D_DEC, OFFICIAL_D_ENC)
    reloaded = c3.Cascade.load(saved)
    assert reloaded.model.config == cascade.model.config
    assert reloaded.identity() == cascade.identity()
    np.testing.assert_array_equal(reloaded.compress(TEXTS), latents)
    again = reloaded.score(latents, TEXTS)
    for key in ("log_probability", "predicted", "rank", "valid"):
        np.testing.assert_array_equal(again[key], scores[key])
    assert reloaded.reconstruct(latents, max_new_tokens=16) == texts
    # transformers still reads the saved encoder.
    encoder = transformers.Qwen2ForCausalLM.from_pretrained(os.path.join(saved, "llm1"))
    for name, value in encoder.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), reference.encoder.state_dict()[name].numpy(), err_msg=name)


def copy_official(directory, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(directory, target)
    return target


def test_official_layout_load_errors(official, tmp_path):
    directory, _, _ = official
    # No encoder.
    broken = copy_official(directory, tmp_path / "a")
    shutil.rmtree(os.path.join(broken, "llm1"))
    with pytest.raises(c3.FormatError, match="llm1"):
        c3.Cascade.load(broken)
    # Q of the wrong shape.
    from safetensors.torch import load_file, save_file
    broken = copy_official(directory, tmp_path / "b")
    path = os.path.join(broken, "model.safetensors")
    tensors = load_file(path)
    tensors["model.Q.weight"] = torch.zeros(OFFICIAL_N + 1, OFFICIAL_D_ENC)
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(c3.ShapeError, match=r"model\.Q\.weight"):
        c3.Cascade.load(broken)
    # No Q at all.
    del tensors["model.Q.weight"]
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(c3.C3Error, match=r"model\.Q\.weight"):
        c3.Cascade.load(broken)
    # A config without latent_token_len.
    broken = copy_official(directory, tmp_path / "c")
    config_path = os.path.join(broken, "config.json")
    config = json.load(open(config_path))
    del config["latent_token_len"]
    json.dump(config, open(config_path, "w"))
    with pytest.raises(c3.ConfigError, match="latent_token_len"):
        c3.Cascade.load(broken)
    # A projector whose input width disagrees with the encoder.
    broken = copy_official(directory, tmp_path / "d")
    config_path = os.path.join(broken, "config.json")
    config = json.load(open(config_path))
    config["contexts_compression_llm_hidden_size"] = OFFICIAL_D_ENC + 8
    json.dump(config, open(config_path, "w"))
    with pytest.raises(c3.ConfigError, match="contexts_compression_llm_hidden_size"):
        c3.Cascade.load(broken)


# ---- latents as data, hostile input (a byte-level cascade made by c3) ------------------------------------------
def byte_cascade(seed=0, projector="linear"):
    encoder = dict(hidden_size=32, intermediate_size=48, num_layers=1, num_heads=4, num_kv_heads=2,
                   max_position_embeddings=40)
    decoder = dict(hidden_size=48, intermediate_size=64, num_layers=1, num_heads=4, num_kv_heads=2,
                   max_position_embeddings=64)
    return c3.Cascade.new(encoder, decoder, n_latents=4, projector=projector, seed=seed)


def test_latents_round_trip_with_metadata(tmp_path):
    cascade = byte_cascade()
    texts = ["first text", "a second, longer text"]
    latents = cascade.compress(texts)
    path = str(tmp_path / "latents.safetensors")
    counts = [len(row) for row in cascade.tokenize(texts)]
    c3.save_latents(path, latents, cascade, source_tokens=counts, metadata={"split": "held-out"})
    loaded, metadata = c3.load_latents(path, cascade)
    np.testing.assert_array_equal(loaded, latents)
    assert metadata["c3.kind"] == "latents" and metadata["c3.num_latents"] == "4"
    assert metadata["c3.cascade"] == cascade.identity()
    np.testing.assert_array_equal(metadata["source_tokens"], counts)
    assert metadata["user.split"] == "held-out"
    assert cascade.reconstruct(loaded, max_new_tokens=8) == cascade.reconstruct(latents, max_new_tokens=8)
    # The identity is the cascade's: the same configuration and Q give the same one, a retrained Q another.
    assert byte_cascade().identity() == cascade.identity()
    other = byte_cascade(seed=1)
    assert other.identity() != cascade.identity()
    with pytest.raises(c3.C3ValueError, match="cascade"):
        c3.load_latents(path, other)
    c3.load_latents(path)  # without a cascade, no check
    # Latents saved without a cascade load into any cascade.
    anonymous = str(tmp_path / "anonymous.safetensors")
    c3.save_latents(anonymous, latents)
    assert "c3.cascade" not in c3.load_latents(anonymous, other)[1]


def test_corrupted_or_foreign_latents_files_raise_format_error(tmp_path):
    cascade = byte_cascade()
    latents = cascade.compress(["some text"])
    path = str(tmp_path / "latents.safetensors")
    c3.save_latents(path, latents, cascade)
    data = open(path, "rb").read()
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 definitely not safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-16])
    import safetensors.numpy
    foreign = str(tmp_path / "foreign.safetensors")
    safetensors.numpy.save_file({"latents": latents}, foreign, metadata={"format": "pt"})
    mislabelled = str(tmp_path / "mislabelled.safetensors")
    _core.write_safetensors(mislabelled, {"latents": latents}, "F32", {"c3.kind": "latents", "c3.num_latents": "5"})
    no_tensor = str(tmp_path / "no_tensor.safetensors")
    _core.write_safetensors(no_tensor, {"other": latents}, "F32", {"c3.kind": "latents", "c3.num_latents": "4"})
    for bad in (str(garbage), str(truncated), foreign, mislabelled, no_tensor):
        with pytest.raises(c3.FormatError):
            c3.load_latents(bad, cascade)
    with pytest.raises(c3.C3IOError):
        c3.load_latents(str(tmp_path / "missing.safetensors"))
    with pytest.raises(c3.ShapeError):
        c3.save_latents(str(tmp_path / "flat.safetensors"), latents[0])


def test_contexts_longer_than_the_encoder_positions(tmp_path):
    cascade = byte_cascade()
    limit = cascade.max_context_tokens
    assert limit == 40 - 4 - 2
    long_text = "".join(chr(ord("a") + i % 26) for i in range(limit + 5))
    with pytest.raises(c3.C3ValueError, match="truncate=True"):
        cascade.compress([long_text])
    cut = cascade.compress([long_text, "short"], truncate=True)
    np.testing.assert_array_equal(cut[:1], cascade.compress([long_text[:limit]]))
    cascade.compress([long_text[:limit]])  # exactly at the limit is fine
    # At the id level the encoder's position check speaks.
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.model.compress(np.ones((1, limit + 1), np.int32))
    # Answers longer than the decoder's positions.
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.loss(["a"], ["y" * 80])
    latents = cascade.compress(["a"])
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.reconstruct(latents, max_new_tokens=100)


def test_hostile_input_raises_typed_errors():
    cascade = byte_cascade()
    model = cascade.model
    latents = cascade.compress(["hello"])
    with pytest.raises(c3.C3ValueError, match="empty"):
        cascade.compress([""])
    with pytest.raises(c3.C3ValueError, match="empty"):
        cascade.compress([])
    with pytest.raises(TypeError):
        cascade.compress("one string, not a list")
    # Latents of the wrong shape, or not finite.
    for shape in [(1, 5, 48), (1, 4, 32), (4, 48)]:
        with pytest.raises(c3.ShapeError, match="latents"):
            model.reconstruct(np.zeros(shape, np.float32))
        with pytest.raises(c3.ShapeError, match="latents"):
            model.score(np.zeros(shape, np.float32), np.array([[1]]))
    for bad in (np.nan, np.inf):
        poisoned = latents.copy()
        poisoned[0, 2, 7] = bad
        with pytest.raises(c3.C3ValueError, match="non-finite"):
            cascade.reconstruct(poisoned)
        with pytest.raises(c3.C3ValueError, match="non-finite"):
            cascade.score(poisoned, ["hello"])
    with pytest.raises(c3.ShapeError):
        model.score(latents, np.array([[1], [2]]))
    # Token ids outside the vocabulary (262 = 256 bytes + 6 specials), negative, or not integers.
    vocab = model.config["encoder"]["vocab_size"]
    for ids in (np.array([[1, vocab]]), np.array([[1, -1]]), np.array([[1.5, 2.0]])):
        with pytest.raises(c3.C3ValueError):
            model.compress(ids)
    with pytest.raises(c3.C3ValueError, match="vocabulary"):
        model.score(latents, np.array([[vocab + 3]]))
    with pytest.raises(c3.C3ValueError, match="vocabulary"):
        model.loss(np.array([[1, 2]]), None, np.array([[1, vocab]]), None)
    with pytest.raises(c3.C3ValueError, match="vocabulary"):
        model.loss_and_gradients(np.array([[1, vocab]]), None, np.array([[1, 2]]), None)
    with pytest.raises(c3.C3ValueError, match="vocabulary"):
        cascade.compress([np.array([5, vocab + 1])])
    trainer = cascade.trainer(learning_rate=1e-3)
    before = model.bridge_parameters()["model.Q.weight"].copy()
    with pytest.raises(c3.C3ValueError, match="vocabulary"):
        trainer.step(np.array([[1, 2]]), None, np.array([[vocab]]), None)
    with pytest.raises(c3.C3ValueError):
        trainer.step(np.array([[1, 2]]), None, np.array([[3]]), np.zeros((1, 1)))  # no answer tokens
    np.testing.assert_array_equal(model.bridge_parameters()["model.Q.weight"], before)  # nothing moved
    with pytest.raises(c3.ShapeError):
        model.compress(np.array([[1, 2]]), np.ones((1, 3)))
    with pytest.raises(c3.ConfigError):
        c3.CascadeModel(dict(model.config, latent_pad_token=vocab))


def test_c3_written_mlp_cascade_reloads_identically(tmp_path):
    cascade = byte_cascade(projector="mlp")
    texts = ["compress me", "and me too"]
    latents = cascade.compress(texts)
    cascade.save(str(tmp_path / "mlp"))
    reloaded = c3.Cascade.load(str(tmp_path / "mlp"))
    assert reloaded.model.config == cascade.model.config
    assert sorted(reloaded.model.bridge_parameters()) == ["model.Q.weight", "model.mm_projector.0.bias",
                                                          "model.mm_projector.0.weight", "model.mm_projector.2.bias",
                                                          "model.mm_projector.2.weight"]
    np.testing.assert_array_equal(reloaded.compress(texts), latents)
    assert reloaded.reconstruct(latents, max_new_tokens=8) == cascade.reconstruct(latents, max_new_tokens=8)
