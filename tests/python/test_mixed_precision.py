"""bf16 mixed-precision training (compute_dtype="bfloat16") against float32 training of the same model on the same
batches, in one process: the loss curves and the held-out losses must agree within what bf16 rounding explains.

bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 0.002). Each step's products round their weights and inputs,
so the two runs drift apart slowly, as two float32 runs with different summation orders would, only more. The
tolerances below are 2.3x-3x the differences measured on these runs (language model: mean |dloss| over the last
50 steps 0.010, held-out difference 0.020; cascade, batches of 8 lines: 0.042 between the last-50 means, 0.064
between the held-out losses of 16 lines) and far below what a broken bf16 path gives (a wrong or transposed weight
copy stops learning: the loss stays near ln 256 = 5.5)."""
import numpy as np
import pytest

import c3
from conftest import two_threads
from test_training import corpus_bytes, tiny_byte_model


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch (imported with test_training) shares the OpenMP runtime: its second thread would only spin-wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_language_model_tracks_float32_for_200_steps():
    """Mean |loss(bf16) - loss(float32)| over the last 50 of 200 steps < 0.03; held-out losses within 0.05 of each
    other, and the bf16 one below 2.3 (uniform bytes: 5.55; unigram statistics: about 3.3)."""
    tokens = corpus_bytes()
    split = int(len(tokens) * 0.9)
    evaluation = next(c3.TokenBatches(tokens[split:], batch_size=32, length=64, seed=123))
    curves, held_out = {}, {}
    for dtype in ("float32", "bfloat16"):
        model = tiny_byte_model()
        trainer = c3.LanguageModelTrainer(model, learning_rate=3e-3, warmup_steps=20, total_steps=200,
                                          weight_decay=0.01, compute_dtype=dtype)
        with two_threads():  # data parallel: both shares read the same bf16 copies
            reports = c3.fit(trainer, c3.TokenBatches(tokens[:split], batch_size=16, length=64, seed=0), steps=200,
                             progress=False)
        assert all(r["data_parallel_shares"] == 2 for r in reports)
        curves[dtype] = np.array([r["loss"] for r in reports])
        held_out[dtype] = trainer.evaluate(evaluation)
    difference = np.abs(curves["bfloat16"] - curves["float32"])
    assert difference[0] > 0, "the first step's loss should already differ: the bf16 path did not run"
    assert difference[-50:].mean() < 0.03, f"mean |dloss| over the last 50 steps: {difference[-50:].mean():.4f}"
    assert abs(held_out["bfloat16"] - held_out["float32"]) < 0.05, held_out
    assert held_out["bfloat16"] < 2.3, held_out


def text_lines():
    import pydoc_data.topics
    text = "\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))
    return [line.strip() for line in text.split("\n") if 20 <= len(line.strip()) <= 60]


def test_cascade_tracks_float32_for_200_steps():
    """A byte-level cascade (d64 encoder and decoder, 8 latents) reconstructing lines of text through
    Cascade.trainer(compute_dtype=...): the means of the last 50 step losses within 0.1 of each other, and the
    held-out reconstruction losses within 0.15."""
    lines = text_lines()
    train, held_out_lines = lines[:-16], lines[-16:]
    shape = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                 max_position_embeddings=128)
    curves, held_out = {}, {}
    for dtype in ("float32", "bfloat16"):
        cascade = c3.Cascade.new(shape, shape, 8, seed=0)
        trainer = cascade.trainer(learning_rate=3e-3, warmup_steps=10, total_steps=200, compute_dtype=dtype)
        rng = np.random.default_rng(1)
        losses = []
        with two_threads():
            for _ in range(200):
                report = cascade.train_step(trainer, [train[i] for i in rng.integers(0, len(train), size=8)])
                assert report["data_parallel_shares"] == 2
                losses.append(report["loss"])
        curves[dtype] = np.array(losses)
        contexts, context_mask = cascade.context_batch(held_out_lines)
        answers, answer_mask = cascade.answer_batch(held_out_lines)
        held_out[dtype] = cascade.model.loss(contexts, context_mask, answers, answer_mask)
    assert curves["bfloat16"][0] != curves["float32"][0], "the bf16 path did not run"
    last = abs(curves["bfloat16"][-50:].mean() - curves["float32"][-50:].mean())
    assert last < 0.1, f"last-50 means differ by {last:.4f}"
    assert abs(held_out["bfloat16"] - held_out["float32"]) < 0.15, held_out
    assert held_out["bfloat16"] < curves["bfloat16"][:10].mean() - 1.0, "the bf16 cascade did not learn"
