"""The embedded default corpus: CPython's own documentation topics (`pydoc_data.topics`), which ship with every
Python installation. Licence: Python Software Foundation License (the Python documentation's licence).

Passages are cut at byte (or token) boundaries and split into train and held-out sets by passage, with a seed;
held-out passages are never trained on.
"""
from __future__ import annotations

import numpy as np

LICENCE = ("CPython's pydoc_data.topics (the Python documentation), Python Software Foundation License; "
           "shipped with Python itself")


def default_text() -> str:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def passages(length: int, text: str | None = None, tokenizer=None, stride: int | None = None):
    """Consecutive passages of `length` units: bytes of the UTF-8 text (as strings that may end mid-character,
    decoded leniently) when no tokenizer is given, else tokens (as id arrays)."""
    text = text if text is not None else default_text()
    if tokenizer is None:
        data = text.encode("utf-8")
        step = stride or length
        return [data[i:i + length].decode("utf-8", errors="ignore") for i in range(0, len(data) - length, step)]
    ids = np.asarray(tokenizer.encode(text), dtype=np.int32)
    step = stride or length
    return [ids[i:i + length] for i in range(0, len(ids) - length, step)]


def split(items, held_out_fraction: float = 0.1, seed: int = 0):
    """(train, held_out): a seeded split by passage. Held-out passages are contiguous blocks of the text, so
    that overlapping windows of the same sentences do not leak into training."""
    count = len(items)
    blocks = max(10, count // 50)
    block_of = np.arange(count) * blocks // max(count, 1)
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(blocks)[: max(1, int(round(blocks * held_out_fraction)))].tolist())
    train = [item for item, block in zip(items, block_of) if block not in chosen]
    held_out = [item for item, block in zip(items, block_of) if block in chosen]
    return train, held_out
