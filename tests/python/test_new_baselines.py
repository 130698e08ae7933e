"""The literature's baselines at the same latent budget N: mean pooling of the encoder's final hidden states
(mean_pool_hidden) and the hierarchical convolutional encoder of Lee et al., arXiv 2512.03643 (hierarchical).

The oracle is PyTorch autograd on a reference written here from the paper's description (nn.Conv1d, nn.GroupNorm,
F.adaptive_avg_pool1d) and from transformers' own encoder, run sequence by sequence on the unpadded contexts, so that
a padded c3 batch is checked against per-sequence runs. One model sees ratios 2, 4 and 8 (contexts of 8, 16 and 32
tokens for N = 4) and a length that is not a power of two times N (11: one block, then a pool 6 -> 4)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import c3
from c3 import _core
from c3.cascade import scratch_model_config
from c3_reference import ReferenceCascade, named_gradients
from conftest import make_hf_model
from test_cascade import END, N, PAD, PREFIX, START, SUFFIX, STOP, TEXT_VOCAB, VOCAB, assert_gradients_match

NEW_METHODS = ["mean_pool_hidden", "hierarchical"]
ENCODER_HIDDEN, MAX_POSITIONS = 32, 64
# The hierarchical blocks a cascade keeps: as many as its longest context (max positions - N - 2 = 58) needs.
BLOCKS = 4  # 58 -> 29 -> 15 -> 8 -> 4


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- the reference ------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """One block of the paper's design: GroupNorm(Conv1d k5 s1) -> GELU -> GroupNorm(Conv1d k3 s2), plus the input
    average-pooled to the new length, then GELU. On [1, d, L]."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 5, stride=1, padding=2, bias=False)
        self.norm1 = nn.GroupNorm(1, channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(1, channels)

    def forward(self, x):
        main = self.norm2(self.conv2(F.gelu(self.norm1(self.conv1(x)))))
        return F.gelu(main + F.adaptive_avg_pool1d(x, main.shape[2]))


class Hierarchical(nn.Module):
    def __init__(self, channels, blocks):
        super().__init__()
        self.blocks = nn.ModuleList([ResidualBlock(channels) for _ in range(blocks)])

    def forward(self, embeddings, num_latents):
        """[L, d] -> [N, d]: blocks while the length is above N and halving it keeps at least N rows, then an
        adaptive average pool to N (c3's rule, include/c3/cascade/hierarchical.hpp)."""
        x, length, used = embeddings.t()[None], embeddings.shape[0], 0
        while length > num_latents and (length + 1) // 2 >= num_latents:
            x, length, used = self.blocks[used](x), (length + 1) // 2, used + 1
        return F.adaptive_avg_pool1d(x, num_latents)[0].t()


class Reference(ReferenceCascade):
    """The C3 reference with the two new latent blocks, computed one unpadded sequence at a time."""

    def block_for(self, method, contexts, context_mask):
        if method not in NEW_METHODS:
            return super().block_for(method, contexts, context_mask)
        contexts = torch.as_tensor(np.asarray(contexts), dtype=torch.long)
        context_mask = torch.as_tensor(np.asarray(context_mask), dtype=torch.long)
        rows = []
        for b in range(contexts.shape[0]):
            real = contexts[b][context_mask[b] == 1]
            if method == "hierarchical":
                rows.append(self.bridge.model.hierarchical(self.encoder.get_input_embeddings()(real), self.num_latents))
                continue
            out = self.encoder(input_ids=real[None], output_hidden_states=True)
            hidden, L = out.hidden_states[-1][0], len(real)  # after the final norm
            rows.append(torch.stack([hidden[i * L // self.num_latents:(i + 1) * L // self.num_latents].mean(dim=0)
                                     for i in range(self.num_latents)]))
        return self.bridge.model.mm_projector(torch.stack(rows)), None


def cascade_config(method):
    return dict(num_latents=N, projector="linear", latent_start_token=START, latent_end_token=END,
                latent_pad_token=PAD, prompt_prefix=PREFIX, prompt_suffix=SUFFIX, stop_tokens=[STOP], method=method)


def build(tmp_path, method, seed=0):
    """(c3 CascadeModel, Reference) over the same weights: a Qwen2 encoder (width 32) and a Llama decoder (width
    48); Q, the projector and the blocks random (norms near 1), copied into the reference."""
    encoder = make_hf_model(kind="qwen2", heads=4, kv_heads=2, hidden=ENCODER_HIDDEN, intermediate=48, vocab=VOCAB,
                            seed=seed + 1, max_positions=MAX_POSITIONS)
    decoder = make_hf_model(kind="llama", heads=4, kv_heads=1, hidden=48, intermediate=64, vocab=VOCAB,
                            seed=seed + 2, max_positions=MAX_POSITIONS)
    encoder.save_pretrained(tmp_path / "encoder")
    decoder.save_pretrained(tmp_path / "decoder")
    model = c3.CascadeModel.from_models(c3.load_model(str(tmp_path / "encoder")),
                                        c3.load_model(str(tmp_path / "decoder")), cascade_config(method),
                                        seed=seed + 3)
    reference = Reference(encoder, decoder, N, "linear", START, END, PAD, PREFIX, SUFFIX)
    if method == "hierarchical":
        reference.bridge.model.hierarchical = Hierarchical(ENCODER_HIDDEN, BLOCKS)
    rng = np.random.default_rng(seed)
    for name, value in model.bridge_parameters().items():
        noise = rng.standard_normal(value.shape) * (0.5 if "Q" in name else 0.2)
        value[:] = (noise + (1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight") else 0.0))
    reference.load_bridge(model.bridge_parameters())
    return model, reference


def padded(rows, side="left"):
    """(ids [B, T] int32, mask [B, T] uint8) of unequal rows, left- (contexts) or right-padded (answers)."""
    length = max(len(row) for row in rows)
    ids, mask = np.zeros((len(rows), length), np.int32), np.zeros((len(rows), length), np.uint8)
    for b, row in enumerate(rows):
        where = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        ids[b, where], mask[b, where] = row, 1
    return ids, mask


def ratio_batch(seed=0):
    """Contexts of 32, 16, 8 and 11 tokens (ratios 8, 4, 2 and 2.75 for N = 4), left-padded, with answers."""
    rng = np.random.default_rng(seed)
    contexts = [rng.integers(0, TEXT_VOCAB, length) for length in (32, 16, 8, 11)]
    answers = [rng.integers(0, TEXT_VOCAB, length) for length in (6, 4, 5, 3)]
    return padded(contexts) + padded(answers, side="right")


# ---- the oracle -------------------------------------------------------------------------------------------------
def test_method_names_come_from_cpp():
    names = _core.method_names()
    assert set(NEW_METHODS) <= set(names) and names[0] == "c3"
    assert {"mean_pool", "truncate", "truncate_last", "no_context", "full_context"} <= set(names)


def test_hierarchical_layout_names_and_block_count(tmp_path):
    model, reference = build(tmp_path, "hierarchical")
    bridge = model.bridge_parameters()
    blocks = sorted({name.split(".")[3] for name in bridge if name.startswith("model.hierarchical.")})
    assert blocks == [str(i) for i in range(BLOCKS)]
    assert bridge["model.hierarchical.blocks.0.conv1.weight"].shape == (ENCODER_HIDDEN, ENCODER_HIDDEN, 5)
    assert bridge["model.hierarchical.blocks.3.conv2.weight"].shape == (ENCODER_HIDDEN, ENCODER_HIDDEN, 3)
    assert bridge["model.hierarchical.blocks.2.norm1.bias"].shape == (ENCODER_HIDDEN,)
    assert sorted(bridge) == sorted(dict(reference.bridge.named_parameters()))
    # The other methods keep the official bridge layout.
    assert not any(name.startswith("model.hierarchical.") for name in build(tmp_path / "m", "mean_pool_hidden")[0]
                   .bridge_parameters())


@pytest.mark.parametrize("method", NEW_METHODS)
def test_padded_batch_latents_equal_per_sequence_runs_and_the_reference(tmp_path, method):
    model, reference = build(tmp_path, method)
    contexts, context_mask, _, _ = ratio_batch(seed=1)
    latents = model.compress(contexts, context_mask)
    assert latents.shape == (4, N, 48)
    with torch.no_grad():
        expected = reference.block_for(method, contexts, context_mask)[0].numpy()
    np.testing.assert_allclose(latents, expected, rtol=1e-4, atol=1e-5)
    for b in range(len(contexts)):
        alone = contexts[b][context_mask[b] == 1][None]
        np.testing.assert_allclose(model.compress(alone), latents[b:b + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_loss_and_every_gradient_match_autograd(tmp_path, method):
    model, reference = build(tmp_path, method)
    contexts, context_mask, answers, answer_mask = ratio_batch(seed=2)
    expected = reference.method_loss(method, contexts, context_mask, answers, answer_mask)
    expected.backward()
    loss = model.loss_and_gradients(contexts, context_mask, answers, answer_mask)
    assert abs(loss - expected.item()) <= 1e-5 * abs(expected.item())
    assert assert_gradients_match(model, reference) > 0
    encoder, bridge = model.encoder.gradients(), model.bridge_gradients()
    assert not bridge["model.Q.weight"].any()  # neither method uses Q
    assert encoder["model.embed_tokens.weight"].any() and bridge["model.mm_projector.weight"].any()
    layers = [name for name in encoder if ".layers." in name]
    if method == "mean_pool_hidden":  # the gradient goes through the pooling into the encoder's layers
        assert all(encoder[name].any() for name in layers)
    else:  # only the embeddings, the blocks (the longest context runs 3 of the 4) and the projector learn
        assert not any(encoder[name].any() for name in layers)
        for i in range(BLOCKS):
            assert bridge[f"model.hierarchical.blocks.{i}.conv1.weight"].any() == (i < 3), i


def test_frozen_blocks_get_no_gradient_and_the_rest_still_matches(tmp_path):
    model, reference = build(tmp_path, "hierarchical")
    model.set_trainable("hierarchical", False)
    contexts, context_mask, answers, answer_mask = ratio_batch(seed=3)
    reference.method_loss("hierarchical", contexts, context_mask, answers, answer_mask).backward()
    model.loss_and_gradients(contexts, context_mask, answers, answer_mask)
    theirs = named_gradients(reference.bridge)
    for name, gradient in model.bridge_gradients().items():
        if name.startswith("model.hierarchical."):
            assert not gradient.any(), name
        elif name.startswith("model.mm_projector."):
            assert np.linalg.norm(gradient - theirs[name]) / np.linalg.norm(theirs[name]) < 1e-4, name
    embed = "model.embed_tokens.weight"
    expected = named_gradients(reference.encoder)[embed]
    assert np.linalg.norm(model.encoder.gradients()[embed] - expected) / np.linalg.norm(expected) < 1e-4


@pytest.mark.parametrize("method", NEW_METHODS)
def test_too_short_or_too_long_contexts_are_typed_errors(tmp_path, method):
    model, _ = build(tmp_path, method)
    with pytest.raises(c3.C3ValueError, match="N = 4"):
        model.compress(np.array([[1, 2, 3]], np.int32))
    if method == "hierarchical":  # 128 tokens (ratio 32) need a fifth block; the encoder's positions keep four
        with pytest.raises(c3.C3ValueError, match="hierarchical blocks"):
            model.compress(np.ones((1, 128), np.int32))


# ---- through the Python API: train, save, load, score, reconstruct ---------------------------------------------
def tiny_cascade(method, seed=0):
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    config = scratch_model_config(shape, 8 * 4, 4)  # contexts up to ratio 8 for N = 4
    return c3.Cascade.new(config, config, 4, method=method, seed=seed)


TEXTS = ["the cat sat on the mat", "a dog barked at the moon!", "sixteen bytes ok", "twelve bytes"]


@pytest.mark.parametrize("method", NEW_METHODS)
def test_training_reduces_the_loss(method):
    cascade = tiny_cascade(method, seed=1)
    trainer = cascade.trainer(learning_rate=3e-3, warmup_steps=1, total_steps=40, weight_decay=0.0)
    before = cascade.loss(TEXTS)
    for _ in range(40):
        cascade.train_step(trainer, TEXTS)
    after = cascade.loss(TEXTS)
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_save_load_round_trip_and_the_research_api(tmp_path, method):
    cascade = tiny_cascade(method, seed=2)
    cascade.train_step(cascade.trainer(learning_rate=1e-2), TEXTS)
    path = str(tmp_path / method)
    cascade.save(path)
    loaded = c3.Cascade.load(path)
    assert loaded.method == method
    assert loaded.loss(TEXTS) == cascade.loss(TEXTS)
    for name, value in cascade.model.bridge_parameters().items():
        assert np.array_equal(loaded.model.bridge_parameters()[name], value), name
    latents, mask = loaded.encode(TEXTS)
    assert latents.shape == (4, 4, 16) and mask is None
    np.testing.assert_array_equal(latents, cascade.compress(TEXTS))
    scores = loaded.score(latents, TEXTS)
    assert scores["valid"].sum() == sum(len(text.encode()) for text in TEXTS)
    assert len(loaded.reconstruct(latents, max_new_tokens=5)) == 4


@pytest.mark.parametrize("method", NEW_METHODS)
def test_training_checkpoint_resumes_bit_for_bit(tmp_path, method):
    """The sweep's path: save_checkpoint after a step, load into a fresh cascade, one more step on each: equal."""
    from c3.training import load_checkpoint, save_checkpoint

    cascade, fresh = tiny_cascade(method, seed=3), tiny_cascade(method, seed=4)
    trainer, fresh_trainer = cascade.trainer(learning_rate=1e-2), fresh.trainer(learning_rate=1e-2)
    cascade.train_step(trainer, TEXTS)
    save_checkpoint(str(tmp_path / "state.safetensors"), cascade.model, trainer)
    load_checkpoint(str(tmp_path / "state.safetensors"), fresh.model, fresh_trainer)
    assert cascade.train_step(trainer, TEXTS)["loss"] == fresh.train_step(fresh_trainer, TEXTS)["loss"]
    for name, value in cascade.model.bridge_parameters().items():
        assert np.array_equal(fresh.model.bridge_parameters()[name], value), name


def test_cli_trains_a_hierarchical_cascade(tmp_path, capsys):
    from c3 import cli

    output = str(tmp_path / "hierarchical")
    assert cli.main(["train", "--output", output, "--method", "hierarchical", "--latents", "4", "--ratio", "4",
                     "--steps", "2", "--batch", "2", "--hidden-size", "16", "--layers", "1", "--quiet"]) == 0
    loaded = c3.Cascade.load(output)
    assert loaded.method == "hierarchical"
    assert any(name.startswith("model.hierarchical.blocks.") for name in loaded.model.bridge_parameters())


@pytest.mark.parametrize("method", NEW_METHODS)
def test_the_torch_mirror_refuses_the_new_methods(tmp_path, method):
    c3_torch = pytest.importorskip("c3.torch")
    cascade = tiny_cascade(method)
    with pytest.raises(c3.C3ValueError, match=f"does not mirror the '{method}' baseline"):
        c3_torch.to_torch(cascade)
    cascade.save(str(tmp_path / "saved"))
    with pytest.raises(c3.C3ValueError, match=f"does not mirror the '{method}' baseline"):
        c3_torch.load(str(tmp_path / "saved"))
