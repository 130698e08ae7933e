"""Uncertainty for c3's measurements: intervals across training seeds and across held-out passages.

Two sources of variation, two tools:

- seeds: a run repeated with different seeds gives one number per seed; `seed_interval` is the mean with a
  two-sided Student t-interval, and `paired_difference` compares two settings run on the same seeds.
- passages: one model measured on many passages cut from a few documents; passages of one document are
  correlated, so `block_bootstrap` resamples whole documents (blocks), not passages.
"""
from __future__ import annotations

import math

import numpy as np

from . import _core


def _finite_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise _core.C3ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise _core.C3ValueError(f"{name} holds NaN or infinite values")
    return array


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise _core.C3ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def seed_interval(values, confidence: float = 0.95) -> dict:
    """Mean across seeds with a two-sided t-interval (Student t with n - 1 degrees of freedom).

    Returns dict(mean, low, high, sd, n, half_width, confidence); sd uses ddof=1 and half_width is
    t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n). With a single value there is no spread to measure: sd,
    half_width, low and high are NaN. No values, NaN or infinite values raise C3ValueError."""
    confidence = _check_confidence(confidence)
    array = _finite_vector(values, "values")
    count = int(array.size)
    if count == 0:
        raise _core.C3ValueError("seed_interval needs at least one value")
    mean = float(array.mean())
    if count == 1:
        nan = float("nan")
        return dict(mean=mean, low=nan, high=nan, sd=nan, n=1, half_width=nan, confidence=confidence)
    sd = float(array.std(ddof=1))
    from scipy import stats  # imported here: scipy.stats takes about a second to import, and `import c3` should not

    quantile = float(stats.t.ppf(0.5 + confidence / 2.0, count - 1))
    half_width = quantile * sd / math.sqrt(count)
    return dict(mean=mean, low=mean - half_width, high=mean + half_width, sd=sd, n=count,
                half_width=half_width, confidence=confidence)


def paired_difference(a, b, confidence: float = 0.95) -> dict:
    """The per-seed differences a_i - b_i (a and b measured on the same seeds, in the same order) with their
    t-interval: seed_interval's dict plus "differences". Pairing removes the variation that both settings share
    through the seed, so it is narrower than comparing two unpaired intervals whenever that variation dominates.
    Lengths that differ raise C3ValueError."""
    first = _finite_vector(a, "a")
    second = _finite_vector(b, "b")
    if first.size != second.size:
        raise _core.C3ValueError(f"paired_difference needs the same seeds for both: got {first.size} and "
                                 f"{second.size} values")
    differences = first - second
    result = seed_interval(differences, confidence)
    result["differences"] = differences
    return result


def _is_mean(statistic) -> bool:
    return statistic is np.mean or statistic is np.average or statistic == "mean"


def block_bootstrap(values, blocks, statistic=np.mean, resamples: int = 2000, confidence: float = 0.95,
                    seed: int = 0) -> dict:
    """Passage-level uncertainty by a block bootstrap in which documents are the blocks.

    values: one number per passage (1-D); blocks: the document id of each passage. Each resample draws as many
    documents as there are, with replacement, and recomputes `statistic` over all passages of the drawn documents
    (a document drawn twice counts twice). The interval is the percentile interval of the resampled statistics.
    Deterministic for a given seed.

    Returns dict(estimate (the statistic on all passages), low, high, se (sd of the resampled statistics),
    n (passages), blocks (documents), resamples, confidence). The mean (the default) is computed for all resamples
    at once; any other statistic is called once per resample on a 1-D array. With a single document every
    resample is the data itself and the interval has zero width: passage-level uncertainty needs several."""
    confidence = _check_confidence(confidence)
    array = _finite_vector(values, "values")
    block_ids = np.asarray(blocks)
    if block_ids.ndim != 1 or block_ids.size != array.size:
        raise _core.C3ValueError(f"blocks must give one document id per value: {block_ids.shape} ids for "
                                 f"{array.size} values")
    if array.size == 0:
        raise _core.C3ValueError("block_bootstrap needs at least one value")
    resamples = int(resamples)
    if resamples < 1:
        raise _core.C3ValueError(f"resamples must be at least 1, got {resamples}")
    _, inverse = np.unique(block_ids, return_inverse=True)
    inverse = inverse.reshape(-1)
    block_count = int(inverse.max()) + 1
    rng = np.random.default_rng(seed)
    vectorised = _is_mean(statistic)
    estimate = float(array.mean()) if vectorised else float(statistic(array))
    if vectorised:
        sums = np.bincount(inverse, weights=array, minlength=block_count)
        sizes = np.bincount(inverse, minlength=block_count).astype(np.float64)
    else:
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=block_count))])
        members = [order[starts[i]:starts[i + 1]] for i in range(block_count)]
    results = np.empty(resamples, dtype=np.float64)
    # Draw (rows x documents) at a time, so that memory stays near 32 MB however many documents there are.
    rows = max(1, min(resamples, 4_000_000 // block_count))
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        drawn = rng.integers(0, block_count, size=(stop - start, block_count))
        if vectorised:
            results[start:stop] = sums[drawn].sum(axis=1) / sizes[drawn].sum(axis=1)
        else:
            for row, chosen in enumerate(drawn):
                results[start + row] = float(statistic(array[np.concatenate([members[i] for i in chosen])]))
    alpha = 1.0 - confidence
    low, high = np.quantile(results, [alpha / 2.0, 1.0 - alpha / 2.0])
    return dict(estimate=estimate, low=float(low), high=float(high),
                se=float(results.std(ddof=1)) if resamples > 1 else float("nan"),
                n=int(array.size), blocks=block_count, resamples=resamples, confidence=confidence)
