"""Shared fixtures: tiny random Hugging Face models, built and saved offline by transformers itself."""
import contextlib
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

torch.manual_seed(0)
# One torch thread: torch's OpenMP pool and c3's would otherwise spin against each other on two cores.
torch.set_num_threads(1)


@contextlib.contextmanager
def two_threads():
    """Two c3 threads, so that micro-batches of 2 or more sequences take the data-parallel path. Set right before
    c3 trains: torch shares the OpenMP runtime, and its first parallel work on a thread sets that thread's count
    to torch's own (1 in these tests)."""
    import c3

    before = c3.num_threads()
    c3.set_num_threads(2)
    try:
        assert c3.num_threads() == 2
        yield
    finally:
        c3.set_num_threads(before)


# Tiny configurations that still exercise every feature: GQA, tied/untied heads, QKV bias on and off.
TINY_CONFIGS = {
    "qwen2-gqa-bias-untied": dict(kind="qwen2", heads=4, kv_heads=2, tied=False),
    "qwen2-mha-tied": dict(kind="qwen2", heads=4, kv_heads=4, tied=True),
    "llama-gqa-untied": dict(kind="llama", heads=4, kv_heads=1, tied=False),
    "llama-gqa-bias-tied": dict(kind="llama", heads=8, kv_heads=2, tied=True, bias=True),
}


def make_hf_model(kind="qwen2", heads=4, kv_heads=2, tied=False, bias=False, hidden=64, layers=2, vocab=97,
                  intermediate=96, rope_theta=10000.0, seed=0, max_positions=256):
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
                  tie_word_embeddings=tied, rms_norm_eps=1e-6, rope_theta=rope_theta, initializer_range=0.2)
    if kind == "qwen2":
        config = transformers.Qwen2Config(**common)
        model = transformers.Qwen2ForCausalLM(config)
    else:
        config = transformers.LlamaConfig(attention_bias=bias, **common)
        model = transformers.LlamaForCausalLM(config)
    model.eval()
    # Random norms and biases too, so that a swapped or skipped one shows.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif name.endswith(".bias"):
                parameter.copy_(0.1 * torch.randn_like(parameter))
    return model


@pytest.fixture(params=sorted(TINY_CONFIGS))
def hf_model_dir(request, tmp_path_factory):
    """(directory, transformers model) for each tiny configuration."""
    model = make_hf_model(**TINY_CONFIGS[request.param])
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return str(directory), model


def padded_batch(rng, batch, max_length, vocab, side="right"):
    """Random ids with unequal lengths: (ids [B, T] int64, mask [B, T] int64)."""
    lengths = rng.integers(max_length // 2, max_length + 1, size=batch)
    lengths[0] = max_length
    ids = rng.integers(0, vocab, size=(batch, max_length))
    mask = np.zeros((batch, max_length), dtype=np.int64)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, max_length - length:] = 1
    ids = np.where(mask == 1, ids, 0)
    return ids.astype(np.int64), mask


def positions_from_mask(mask):
    """Position ids that count the real tokens before each one, as c3 uses by default."""
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0) * mask
