"""Seeded, resumable batches of token ids: the same seed gives the same order, and a saved position resumes it."""
from __future__ import annotations

import numpy as np


class TokenBatches:
    """Random windows of `length + 1` tokens from a 1-d token array, in a seeded order.

    Each epoch draws a fresh permutation of window starts from ``seed + epoch``. ``state()`` and ``restore()``
    carry the epoch and position, so an interrupted run continues with exactly the batches it would have seen.
    """

    def __init__(self, tokens, batch_size: int, length: int, seed: int = 0, stride: int | None = None):
        self.tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        if self.tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-d, got shape {self.tokens.shape}")
        if len(self.tokens) < length + 1:
            raise ValueError(f"need at least {length + 1} tokens for windows of {length}, got {len(self.tokens)}")
        self.batch_size, self.length, self.seed = int(batch_size), int(length), int(seed)
        self.starts = np.arange(0, len(self.tokens) - length, stride or length)
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self):
        return np.random.default_rng(self.seed + self.epoch).permutation(self.starts)

    def state(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def restore(self, state: dict) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = self._permutation()

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        """[batch_size, length + 1] int32: inputs are [:, :-1] shifted against targets [:, 1:]."""
        rows = []
        while len(rows) < self.batch_size:
            if self.position >= len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            start = self._order[self.position]
            rows.append(self.tokens[start:start + self.length + 1])
            self.position += 1
        return np.stack(rows)
