"""Mixed-length training batches: each step draws a ratio among those the curriculum has unlocked and a batch of
contexts of ratio x N tokens, about the same number of context tokens at every ratio."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .. import _core

BALANCES = ("bytes", "passages", "longest")


def check_balance(balance: str, ratios: Optional[Sequence[int]] = None) -> str:
    """`balance` if it is one of BALANCES or ratio weights "w1:w2:...": one positive number per ratio (of `ratios`,
    when given), in increasing ratio order; else a C3ValueError naming the forms."""
    if balance in BALANCES or ratio_weights(balance, ratios) is not None:
        return balance
    raise _core.C3ValueError(f"balance must be one of {', '.join(BALANCES)} or ratio weights such as 1:2:4 (one "
                             f"positive number per ratio, in increasing ratio order), got {balance!r}")


def check_fraction(name: str, value: float) -> float:
    """`value` as a float if it is a number in [0, 1] (a curriculum, a loss weight, a learning-rate floor); else a
    C3ValueError naming `name`. NaN is refused: no comparison holds for it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise _core.C3ValueError(f"{name} must be in [0, 1], got {value!r}")
    return number


def ratio_weights(balance: str, ratios: Optional[Sequence[int]] = None) -> Optional[list]:
    """The weights of a "w1:w2:..." balance as floats, or None when it is not one (or not one weight per ratio)."""
    if not isinstance(balance, str):
        return None
    try:
        weights = [float(part) for part in balance.split(":")]
    except ValueError:
        return None
    if not all(math.isfinite(w) and w > 0 for w in weights):
        return None
    if ratios is not None and len(weights) != len(ratios):
        return None
    return weights


class MixedBatches:
    """Training batches of mixed ratio from the training regions: each draw picks a ratio among those unlocked at
    that step (see the module's notes on the curriculum), then batch_tokens / (ratio * N) windows (at least one)
    of ratio * N + continuation tokens. The generator's state travels in the checkpoint.

    balance: how the ratio is picked among the unlocked ones. "bytes": each equally likely, so each ratio trains on
    the same number of context bytes (and a long ratio on fewer passages). "passages": each with probability in
    proportion to the ratio, so each ratio trains on about the same number of passages (the long ratios, the
    slowest to learn, get more of the steps). "longest": as "passages", with the weight of the longest ratio of
    all doubled once it is unlocked: it is the slowest to learn, and the shorter ones, once read, need only to be
    kept (at 2x, 4x and 8x the draws are 1 : 2 : 8). "w1:w2:...": one weight per ratio in increasing order, each
    unlocked ratio drawn in proportion to its weight (to give the most steps to the ratios that must converge)."""

    def __init__(self, regions, ratios, latents, batch_tokens, continuation, seed, curriculum_steps=0,
                 balance="bytes"):
        ordered = sorted(ratios)
        self.balance = check_balance(balance, ordered)
        # Each ratio's draw weight for "passages", "longest" and given weights ("bytes" draws uniformly).
        self.ratio_weight = dict(zip(ordered, ratio_weights(self.balance, ordered) or ordered))
        self.regions = [r for r in regions if len(r) > max(ratios) * latents + continuation]
        if not self.regions:
            raise _core.C3ValueError("the training text is too short for the longest ratio")
        self.weights = np.array([len(r) for r in self.regions], np.float64)
        self.weights /= self.weights.sum()
        self.ratios, self.latents, self.continuation = sorted(ratios), latents, continuation
        self.batch_tokens, self.curriculum_steps = batch_tokens, curriculum_steps
        self.rng = np.random.default_rng(seed)

    def unlocked(self, step: int) -> list:
        """The ratios drawn from at `step` (0-based): the k-th smallest from step k / R * curriculum_steps on."""
        count = len(self.ratios)
        return [r for k, r in enumerate(self.ratios) if k * self.curriculum_steps <= step * count]

    def batch_for(self, ratio: int) -> int:
        return max(1, self.batch_tokens // (ratio * self.latents))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def draw(self, step: int = 0):
        """(contexts [B, r * N], continuations [B, C]) as int32 arrays, for 0-based `step`."""
        unlocked = self.unlocked(step)
        if self.balance == "bytes":
            ratio = unlocked[int(self.rng.integers(len(unlocked)))]
        else:
            weights = np.array([self.ratio_weight[r] for r in unlocked], np.float64)
            if self.balance == "longest" and unlocked[-1] == self.ratios[-1]:
                weights[-1] *= 2.0
            ratio = unlocked[int(self.rng.choice(len(unlocked), p=weights / weights.sum()))]
        length = ratio * self.latents
        contexts, continuations = [], []
        for region_index in self.rng.choice(len(self.regions), size=self.batch_for(ratio), p=self.weights):
            region = self.regions[region_index]
            start = int(self.rng.integers(0, len(region) - length - self.continuation + 1))
            contexts.append(region[start:start + length])
            continuations.append(region[start + length:start + length + self.continuation])
        return np.stack(contexts), np.stack(continuations)


def ratio_probabilities(ratios, step: int, curriculum_steps: int, balance: str = "bytes") -> dict:
    """{ratio: probability that MixedBatches.draw picks it at 0-based `step`}: the same unlocking and balance rules
    as MixedBatches (its draw is not changed, so recorded runs keep their data order)."""
    ordered = sorted(ratios)
    balance = check_balance(balance, ordered)
    weight = dict(zip(ordered, ratio_weights(balance, ordered) or ordered))
    unlocked = [r for k, r in enumerate(ordered) if k * curriculum_steps <= step * len(ordered)]
    if balance == "bytes":
        weights = np.ones(len(unlocked))
    else:
        weights = np.array([weight[r] for r in unlocked], np.float64)
        if balance == "longest" and unlocked[-1] == ordered[-1]:
            weights[-1] *= 2.0
    return dict(zip(unlocked, (weights / weights.sum()).tolist()))
