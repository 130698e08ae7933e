"""Training against PyTorch autograd and torch.optim.AdamW on a tiny Qwen2 built by transformers."""
import numpy as np
import pytest
import torch

import c3
from c3 import _core
from conftest import make_hf_model, padded_batch, positions_from_mask, two_threads


def torch_targets(ids, mask):
    """transformers' causal-LM labels: ids with padding ignored (it shifts them itself)."""
    return torch.from_numpy(np.where(mask == 1, ids, -100))


def torch_loss(reference, ids, mask):
    positions = torch.from_numpy(positions_from_mask(mask))
    out = reference(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), position_ids=positions,
                    labels=torch_targets(ids, mask))
    return out.loss


@pytest.mark.parametrize("kind,tied", [("qwen2", False), ("qwen2", True), ("llama", False)])
def test_loss_and_every_gradient_match_autograd(tmp_path, kind, tied):
    reference = make_hf_model(kind=kind, tied=tied, heads=4, kv_heads=2, bias=True)
    reference.save_pretrained(tmp_path)
    model = c3.load_model(tmp_path)
    ids, mask = padded_batch(np.random.default_rng(0), batch=3, max_length=11, vocab=97)
    loss = torch_loss(reference, ids, mask)
    loss.backward()
    c3_loss = _core.language_model_gradients(model, ids, attention_mask=mask)
    assert abs(c3_loss - loss.item()) < 1e-5
    gradients = model.gradients()
    checked = 0
    for name, parameter in reference.named_parameters():
        expected = parameter.grad.numpy()
        error = np.linalg.norm(gradients[name] - expected) / max(np.linalg.norm(expected), 1e-12)
        assert error < 1e-4, f"{name}: normalised gradient error {error:.2e}"
        checked += 1
    assert checked == len(model.parameters())


@pytest.mark.parametrize("sequences_per_pass", [0, 1])
def test_ten_adamw_steps_match_torch(tmp_path, sequences_per_pass):
    """Two threads, each with 2 of the 4 sequences: in one pass (automatic for these lengths) or in two."""
    reference = make_hf_model(kind="qwen2", tied=False)
    reference.save_pretrained(tmp_path)
    model = c3.load_model(tmp_path)
    hyper = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    decay = [p for n, p in reference.named_parameters() if not (n.endswith("bias") or "norm" in n)]
    no_decay = [p for n, p in reference.named_parameters() if n.endswith("bias") or "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], **hyper)
    trainer = c3.LanguageModelTrainer(model, learning_rate=hyper["lr"], beta1=0.9, beta2=0.95, epsilon=1e-8,
                                      weight_decay=0.1, max_grad_norm=1.0, warmup_steps=0, total_steps=10**9,
                                      sequences_per_pass=sequences_per_pass)
    rng = np.random.default_rng(5)
    for step in range(10):
        ids, mask = padded_batch(rng, batch=4, max_length=12, vocab=97)
        optimizer.zero_grad()
        loss = torch_loss(reference, ids, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        optimizer.step()
        with two_threads():  # set after torch's work: torch and c3 share the OpenMP runtime
            report = trainer.step(ids, attention_mask=mask)
        assert report["data_parallel_shares"] == 2
        assert abs(report["loss"] - loss.item()) < 1e-4, f"step {step}: {report['loss']} vs {loss.item()}"
    for name, parameter in reference.named_parameters():
        np.testing.assert_allclose(model.parameters()[name], parameter.detach().numpy(), atol=2e-4, err_msg=name)


def corpus_bytes():
    import pydoc_data.topics
    text = "\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)


def tiny_byte_model(seed=0):
    return c3.Transformer(dict(vocab_size=256, hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4,
                               num_kv_heads=2, max_position_embeddings=128, model_type="llama", attention_bias=False,
                               tie_word_embeddings=True), seed=seed)


def test_held_out_loss_falls_on_real_text():
    tokens = corpus_bytes()
    split = int(len(tokens) * 0.9)
    train, held_out = tokens[:split], tokens[split:]
    model = tiny_byte_model()
    trainer = c3.LanguageModelTrainer(model, learning_rate=3e-3, warmup_steps=20, total_steps=300, weight_decay=0.01)
    evaluation = next(c3.TokenBatches(held_out, batch_size=32, length=64, seed=123))
    before = trainer.evaluate(evaluation)
    c3.fit(trainer, c3.TokenBatches(train, batch_size=16, length=64, seed=0), steps=300, progress=False)
    after = trainer.evaluate(evaluation)
    # Uniform over bytes is ln 256 = 5.55 nats; unigram statistics alone give about 3.3.
    assert before > 5.0
    assert after < 2.8, f"held-out loss went from {before:.3f} to {after:.3f}"


def test_same_seed_gives_bit_identical_losses():
    def run():
        model = tiny_byte_model(seed=3)
        trainer = c3.LanguageModelTrainer(model, learning_rate=1e-2)
        return [r["loss"] for r in c3.fit(trainer, c3.TokenBatches(corpus_bytes()[:20000], 8, 32, seed=9), steps=8,
                                          progress=False)]
    assert run() == run()


def test_checkpoint_resume_continues_exactly(tmp_path):
    tokens = corpus_bytes()[:40000]
    model = tiny_byte_model(seed=1)
    trainer = c3.LanguageModelTrainer(model, learning_rate=1e-2, warmup_steps=2, total_steps=8)
    batches = c3.TokenBatches(tokens, 8, 32, seed=4)
    straight = [r["loss"] for r in c3.fit(trainer, batches, steps=8, progress=False)]

    model = tiny_byte_model(seed=1)
    trainer = c3.LanguageModelTrainer(model, learning_rate=1e-2, warmup_steps=2, total_steps=8)
    batches = c3.TokenBatches(tokens, 8, 32, seed=4)
    first = [r["loss"] for r in c3.fit(trainer, batches, steps=3, progress=False)]
    path = str(tmp_path / "checkpoint.safetensors")
    c3.save_checkpoint(path, model, trainer, extra={"data": batches.state()})

    resumed_model = tiny_byte_model(seed=99)  # different start: everything must come from the file
    resumed_trainer = c3.LanguageModelTrainer(resumed_model, learning_rate=1e-2, warmup_steps=2, total_steps=8)
    extra = c3.load_checkpoint(path, resumed_model, resumed_trainer)
    resumed_batches = c3.TokenBatches(tokens, 8, 32, seed=0)
    resumed_batches.restore(extra["data"])
    rest = [r["loss"] for r in c3.fit(resumed_trainer, resumed_batches, steps=5, progress=False)]
    assert first + rest == straight


def test_frozen_embeddings_get_no_update():
    model = tiny_byte_model()
    c3.set_trainable(model, "model.embed_tokens", False)
    before = model.parameters()["model.embed_tokens.weight"].copy()
    trainer = c3.LanguageModelTrainer(model, learning_rate=1e-2, weight_decay=0.1)
    c3.fit(trainer, c3.TokenBatches(corpus_bytes()[:5000], 4, 16), steps=3, progress=False)
    np.testing.assert_array_equal(model.parameters()["model.embed_tokens.weight"], before)
    with pytest.raises(c3.C3ValueError, match="no parameter name starts"):
        c3.set_trainable(model, "model.nothing", False)
