"""Where reconstruction errors fall: by relative position, by how surprising the token is, and whether a greedy
"decay" is lost information or error propagation.

- token_surprisal / prior_surprisal: each reference token's surprisal (bits) under a language model without the
  latents: any c3 Transformer, or a cascade's own decoder with an empty latent block (its prior).
- error_table: error rate by (relative position bin x surprisal bin), with counts.
- logistic_regression / position_surprisal_regression: P(error) = sigmoid(b0 + b1 position + b2 surprisal) by
  iteratively reweighted least squares, with standard errors, so that position decay and content difficulty are
  separated.
- accuracy_curves: teacher-forced, strict greedy and aligned greedy accuracy by position, side by side: a greedy
  curve that falls while the teacher-forced one stays flat is error propagation, not lost information.

Plots return their Figure and draw into `ax` when given one.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from .. import _core, analysis

LN2 = math.log(2.0)


# ---- surprisal ------------------------------------------------------------------------------------------------
def token_surprisal(model, rows: Sequence, prefix: Sequence[int] = (), batch_size: int = 32) -> list:
    """Surprisal in bits of every token of each row under `model` (a c3 Transformer) after `prefix` ids:
    -log2 p(row[i] | prefix, row[:i]). Without a prefix the first token has no context and gets NaN."""
    prefix = [int(token) for token in prefix]
    rows = [np.asarray(row, dtype=np.int32) for row in rows]
    out = []
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        length = len(prefix) + max(len(row) for row in part)
        ids = np.zeros((len(part), length), np.int32)
        mask = np.zeros((len(part), length), np.uint8)
        for index, row in enumerate(part):
            ids[index, :len(prefix)] = prefix
            ids[index, len(prefix):len(prefix) + len(row)] = row
            mask[index, :len(prefix) + len(row)] = 1
        _, logits = model.forward(ids=ids, attention_mask=mask, logits="all")
        logits = logits.astype(np.float64)
        log_softmax = logits - logits.max(axis=-1, keepdims=True)
        log_softmax -= np.log(np.exp(log_softmax).sum(axis=-1, keepdims=True))
        for index, row in enumerate(part):
            bits = np.full(len(row), np.nan)
            for position in range(len(row)):
                source = len(prefix) + position - 1
                if source >= 0:
                    bits[position] = -log_softmax[index, source, row[position]] / LN2
            out.append(bits)
    return out


def prior_surprisal(cascade, rows: Sequence, batch_size: int = 32) -> list:
    """Surprisal (bits) of each row's tokens under the cascade's decoder with an empty latent block: the prompt
    prefix, <img></img>, the prompt suffix, then the text (the layout of the no_context baseline)."""
    config = cascade.model.config
    prefix = list(config["prompt_prefix"]) + [config["latent_start_token"], config["latent_end_token"]] + \
        list(config["prompt_suffix"])
    return token_surprisal(cascade.model.decoder, rows, prefix, batch_size)


# ---- binning --------------------------------------------------------------------------------------------------
def relative_position_bins(length: int, bins: int) -> np.ndarray:
    """Bin of each position i of a text of `length` tokens: i * bins // length."""
    return np.arange(length, dtype=np.int64) * bins // max(length, 1)


def surprisal_edges(surprisals: Sequence, bins: int = 5) -> np.ndarray:
    """bins + 1 edges at the quantiles of all finite surprisals (equal-count bins); the outer edges are the
    minimum and maximum."""
    values = np.concatenate([np.asarray(s, np.float64) for s in surprisals]) if len(surprisals) else np.zeros(0)
    values = values[np.isfinite(values)]
    if not len(values):
        raise _core.C3ValueError("no finite surprisal values to bin")
    return np.quantile(values, np.linspace(0.0, 1.0, bins + 1))


def error_table(errors: Sequence, surprisals: Sequence, position_bins: int = 10, surprisal_bins: int = 5,
                edges: Optional[Sequence[float]] = None) -> Dict[str, np.ndarray]:
    """Error rate by (relative position bin x surprisal bin).

    errors[k] and surprisals[k] are per-token arrays of text k (1 = wrong). A token goes to position bin
    i * position_bins // len(text) and to surprisal bin j where edges[j] <= s < edges[j + 1] (the last bin
    includes its upper edge; values outside the edges go to the outer bins); tokens with NaN surprisal are left
    out. Returns errors, count (int64 [P, S]), rate (float64, NaN where empty), position_edges, surprisal_edges.
    """
    if len(errors) != len(surprisals):
        raise _core.C3ValueError(f"{len(errors)} error rows against {len(surprisals)} surprisal rows")
    edges = np.asarray(edges if edges is not None else surprisal_edges(surprisals, surprisal_bins), np.float64)
    bins_s = len(edges) - 1
    wrong = np.zeros((position_bins, bins_s), np.int64)
    count = np.zeros((position_bins, bins_s), np.int64)
    for index, (error, surprisal) in enumerate(zip(errors, surprisals)):
        error, surprisal = np.asarray(error), np.asarray(surprisal, np.float64)
        if error.shape != surprisal.shape:
            raise _core.ShapeError(f"text {index}: {error.shape[0]} errors against {surprisal.shape[0]} surprisals")
        keep = np.isfinite(surprisal)
        position = relative_position_bins(len(error), position_bins)[keep]
        column = np.clip(np.searchsorted(edges, surprisal[keep], side="right") - 1, 0, bins_s - 1)
        np.add.at(count, (position, column), 1)
        np.add.at(wrong, (position, column), error[keep].astype(np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, wrong / np.maximum(count, 1), np.nan)
    return dict(errors=wrong, count=count, rate=rate,
                position_edges=np.linspace(0.0, 1.0, position_bins + 1), surprisal_edges=edges)


# ---- logistic regression --------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z) without overflow: a separable outcome drives |z| past exp's range."""
    return np.exp(-np.logaddexp(0.0, -z))


def logistic_regression(features, outcome, names: Optional[Sequence[str]] = None, iterations: int = 50,
                        tolerance: float = 1e-10) -> dict:
    """Maximum-likelihood logistic regression of a 0/1 outcome on features [n, k] plus an intercept, by
    iteratively reweighted least squares. Returns names, coefficients, stderr (from the inverse Fisher
    information), z, iterations and converged; NaN coefficients, not converged, when a feature is constant or the
    features are collinear (the coefficients are not identified)."""
    X = np.asarray(features, np.float64)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(outcome, np.float64)
    if X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise _core.ShapeError(f"features have {X.shape[0]} rows, outcome {y.shape[0]}")
    X = np.hstack([np.ones((X.shape[0], 1)), X])
    names = ["intercept"] + list(names or [f"x{i}" for i in range(1, X.shape[1])])
    if np.linalg.matrix_rank(X) < X.shape[1]:
        # A constant or collinear feature (one surprisal for every token, a single token): the coefficients are
        # not identified, and the information matrix cannot be inverted.
        nan = np.full(X.shape[1], np.nan)
        return dict(names=names, coefficients=nan, stderr=nan.copy(), z=nan.copy(), iterations=0, converged=False)
    beta = np.zeros(X.shape[1])
    converged, step = False, 0
    for step in range(1, iterations + 1):
        p = _sigmoid(X @ beta)
        weight = np.clip(p * (1.0 - p), 1e-12, None)
        information = X.T @ (X * weight[:, None])
        update = np.linalg.solve(information, X.T @ (y - p))
        beta += update
        if np.max(np.abs(update)) < tolerance:
            converged = True
            break
    p = _sigmoid(X @ beta)
    information = X.T @ (X * np.clip(p * (1.0 - p), 1e-12, None)[:, None])
    stderr = np.sqrt(np.diag(np.linalg.inv(information)))
    return dict(names=names, coefficients=beta, stderr=stderr, z=beta / stderr, iterations=step, converged=converged)


def position_surprisal_regression(errors: Sequence, surprisals: Sequence) -> dict:
    """logistic_regression of each token's error on its relative position (i / length, 0..1) and its surprisal
    (bits). A positive position coefficient with surprisal held fixed is decay along the text; a positive
    surprisal coefficient is difficulty of content."""
    positions, values, outcomes = [], [], []
    for error, surprisal in zip(errors, surprisals):
        surprisal = np.asarray(surprisal, np.float64)
        keep = np.isfinite(surprisal)
        positions.append((np.arange(len(surprisal)) / max(len(surprisal), 1))[keep])
        values.append(surprisal[keep])
        outcomes.append(np.asarray(error, np.float64)[keep])
    features = np.stack([np.concatenate(positions), np.concatenate(values)], axis=1)
    outcome = np.concatenate(outcomes)
    if outcome.min() == outcome.max():  # no variation: the coefficients are not identified
        return dict(names=["intercept", "relative_position", "surprisal_bits"], coefficients=np.full(3, np.nan),
                    stderr=np.full(3, np.nan), z=np.full(3, np.nan), iterations=0, converged=False,
                    tokens=int(len(outcome)), error_rate=float(outcome.mean()))
    result = logistic_regression(features, outcome, ["relative_position", "surprisal_bits"])
    result.update(tokens=int(len(outcome)), error_rate=float(outcome.mean()))
    return result


# ---- accuracy by position: teacher-forced, strict greedy, aligned greedy --------------------------------------
def strict_correct(reference, hypothesis) -> np.ndarray:
    """1 where the hypothesis's i-th token equals the reference's i-th, per reference position."""
    reference, hypothesis = np.asarray(reference), np.asarray(hypothesis)
    correct = np.zeros(len(reference), np.int8)
    overlap = min(len(reference), len(hypothesis))
    correct[:overlap] = reference[:overlap] == hypothesis[:overlap]
    return correct


def aligned_correct(reference, hypothesis) -> np.ndarray:
    """1 where the reference token is kept by the Levenshtein alignment (c3._core.align)."""
    ops, _ = _core.align(np.asarray(reference, np.int32), np.asarray(hypothesis, np.int32))
    return (np.asarray(ops) == 0).astype(np.int8)


def accuracy_curves(references: Sequence, hypotheses: Sequence, teacher_correct: Sequence, bins: int = 20) -> dict:
    """{'teacher_forced', 'strict_greedy', 'aligned_greedy'}: analysis.decay_curve of each kind of per-token
    correctness. Teacher forcing feeds the true prefix, so it shows what the latents hold; strict greedy counts
    every token after a slip as wrong; aligned greedy forgives the shift."""
    return dict(
        teacher_forced=analysis.decay_curve([np.asarray(c, np.int8) for c in teacher_correct], bins=bins),
        strict_greedy=analysis.decay_curve([strict_correct(r, h) for r, h in zip(references, hypotheses)], bins=bins),
        aligned_greedy=analysis.decay_curve([aligned_correct(r, h) for r, h in zip(references, hypotheses)],
                                            bins=bins))
