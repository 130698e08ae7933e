"""Information loss by position: Fox metrics, error profiles, decay curves and their plots.

The heavy work (alignment, edit distance, BLEU) runs in ``c3._core`` with the GIL released; this module shapes
inputs and outputs and draws figures. Plots use matplotlib's object API with the Agg canvas (no pyplot state),
so they work headless and from threads, and every plot function returns its ``Figure``.

Conventions, as in Fox: a ``str`` is characters for edit distance and alignment, and whitespace-split words for
set precision/recall and BLEU. Token ids (lists or integer arrays) and lists of words work everywhere.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from . import _core

__all__ = [
    "fox_metrics",
    "fox_page_scores",
    "fox_summary",
    "position_profile",
    "decay_curve",
    "decay_from_counts",
    "length_bins",
    "plot_decay_curves",
    "plot_ratio_heatmap",
    "plot_precision_vs_ratio",
    "bin_centers",
]


def bin_centers(bins: int) -> np.ndarray:
    """Relative position (0..1) of the middle of each of ``bins`` equal bins."""
    return (np.arange(bins, dtype=np.float64) + 0.5) / bins


# ---------------------------------------------------------------------------------------------------------
# Fox metrics


def fox_metrics(refs: Sequence[str], hyps: Sequence[str], tokenize=None) -> Dict[str, float]:
    """Fox's page-level metrics averaged over pages, as its ``eval_ocr_test.py`` does (plain per-page mean).

    Per page: ``precision``/``recall``/``f1`` on word *sets* (nltk.metrics), ``bleu`` (nltk sentence BLEU,
    default weights, no smoothing) and ``edit_distance`` (character Levenshtein / max length).

    Words are ``str.split()`` unless ``tokenize`` (a callable, e.g. ``jieba.lcut`` for Chinese) is given.
    METEOR is not computed (nltk's needs WordNet data).

    Where nltk returns None (no hypothesis words: precision; no reference words: recall; either: f1) the Fox
    script would crash on the sum; here such a page counts as 0 in the mean and is counted in ``undefined_*``.
    An empty output recovered nothing, so 0 is the honest score for it.
    """
    return fox_summary(fox_page_scores(refs, hyps, tokenize))


def fox_page_scores(refs: Sequence[str], hyps: Sequence[str], tokenize=None) -> Dict[str, np.ndarray]:
    """The per-page scores that ``fox_metrics`` averages: float64 arrays ``precision``, ``recall``, ``f1``,
    ``bleu``, ``edit_distance`` (NaN where nltk returns None). Pages of a corpus can be scored apart (on
    several machines) and summarised together: ``fox_summary`` of the concatenation equals ``fox_metrics``."""
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"fox_metrics: {len(refs)} references against {len(hyps)} hypotheses")
    if tokenize is None:
        scores = _core.fox_scores_batch(refs, hyps)
    else:
        ref_words = [list(tokenize(text)) for text in refs]
        hyp_words = [list(tokenize(text)) for text in hyps]
        scores = {
            "precision": np.array([_core.fox_precision(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "recall": np.array([_core.set_recall(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "f1": np.array([_core.set_f1(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "bleu": np.array([_core.bleu(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "edit_distance": _core.normalized_edit_distance_batch(refs, hyps),
        }
    return {key: np.asarray(scores[key], dtype=np.float64) for key in FOX_SCORES}


FOX_SCORES = ("precision", "recall", "f1", "bleu", "edit_distance")


def fox_summary(scores: Mapping) -> Dict[str, float]:
    """``fox_metrics`` from per-page scores (``fox_page_scores``): plain means, undefined pages as 0."""
    count = len(np.asarray(scores["precision"]))
    result: Dict[str, float] = {"count": count}
    for key in FOX_SCORES:
        values = np.asarray(scores[key], dtype=np.float64)
        undefined = np.isnan(values)
        if key in ("precision", "recall", "f1"):
            result[f"undefined_{key}"] = int(undefined.sum())
        result[key] = float(np.where(undefined, 0.0, values).mean()) if len(values) else math.nan
    return result


# ---------------------------------------------------------------------------------------------------------
# Profiles and decay curves


def position_profile(references: Sequence, hypotheses: Optional[Sequence] = None, bins: int = 20) -> Dict[str, np.ndarray]:
    """Alignment-based error profile by relative reference position.

    ``position_profile(pairs)`` with (reference, hypothesis) pairs, or ``position_profile(references,
    hypotheses)``. Counts are summed over samples, then turned into rates (token-weighted). Returns the arrays
    of ``_core.position_profile`` plus ``position`` (bin centers in [0, 1]).
    """
    samples = list(references) if hypotheses is None else list(zip(references, hypotheses))
    profile = dict(_core.position_profile(samples, bins=bins))
    profile["position"] = bin_centers(bins)
    return profile


def _is_pair(sample) -> bool:
    # A (reference, hypothesis) tuple: each side is text or a sequence; a correctness sample holds scalars.
    return (
        isinstance(sample, tuple)
        and len(sample) == 2
        and all(isinstance(side, (str, bytes)) or not np.isscalar(side) for side in sample)
    )


def _binomial_stderr(rate: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.sqrt(rate * (1.0 - rate) / np.maximum(count, 1)), np.nan)


def decay_curve(samples: Iterable, bins: int = 20) -> Dict[str, np.ndarray]:
    """Accuracy by relative position: how reconstruction decays along the text.

    ``samples`` is either (reference, hypothesis) tuples (greedy outputs: accuracy is the kept rate after
    alignment, so one early insertion does not fail every later token) or 1-d 0/1 arrays of per-position
    correctness (teacher-forced: argmax == target). Returns NumPy arrays of length ``bins``:
    ``position`` (bin centers), ``accuracy``, ``count`` (reference tokens per bin), ``stderr`` (binomial
    standard error), and for pairs also ``substituted``, ``deleted``, ``inserted`` rates.
    """
    samples = list(samples)
    if samples and all(_is_pair(sample) for sample in samples):
        return decay_from_counts(_core.position_profile(samples, bins=bins))
    return decay_from_counts(_core.correctness_profile([np.asarray(sample) for sample in samples], bins=bins))


PROFILE_COUNTS = ("kept", "substituted", "deleted", "inserted", "reference_tokens")
CORRECTNESS_COUNTS = ("correct", "total")


def decay_from_counts(counts: Mapping) -> Dict[str, np.ndarray]:
    """``decay_curve`` from the int64 counts per bin of ``_core.position_profile`` (PROFILE_COUNTS: pairs) or of
    ``_core.correctness_profile`` (CORRECTNESS_COUNTS). Counts add up over parts of a corpus, so the decay curve
    of a corpus scored in parts (on several machines) is that of the summed counts."""
    if "correct" in counts:
        total = np.asarray(counts["total"], dtype=np.int64)
        accuracy = _rates(counts["correct"], total)
        return {"position": bin_centers(len(total)), "accuracy": accuracy, "count": total,
                "stderr": _binomial_stderr(accuracy, total)}
    reference = np.asarray(counts["reference_tokens"], dtype=np.int64)
    rates = {key: _rates(counts[key], reference) for key in ("kept", "substituted", "deleted", "inserted")}
    return {
        "position": bin_centers(len(reference)),
        "accuracy": rates["kept"],
        "count": reference,
        "stderr": _binomial_stderr(rates["kept"], reference),
        "substituted": rates["substituted"],
        "deleted": rates["deleted"],
        "inserted": rates["inserted"],
    }


def _rates(counts, totals: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.asarray(counts, np.int64) / np.maximum(totals, 1), np.nan)


def length_bins(token_counts: Sequence[int], width: int = 100) -> Dict[str, object]:
    """Groups samples by text length in bins of ``width`` tokens, as Fox reports 600-700, 700-800, ...

    Returns ``bin`` (each sample's lower edge, int64), ``edges`` (the occupied lower edges, sorted),
    ``labels`` ("600-700", ...) and ``groups`` (for each edge, the int64 indices of its samples).
    """
    if width <= 0:
        raise ValueError(f"length_bins: width must be positive, got {width}")
    counts = np.asarray(token_counts, dtype=np.int64)
    if counts.ndim != 1:
        raise ValueError(f"length_bins: expected a 1-d sequence of counts, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("length_bins: token counts must be non-negative")
    lower = (counts // width) * width
    edges = np.unique(lower)
    return {
        "bin": lower,
        "edges": edges,
        "labels": [f"{edge}-{edge + width}" for edge in edges.tolist()],
        "groups": [np.flatnonzero(lower == edge) for edge in edges],
    }


# ---------------------------------------------------------------------------------------------------------
# Plots


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_decay_curves(curves_by_ratio: Mapping, title: str = "Reconstruction accuracy by position", show_stderr: bool = True):
    """One line per compression ratio: accuracy against relative position in the text.

    ``curves_by_ratio`` maps a ratio (number or label) to a ``decay_curve`` dict or to a 1-d accuracy array.
    """
    figure = _figure()
    axes = figure.add_subplot()
    for ratio, curve in sorted(curves_by_ratio.items(), key=lambda item: _sort_key(item[0])):
        if isinstance(curve, Mapping):
            accuracy = np.asarray(curve["accuracy"], dtype=np.float64)
            position = np.asarray(curve.get("position", bin_centers(len(accuracy))), dtype=np.float64)
            stderr = curve.get("stderr")
        else:
            accuracy = np.asarray(curve, dtype=np.float64)
            position, stderr = bin_centers(len(accuracy)), None
        label = f"{ratio:g}x" if isinstance(ratio, (int, float)) else str(ratio)
        (line,) = axes.plot(position, accuracy, marker="o", markersize=3, label=label)
        if show_stderr and stderr is not None:
            stderr = np.asarray(stderr, dtype=np.float64)
            axes.fill_between(position, accuracy - stderr, accuracy + stderr, color=line.get_color(), alpha=0.2)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("relative position in text")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if curves_by_ratio:
        axes.legend(title="compression")
    return figure


def plot_ratio_heatmap(ratios: Sequence, profile_matrix, title: str = "Accuracy by ratio and position", label: str = "accuracy"):
    """Heat map: rows are compression ratios, columns relative-position bins (e.g. ``kept_rate`` of
    ``_core.position_profile_grid``). NaN cells (no tokens) are left blank."""
    matrix = np.asarray(profile_matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(ratios):
        raise ValueError(f"plot_ratio_heatmap: expected a [{len(ratios)}, bins] matrix, got shape {matrix.shape}")
    figure = _figure(7.0, 0.6 + 0.45 * max(len(ratios), 3))
    axes = figure.add_subplot()
    bins = matrix.shape[1]
    image = axes.imshow(
        np.ma.masked_invalid(matrix), aspect="auto", origin="lower", cmap="viridis", vmin=0.0, vmax=1.0,
        extent=(0.0, 1.0, -0.5, len(ratios) - 0.5), interpolation="nearest",
    )
    axes.set_yticks(range(len(ratios)))
    axes.set_yticklabels([f"{r:g}x" if isinstance(r, (int, float)) else str(r) for r in ratios])
    axes.set_xlabel(f"relative position in text ({bins} bins)")
    axes.set_ylabel("compression ratio")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=label)
    return figure


def plot_precision_vs_ratio(ratios: Sequence[float], precisions: Sequence[float], edit_distances: Sequence[float],
                            title: str = "Reconstruction vs compression"):
    """Fox precision (lenient, left axis) and normalised edit distance (strict, right axis) against ratio."""
    ratios = np.asarray(ratios, dtype=np.float64)
    precisions = np.asarray(precisions, dtype=np.float64)
    edit_distances = np.asarray(edit_distances, dtype=np.float64)
    if not (ratios.shape == precisions.shape == edit_distances.shape) or ratios.ndim != 1:
        raise ValueError("plot_precision_vs_ratio: ratios, precisions and edit_distances must be 1-d of one length")
    order = np.argsort(ratios)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(ratios[order], precisions[order], marker="o", color="tab:blue", label="precision (word sets)")
    axes.set_xlabel("compression ratio (text tokens / latent tokens)")
    axes.set_ylabel("precision", color="tab:blue")
    axes.set_ylim(0.0, 1.02)
    axes.grid(alpha=0.3)
    right = axes.twinx()
    right.plot(ratios[order], edit_distances[order], marker="s", color="tab:red", label="edit distance (chars)")
    right.set_ylabel("normalised edit distance", color="tab:red")
    right.set_ylim(0.0, max(1.0, float(np.nanmax(edit_distances)) if edit_distances.size else 1.0))
    lines = axes.get_lines() + right.get_lines()
    axes.legend(lines, [line.get_label() for line in lines], loc="center left")
    axes.set_title(title)
    return figure


def _sort_key(ratio):
    return (0, float(ratio), "") if isinstance(ratio, (int, float)) else (1, 0.0, str(ratio))
