"""Verbatim-overlap checks between evaluation passages and a training text.

A passage counts as leaked when any `window` consecutive bytes of it (32 by default) occur verbatim anywhere in
the training text. WindowIndex hashes every window of the training text once (a polynomial hash mod 2^64,
computed with NumPy), keeps the hashes sorted together with the position of each window, and answers a query by
looking up the passage's window hashes and then comparing the actual bytes at each hit, so a hash collision can
cost time but never reports an overlap that is not there.
"""
from __future__ import annotations

import numpy as np

from . import _core

# An odd multiplier (so that the hash of a window depends on every byte in it) with well-mixed bits.
_BASE = np.uint64(0x9E3779B97F4A7C15)
# Windows hashed per step: the step's arrays (256 KB each) stay in cache over the window's passes.
_CHUNK = 1 << 15


def _as_bytes(data, name: str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        return data.tobytes()
    raise _core.C3ValueError(f"{name} must be bytes (or a str, read as UTF-8), got {type(data).__name__}")


def _window_hashes(data: np.ndarray, window: int) -> np.ndarray:
    """The hash of every window of `window` bytes of data (uint8), in order: sum_k data[i + k] * BASE^(window-1-k)
    mod 2^64 by Horner's rule over the window's bytes, vectorised over all windows (uint64 arithmetic wraps), then
    mixed."""
    count = data.size - window + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    hashes = np.empty(count, dtype=np.uint64)
    for start in range(0, count, _CHUNK):
        stop = min(count, start + _CHUNK)
        block = data[start:stop + window - 1].astype(np.uint64)
        accumulator = np.zeros(stop - start, dtype=np.uint64)
        for offset in range(window):
            accumulator *= _BASE
            accumulator += block[offset:offset + stop - start]
        hashes[start:stop] = accumulator
    # SplitMix64's finaliser, a bijection, spreads every byte over the high bits, which WindowIndex keeps (the last
    # byte of a window alone only moves the low bits of the polynomial).
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes


class WindowIndex:
    """Every window of `window` bytes of a training text, for fast verbatim-overlap queries.

    Each window is kept as one sorted uint64 key: the high bits of its hash with its position in the low bits (as
    many bits as positions need: 24 for a 10 MB text, leaving a 40-bit hash). Building it for a 10 MB text takes a
    second or two and holds 8 bytes per training byte plus the text itself. Fewer hash bits only mean more
    candidates to compare, never a wrong answer."""

    def __init__(self, train_bytes, window: int = 32):
        window = int(window)
        if window < 1:
            raise _core.C3ValueError(f"window must be at least 1 byte, got {window}")
        self.window = window
        self._text = np.frombuffer(_as_bytes(train_bytes, "train_bytes"), dtype=np.uint8)
        keys = _window_hashes(self._text, window)
        self._position_bits = np.uint64(max(1, (keys.size - 1).bit_length()))
        self._position_mask = np.uint64((1 << int(self._position_bits)) - 1)
        keys &= ~self._position_mask
        keys |= np.arange(keys.size, dtype=np.uint64)
        keys.sort()
        self._keys = keys

    def __len__(self) -> int:
        """The number of windows indexed (training bytes - window + 1, or 0 for a shorter text)."""
        return int(self._keys.size)

    def matches(self, passage_bytes) -> np.ndarray:
        """One bool per window of the passage (len - window + 1 of them; none for a shorter passage): whether
        those exact bytes occur somewhere in the training text. Every hit of the hash is confirmed on the bytes."""
        passage = np.frombuffer(_as_bytes(passage_bytes, "passage_bytes"), dtype=np.uint8)
        queries = _window_hashes(passage, self.window) & ~self._position_mask
        found = np.zeros(queries.size, dtype=bool)
        if queries.size == 0 or self._keys.size == 0:
            return found
        first = np.searchsorted(self._keys, queries, side="left")
        last = np.searchsorted(self._keys, queries | self._position_mask, side="right")
        offsets = np.arange(self.window)
        # Round r compares the r-th training window with the same hash for every query not yet confirmed. Real text
        # repeats windows (the first candidate then matches) and hash collisions are rare, so this ends after a
        # round or two, with memory bounded by the passage.
        pending = np.flatnonzero(last > first)
        candidate = first[pending]
        while pending.size:
            positions = (self._keys[candidate] & self._position_mask).astype(np.int64)
            same = np.all(self._text[positions[:, None] + offsets] == passage[pending[:, None] + offsets], axis=1)
            found[pending[same]] = True
            keep = ~same & (candidate + 1 < last[pending])
            pending = pending[keep]
            candidate = candidate[keep] + 1
        return found

    def contains(self, passage_bytes) -> bool:
        """Whether any window of `window` bytes of the passage occurs verbatim in the training text (so does any
        longer stretch). A passage shorter than the window has no window and gives False."""
        return bool(self.matches(passage_bytes).any())

    def leaked_fraction(self, passage_bytes) -> float:
        """The share of the passage's windows that occur verbatim in the training text (0.0 for a passage
        shorter than the window)."""
        found = self.matches(passage_bytes)
        return float(found.mean()) if found.size else 0.0
