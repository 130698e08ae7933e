"""The embedded default corpus: CPython's own documentation topics (`pydoc_data.topics`), which ship with every
Python installation. Licence: Python Software Foundation License (the Python documentation's licence).

Passages are cut at byte (or token) boundaries and split into train and held-out sets by passage, with a seed;
held-out passages are never trained on.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core

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


# A held-out design by document: the documents (here the topics of pydoc_data.topics) are split into train, dev
# and test sets with a seed, and held-out passages are cut inside single documents and kept only when none of their
# windows of 32 bytes occurs verbatim in the training text (the topics repeat grammar rules and boilerplate).


class HeldOutPassages(NamedTuple):
    """heldout_passages' result; unpacks as (passages, document_ids, offsets, report)."""

    passages: list
    document_ids: np.ndarray
    offsets: np.ndarray
    report: dict


def documents(text_source=None) -> list:
    """[(name, text)]: the corpus as documents. None: the topics of CPython's pydoc_data.topics in sorted order
    (the same texts, in the same order, that default_text joins); a mapping: its items sorted by name; a str: one
    document named "text"; any other iterable: its (name, text) pairs as given. Names must be unique."""
    if text_source is None:
        import pydoc_data.topics

        text_source = pydoc_data.topics.topics
    if isinstance(text_source, str):
        items = [("text", text_source)]
    elif hasattr(text_source, "items"):
        items = sorted((str(name), text) for name, text in text_source.items())
    else:
        items = [(str(name), text) for name, text in text_source]
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise _core.C3ValueError("documents: document names must be unique")
    for name, text in items:
        if not isinstance(text, str):
            raise _core.C3ValueError(f"documents: document {name!r} is not a str")
    return items


def document_splits(documents, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict:
    """dict(train=[...], dev=[...], test=[...]): the (name, text) documents split by document with a seed.

    Every document lands in exactly one split, each split keeps the documents' given order, and the sizes are
    round(n * fraction) for train and dev with the rest in test; a nonzero fraction gets at least one document when
    there are enough documents. The same documents and seed give the same split."""
    items = list(documents)
    fractions = tuple(float(value) for value in fractions)
    if len(fractions) != 3 or any(value < 0 for value in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise _core.C3ValueError(f"fractions must be three non-negative numbers that sum to 1, got {fractions}")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise _core.C3ValueError("document_splits: document names must be unique")
    count = len(items)
    sizes = [int(round(count * fraction)) for fraction in fractions[:2]]
    # A split asked for gets a document when that leaves each other split asked for at least one.
    wanted = sum(1 for fraction in fractions if fraction > 0)
    for index in range(2):
        if fractions[index] > 0 and sizes[index] == 0 and count >= wanted:
            sizes[index] = 1
    while sizes[0] + sizes[1] > count or (fractions[2] > 0 and count >= wanted and sizes[0] + sizes[1] >= count):
        largest = 0 if sizes[0] >= sizes[1] else 1
        sizes[largest] -= 1
    order = np.random.default_rng(seed).permutation(count)
    parts = np.split(order, [sizes[0], sizes[0] + sizes[1]])
    return {name: [items[index] for index in sorted(part.tolist())]
            for name, part in zip(("train", "dev", "test"), parts)}


def heldout_passages(documents, train_text_bytes, length: int, count: int, seed: int = 0, window: int = 32):
    """Held-out passages of `length` bytes that share no `window`-byte stretch with the training text.

    documents: the held-out (name, text) documents (for example document_splits(...)["test"]); train_text_bytes:
    the training text as bytes (or a str, or a leakage.WindowIndex already built over it, whose window is used).
    Each document's UTF-8 bytes are cut into consecutive passages [0, length), [length, 2 * length), ... (so no two
    passages share a byte and none crosses a document boundary; a shorter tail is not used); every passage any of
    whose windows of `window` bytes occurs verbatim in the training text is dropped; `count` of the rest are drawn
    with the seed and returned in document order. Fewer than `count` clean passages: all of them are returned and
    the report says so; none: C3ValueError.

    Returns HeldOutPassages(passages (bytes), document_ids (index into `documents`, for block_bootstrap), offsets
    (byte offset of each passage in its document), report (dict: documents, length, window, available, leaked,
    clean, requested, returned, short (bool), note))."""
    from .leakage import WindowIndex

    length, count = int(length), int(count)
    if length < 1 or count < 1:
        raise _core.C3ValueError(f"length and count must be at least 1, got {length} and {count}")
    index = train_text_bytes if isinstance(train_text_bytes, WindowIndex) else WindowIndex(train_text_bytes, window)
    window = index.window
    if length < window:
        raise _core.C3ValueError(f"passages of {length} bytes hold no window of {window} bytes: pass a window of "
                                   f"at most {length}")
    items = list(documents)
    candidates = []  # (document id, offset, bytes) of every clean passage
    available = 0
    for document_id, (_, text) in enumerate(items):
        data = text.encode("utf-8")
        pieces = len(data) // length
        if pieces == 0:
            continue
        available += pieces
        # Window i starts at byte i; passage p holds windows p * length ... p * length + length - window.
        found = index.matches(data[:pieces * length])
        leaked_before = np.concatenate([[0], np.cumsum(found, dtype=np.int64)])
        starts = np.arange(pieces, dtype=np.int64) * length
        leaked = leaked_before[starts + length - window + 1] - leaked_before[starts]
        for offset in starts[leaked == 0].tolist():
            candidates.append((document_id, offset, data[offset:offset + length]))
    return _choose_passages(candidates, available, len(items), length, "bytes", window, count, seed)


def _choose_passages(candidates, available: int, documents: int, length: int, unit: str, window: int, count: int,
                     seed: int) -> HeldOutPassages:
    """`count` of the clean candidates (document id, offset, passage), drawn with the seed, in document order, with
    the report of heldout_passages."""
    clean = len(candidates)
    if clean == 0:
        raise _core.C3ValueError(f"no held-out passage of {length} {unit} is free of {window}-byte overlaps with "
                                 f"the training text ({available} cut, all leaked)")
    chosen = sorted(np.random.default_rng(seed).permutation(clean)[:count].tolist())
    short = clean < count
    report = dict(documents=documents, length=length, window=window, available=available,
                  leaked=available - clean, clean=clean, requested=count, returned=len(chosen), short=short,
                  note=(f"only {clean} clean passages of {length} {unit} exist; {count} were requested" if short
                        else ""))
    if unit != "bytes":
        report["unit"] = unit
    return HeldOutPassages(passages=[candidates[i][2] for i in chosen],
                           document_ids=np.array([candidates[i][0] for i in chosen], dtype=np.int64),
                           offsets=np.array([candidates[i][1] for i in chosen], dtype=np.int64),
                           report=report)


def heldout_token_passages(documents, train_text_bytes, tokenizer, length: int, count: int, seed: int = 0,
                           window: int = 32):
    """heldout_passages for a tokenizer: passages of `length` tokens, cut consecutively from each held-out
    document's token ids (no two share a token, none crosses a document), a passage dropped when any `window`-byte
    stretch of its decoded text occurs verbatim in the training text; `count` of the rest drawn with the seed, in
    document order.

    Returns HeldOutPassages whose passages are int32 token-id arrays and whose offsets count tokens; the report is
    heldout_passages' (its length in tokens). Fewer than `count` clean passages: all of them, and the report says
    so; none: C3ValueError."""
    from .leakage import WindowIndex

    length, count = int(length), int(count)
    if length < 1 or count < 1:
        raise _core.C3ValueError(f"length and count must be at least 1, got {length} and {count}")
    index = train_text_bytes if isinstance(train_text_bytes, WindowIndex) else WindowIndex(train_text_bytes, window)
    items = list(documents)
    candidates = []  # (document id, token offset, ids) of every clean passage
    available = 0
    for document_id, (_, text) in enumerate(items):
        ids = np.asarray(tokenizer.encode(text), dtype=np.int32)
        pieces = len(ids) // length
        available += pieces
        for offset in range(0, pieces * length, length):
            piece = ids[offset:offset + length]
            if not index.contains(tokenizer.decode(piece).encode("utf-8")):
                candidates.append((document_id, offset, piece))
    return _choose_passages(candidates, available, len(items), length, "tokens", index.window, count, seed)
