"""A decoder prompt of many latent blocks (one per chunk of a document, each in its own <img> ... </img>) and a
task's suffix in place of the prompt's, against the PyTorch reference (tests/python/c3_reference.py): teacher-forced
scores, greedy decoding with the KV cache, the loss and every gradient, a cache of more than 2,048 latent
positions, and typed errors."""
import numpy as np
import pytest
import torch

from c3 import _core
import test_new_baselines as new_baselines
from c3_reference import make_cascade_pair
from conftest import make_hf_model, padded_batch
from test_cascade import (END, N, PAD, PREFIX, START, STOP, SUFFIX, TEXT_VOCAB, VOCAB, assert_gradients_match,
                          build, max_error, one_torch_thread)  # noqa: F401 - the fixture, autouse here too

pytest.importorskip("transformers")


def documents(seed=0, batch=2, blocks=3, chunk_length=6, answer_length=5, task_length=3):
    """Chunks [B * K, Lc] (left-padded, each document's K chunks in order), answers [B, La] (right-padded) and a
    task suffix per row [B, S], left-padded, of unequal lengths."""
    rng = np.random.default_rng(seed)
    chunks, chunk_mask = padded_batch(rng, batch * blocks, chunk_length, TEXT_VOCAB, side="left")
    chunk_mask[:, -N:] = 1  # every chunk holds at least N tokens, as pooling and truncation need
    answers, answer_mask = padded_batch(rng, batch, answer_length, TEXT_VOCAB, side="right")
    task = rng.integers(0, TEXT_VOCAB, size=(batch, task_length)).astype(np.int32)
    task_mask = np.ones((batch, task_length), np.uint8)
    task_mask[0, 0] = 0  # row 0's task is one token shorter
    return chunks, chunk_mask, answers, answer_mask, task, task_mask


def blocks_of(latents, batch, blocks):
    """[B * K, W, d] chunk latents -> ([B, K * W, d] for c3, a list of K [B, W, d] tensors for the reference)."""
    width, d = latents.shape[1], latents.shape[2]
    joined = latents.reshape(batch, blocks * width, d)
    return joined, [torch.from_numpy(np.ascontiguousarray(latents.reshape(batch, blocks, width, d)[:, k]))
                    for k in range(blocks)]


@pytest.mark.parametrize("method", ["c3", "mean_pool", "truncate_last"])
@pytest.mark.parametrize("with_task", [False, True])
def test_scores_over_k_blocks_match_the_reference(tmp_path, method, with_task):
    model, reference = build(tmp_path, method=method)
    chunks, chunk_mask, answers, answer_mask, task, task_mask = documents(seed=1)
    latents = model.compress(chunks, chunk_mask)
    joined, blocks = blocks_of(latents, 2, 3)
    task_arguments = dict(task=task, task_mask=task_mask) if with_task else {}
    scores = model.score(joined, answers, answer_mask, blocks=3, **task_arguments)
    with torch.no_grad():
        logits = reference.document_answer_logits(blocks, answers, answer_mask, **task_arguments)
    log_softmax = torch.log_softmax(logits.double(), dim=-1).numpy()
    expected = np.take_along_axis(log_softmax, answers[..., None].astype(np.int64), axis=-1)[..., 0]
    valid = answer_mask.astype(bool)
    np.testing.assert_array_equal(scores["valid"], valid)
    assert max_error(scores["log_probability"][valid], expected[valid]) < 1e-4
    np.testing.assert_array_equal(scores["predicted"][valid], log_softmax.argmax(-1)[valid])


def test_one_block_without_a_task_is_the_plain_prompt(tmp_path):
    model, _ = build(tmp_path)
    chunks, chunk_mask, answers, answer_mask, _, _ = documents(seed=2, batch=3, blocks=1)
    latents = model.compress(chunks, chunk_mask)
    plain = model.score(latents, answers, answer_mask)
    one_block = model.score(latents, answers, answer_mask, blocks=1)
    suffix = np.tile(np.asarray(SUFFIX, np.int32), (3, 1))
    as_task = model.score(latents, answers, answer_mask, task=suffix)
    for name in plain:
        np.testing.assert_array_equal(plain[name], one_block[name])
        np.testing.assert_array_equal(plain[name], as_task[name])
    assert model.loss(chunks, chunk_mask, answers, answer_mask) == model.loss(chunks, chunk_mask, answers,
                                                                                answer_mask, blocks=1, task=suffix)


def test_the_order_of_the_blocks_matters(tmp_path):
    model, _ = build(tmp_path)
    chunks, chunk_mask, answers, answer_mask, task, task_mask = documents(seed=3, batch=1)
    latents = model.compress(chunks, chunk_mask)
    forward = model.score(latents.reshape(1, -1, latents.shape[2]), answers, answer_mask, blocks=3)
    backward = model.score(latents[::-1].reshape(1, -1, latents.shape[2]), answers, answer_mask, blocks=3)
    assert max_error(forward["log_probability"], backward["log_probability"]) > 1e-3


def test_greedy_decoding_over_k_blocks_with_a_task_matches_the_reference(tmp_path):
    model, reference = build(tmp_path)
    chunks, chunk_mask, _, _, task, task_mask = documents(seed=4)
    latents = model.compress(chunks, chunk_mask)
    joined, blocks = blocks_of(latents, 2, 3)
    tokens, lengths = model.reconstruct(joined, max_new_tokens=10, blocks=3, task=task, task_mask=task_mask)
    expected, expected_lengths = reference.document_greedy(blocks, 10, task, task_mask, stop_tokens=[STOP])
    np.testing.assert_array_equal(lengths, expected_lengths)
    for row in range(2):
        np.testing.assert_array_equal(tokens[row, :lengths[row]], expected[row, :lengths[row]])
    # Teacher forcing on its own greedy output predicts that output.
    mask = (np.arange(tokens.shape[1])[None] < lengths[:, None]).astype(np.uint8)
    scores = model.score(joined, tokens, mask, blocks=3, task=task, task_mask=task_mask)
    np.testing.assert_array_equal(scores["predicted"][mask == 1], tokens[mask == 1])


@pytest.mark.parametrize("method", ["c3", "mean_pool", "mean_pool_hidden", "hierarchical"])
def test_loss_and_every_gradient_over_k_blocks_match_autograd(tmp_path, method):
    if method in new_baselines.NEW_METHODS:
        model, reference = new_baselines.build(tmp_path, method)
    else:
        model, reference = build(tmp_path, method=method)
    chunks, chunk_mask, answers, answer_mask, task, task_mask = documents(seed=5)
    if method != "c3":  # the reference compresses each chunk with the method's own block
        reference.compress = lambda ids, mask: reference.block_for(method, ids, mask)[0]
    expected = reference.document_loss(chunks, chunk_mask, answers, answer_mask, task, task_mask)
    expected.backward()
    assert abs(model.loss(chunks, chunk_mask, answers, answer_mask, blocks=3, task=task, task_mask=task_mask)
               - expected.item()) < 1e-5
    loss = model.loss_and_gradients(chunks, chunk_mask, answers, answer_mask, blocks=3, task=task,
                                    task_mask=task_mask)
    assert abs(loss - expected.item()) < 1e-5
    checked = assert_gradients_match(model, reference)
    assert checked == len(model.encoder.parameters()) + len(model.decoder.parameters()) + len(model.bridge_parameters())


def test_training_steps_on_documents_and_tasks_in_one_weighted_step(tmp_path):
    model, _ = build(tmp_path)
    chunks, chunk_mask, answers, answer_mask, task, task_mask = documents(seed=6)
    trainer = _core.CascadeTrainer(model, learning_rate=1e-2, warmup_steps=1, total_steps=10)
    before = model.loss(chunks, chunk_mask, answers, answer_mask, blocks=3, task=task, task_mask=task_mask)
    for _ in range(5):
        trainer.step_weighted([(chunks, chunk_mask, answers, answer_mask, 3, task, task_mask),
                               (chunks[:2], chunk_mask[:2], answers, answer_mask)], [1.0, 0.5])
    after = model.loss(chunks, chunk_mask, answers, answer_mask, blocks=3, task=task, task_mask=task_mask)
    assert after < before


def test_a_cache_of_more_than_2048_latent_positions_decodes_like_the_reference(tmp_path):
    """K = 512 blocks of N = 4 rows: 2,048 latent positions and 1,024 markers in the decoder's KV cache."""
    blocks, width = 512, 4
    encoder = make_hf_model(kind="llama", heads=2, kv_heads=1, hidden=16, intermediate=24, vocab=VOCAB, seed=11,
                            max_positions=32, layers=1)
    decoder = make_hf_model(kind="llama", heads=2, kv_heads=1, hidden=16, intermediate=24, vocab=VOCAB, seed=12,
                            max_positions=3200, layers=1)
    config = dict(num_latents=width, latent_start_token=START, latent_end_token=END, latent_pad_token=PAD,
                  prompt_prefix=PREFIX, prompt_suffix=SUFFIX, stop_tokens=[STOP])
    model, reference = make_cascade_pair(tmp_path, encoder, decoder, config)
    rng = np.random.default_rng(7)
    latents = rng.standard_normal((1, blocks * width, 16)).astype(np.float32)
    tokens, lengths = model.reconstruct(latents, max_new_tokens=6, blocks=blocks)
    reference_blocks = [torch.from_numpy(latents[:, k * width:(k + 1) * width]) for k in range(blocks)]
    expected, expected_lengths = reference.document_greedy(reference_blocks, 6, stop_tokens=[STOP])
    np.testing.assert_array_equal(tokens[0, :lengths[0]], expected[0, :expected_lengths[0]])
    scores = model.score(latents, tokens, blocks=blocks)
    with torch.no_grad():
        logits = reference.document_answer_logits(reference_blocks, tokens)
    expected_scores = np.take_along_axis(torch.log_softmax(logits.double(), -1).numpy(),
                                         tokens[..., None].astype(np.int64), -1)[..., 0]
    assert max_error(scores["log_probability"], expected_scores) < 1e-4


def test_bad_blocks_and_tasks_are_typed_errors(tmp_path):
    model, _ = build(tmp_path)
    chunks, chunk_mask, answers, answer_mask, task, task_mask = documents(seed=8)
    latents = model.compress(chunks, chunk_mask).reshape(2, 3 * N, -1)
    with pytest.raises(_core.C3ValueError, match="blocks must be at least 1"):
        model.score(latents, answers, answer_mask, blocks=0)
    with pytest.raises(_core.ShapeError, match="blocks"):
        model.score(latents, answers, answer_mask, blocks=2)  # 12 rows are not 2 blocks of N = 4
    with pytest.raises(_core.ShapeError, match="task ids have batch 1"):
        model.score(latents, answers, answer_mask, blocks=3, task=task[:1])
    with pytest.raises(_core.C3ValueError, match="task: token id"):
        model.score(latents, answers, answer_mask, blocks=3, task=task + VOCAB)
    with pytest.raises(_core.C3ValueError, match="task_mask without task"):
        model.score(latents, answers, answer_mask, blocks=3, task_mask=task_mask)
    with pytest.raises(_core.ShapeError, match="each answer reads 3 context rows"):
        model.loss(chunks[:5], chunk_mask[:5], answers, answer_mask, blocks=3)
    with pytest.raises(_core.C3ValueError, match="group is"):
        _core.CascadeTrainer(model).step_weighted([(chunks, chunk_mask, answers, answer_mask, 3)], [1.0])
    no_context, _ = build(tmp_path / "none", method="no_context")
    with pytest.raises(_core.C3ValueError, match="no_context has none"):
        no_context.loss(chunks, chunk_mask, answers, answer_mask, blocks=3)


def test_hostile_block_counts_are_typed_errors_not_crashes(tmp_path):
    """Block counts whose products wrap, and prompts longer than the decoder's positions, are refused before any
    buffer is sized from them."""
    model, _ = build(tmp_path)
    chunks, chunk_mask, answers, answer_mask, task, task_mask = documents(seed=9)
    latents = model.compress(chunks, chunk_mask).reshape(2, 3 * N, -1)
    for blocks in (2 ** 62 + 1, 2 ** 62, 2 ** 40):
        with pytest.raises((_core.C3ValueError, _core.ShapeError)):
            model.loss(np.tile(chunks, (2, 1))[:4], None, answers, None, blocks=blocks)
        with pytest.raises((_core.C3ValueError, _core.ShapeError)):
            model.score(np.zeros((2, 0, latents.shape[2]), np.float32), answers, blocks=blocks)
        with pytest.raises((_core.C3ValueError, _core.ShapeError)):
            _core.CascadeTrainer(model).step_weighted([(chunks, None, answers, None, blocks, None, None)], [1.0])
    with pytest.raises(_core.C3ValueError, match="exceeds the decoder's 64 positions"):
        model.score(np.zeros((2, 11 * N, latents.shape[2]), np.float32), answers, blocks=11)  # 3 + 66 + 2 > 64
    with pytest.raises(_core.C3ValueError, match="exceeds the decoder's 64 positions"):
        model.reconstruct(np.zeros((1, 11 * N, latents.shape[2]), np.float32), max_new_tokens=2, blocks=11)
    with pytest.raises(_core.C3ValueError, match="blocks must be between 1 and"):
        model.prompt_length(N, 2 ** 62)
    assert model.prompt_length(N, 3) == len(PREFIX) + 3 * (N + 2) + len(SUFFIX)
    with pytest.raises(_core.C3ValueError, match="a group's blocks must be an integer at least 1"):
        _core.CascadeTrainer(model).step_weighted([(chunks, None, answers, None, True, None, None)], [1.0])
    with pytest.raises(_core.ShapeError, match="at least one token per row"):
        model.score(latents, answers, blocks=3, task=np.zeros((2, 0), np.int32))
    no_context, _ = build(tmp_path / "none", method="no_context")
    with pytest.raises(_core.C3ValueError, match="reads one block"):
        no_context.score(np.zeros((2, 0, 48), np.float32), answers, blocks=5)
