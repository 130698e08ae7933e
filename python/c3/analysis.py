"""Information loss by position: Fox metrics, error profiles and decay curves (their plots: c3.plots).

The heavy work (alignment, edit distance, BLEU) runs in ``c3._core`` with the GIL released; this module shapes
inputs and outputs.

Conventions, as in Fox: a ``str`` is characters for edit distance and alignment, and whitespace-split words for
set precision/recall and BLEU. Token ids (lists or integer arrays) and lists of words work everywhere.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from . import _core

__all__ = [
    "edit_distance",
    "normalized_edit_distance",
    "edit_distance_batch",
    "normalized_edit_distance_batch",
    "align",
    "align_batch",
    "fox_precision",
    "set_recall",
    "set_f1",
    "token_accuracy",
    "token_accuracy_batch",
    "bleu",
    "corpus_bleu",
    "position_profile_grid",
    "fox_metrics",
    "fox_page_scores",
    "fox_summary",
    "position_profile",
    "decay_curve",
    "decay_from_counts",
    "value_profile",
    "length_bins",
    "bin_centers",
]


# The most bins a profile may have: far more than any plot shows, and few enough that no count array is large.
MAX_BINS = 1 << 20


def _bins(bins, what: str) -> int:
    """``bins`` as an int from 1 to MAX_BINS; anything else (a float, a bool, a number out of range) is a
    c3.C3ValueError that names the range, before any count array is allocated."""
    if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, (int, np.integer)) or not 1 <= bins <= MAX_BINS:
        raise _core.C3ValueError(f"{what}: bins must be an integer from 1 to {MAX_BINS}, got {bins!r}")
    return int(bins)


def bin_centers(bins: int) -> np.ndarray:
    """Relative position (0..1) of the middle of each of ``bins`` equal bins."""
    return (np.arange(bins, dtype=np.float64) + 0.5) / bins


# ---------------------------------------------------------------------------------------------------------
# Sequences
#
# A sequence is text (str, or bytes holding UTF-8), a list of words (list/tuple of str) or token ids (a 1-d
# integer array or a list of ints). What text means depends on the metric, as in Fox: characters (code points)
# for edit distance, alignment and accuracy; whitespace-split words (str.split) for set precision/recall and
# BLEU. Both sides of a pair must be of one kind (an empty list fits any kind). Each pair becomes two int64 id
# arrays here (characters as code points, words through a vocabulary of the pair): c3._core computes on ids only.

_KIND_NAMES = {"chars": "characters", "words": "words", "ids": "token ids"}


def _text(value) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            _core.decode_utf8(value)  # c3's decoder raises c3.Utf8Error, naming the byte offset
            raise
    return value


def _sequence(value, text_as: str, what: str):
    """(kind, values): code points or ids as an int64 array, or words as a list of str."""
    if isinstance(value, (str, bytes)):
        text = _text(value)
        if text_as == "chars":
            try:
                encoded = text.encode("utf-32-le")
            except UnicodeEncodeError as error:  # a lone surrogate: not text
                raise _core.Utf8Error(f"{what}: character {error.start} is a lone surrogate "
                                      f"(U+{ord(text[error.start]):04X}), which is not text") from None
            return "chars", np.frombuffer(encoded, "<u4").astype(np.int64)
        return "words", text.split()
    if isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], str):
        if not all(isinstance(word, str) for word in value):
            raise TypeError(f"{what}: a list of words must hold only str")
        return "words", list(value)
    try:
        ids = np.asarray(value)
    except (TypeError, ValueError):
        ids = np.asarray(None)
    if ids.size == 0:
        return "ids", np.zeros(0, np.int64)
    if ids.dtype.kind not in "iub":
        if ids.dtype.kind == "O":
            raise TypeError(f"{what}: expected str, a list of str, or a 1-d sequence of integer ids")
        raise TypeError(f"{what}: token ids must be integers, got dtype {ids.dtype}")
    if ids.ndim != 1:
        raise _core.ShapeError(f"{what}: token ids must be 1-d, got shape {list(ids.shape)}")
    return "ids", ids.astype(np.int64, copy=False)


def _pair(reference, hypothesis, text_as: str, what: str):
    """(reference ids, hypothesis ids) as int64 arrays."""
    (kind, a), (other, b) = _sequence(reference, text_as, what), _sequence(hypothesis, text_as, what)
    if kind != other and len(a) and len(b):
        raise TypeError(f"{what}: reference is {_KIND_NAMES[kind]} but hypothesis is {_KIND_NAMES[other]}")
    if "words" in (kind, other):  # an empty side takes the other's kind
        vocabulary: Dict[str, int] = {}
        a, b = ([vocabulary.setdefault(word, len(vocabulary)) for word in side] for side in (a, b))
    return np.asarray(a, np.int64), np.asarray(b, np.int64)


def _pairs(references, hypotheses, text_as: str, what: str):
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise _core.ShapeError(f"{what}: {len(references)} references against {len(hypotheses)} hypotheses")
    pairs = [_pair(r, h, text_as, what) for r, h in zip(references, hypotheses)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _samples(samples, text_as: str, what: str):
    """(references, hypotheses) ids from an iterable of (reference, hypothesis) pairs."""
    samples = list(samples)
    for k, sample in enumerate(samples):
        if isinstance(sample, (str, bytes)) or not hasattr(sample, "__getitem__") or len(sample) != 2:
            raise TypeError(f"{what}: sample {k} is not a (reference, hypothesis) pair")
    return _pairs([s[0] for s in samples], [s[1] for s in samples], text_as, what)


def edit_distance(reference, hypothesis) -> int:
    """Levenshtein distance (unit costs). str: characters (code points); list of str: words; ints: token ids."""
    return _core.edit_distance(*_pair(reference, hypothesis, "chars", "edit_distance"))


def normalized_edit_distance(reference, hypothesis) -> float:
    """distance / max(len(reference), len(hypothesis)), Fox's edit_dist on str; 0.0 when both are empty."""
    return _core.normalized_edit_distance(*_pair(reference, hypothesis, "chars", "normalized_edit_distance"))


def edit_distance_batch(references: Sequence, hypotheses: Sequence) -> np.ndarray:
    """edit_distance over pairs, in parallel: int64 array."""
    return _core.edit_distance_batch(*_pairs(references, hypotheses, "chars", "edit_distance_batch"))


def normalized_edit_distance_batch(references: Sequence, hypotheses: Sequence) -> np.ndarray:
    """normalized_edit_distance over pairs, in parallel: float64 array."""
    return _core.normalized_edit_distance_batch(
        *_pairs(references, hypotheses, "chars", "normalized_edit_distance_batch"))


def align(reference, hypothesis):
    """Levenshtein alignment (``_core.align``): (ops, insertions_before); str is characters."""
    return _core.align(*_pair(reference, hypothesis, "chars", "align"))


def align_batch(references: Sequence, hypotheses: Sequence) -> list:
    """align over pairs, in parallel: a list of (ops, insertions_before)."""
    return _core.align_batch(*_pairs(references, hypotheses, "chars", "align_batch"))


def fox_precision(reference, hypothesis) -> float:
    """Fox's precision: ``|set(ref words) & set(hyp words)| / |set(hyp words)|`` (nltk.metrics.precision on
    str.split() sets). NaN where nltk returns None (no hypothesis words)."""
    return _core.fox_precision(*_pair(reference, hypothesis, "words", "fox_precision"))


def set_recall(reference, hypothesis) -> float:
    """``|set(ref) & set(hyp)| / |set(ref)|`` (nltk.metrics.recall) on words of str; NaN for an empty reference."""
    return _core.set_recall(*_pair(reference, hypothesis, "words", "set_recall"))


def set_f1(reference, hypothesis) -> float:
    """nltk.metrics.f_measure (alpha 0.5) on the word sets; NaN where nltk returns None."""
    return _core.set_f1(*_pair(reference, hypothesis, "words", "set_f1"))


def token_accuracy(reference, hypothesis) -> float:
    """Position-by-position exact match over the reference length (missing positions are wrong, extra ones
    ignored); str is characters. NaN for an empty reference."""
    return _core.token_accuracy(*_pair(reference, hypothesis, "chars", "token_accuracy"))


def token_accuracy_batch(references: Sequence, hypotheses: Sequence) -> Dict[str, np.ndarray]:
    """token_accuracy over pairs: dict of correct, total (int64) and accuracy (float64). The token-weighted
    mean is correct.sum() / total.sum()."""
    return _core.token_accuracy_batch(*_pairs(references, hypotheses, "chars", "token_accuracy_batch"))


def bleu(reference, hypothesis, weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25), smoothing=None,
         epsilon: float = 0.1) -> float:
    """nltk sentence_bleu([reference], hypothesis): str is split into words. smoothing: None / 'method0'
    (none) or 'method1' (epsilon added to zero counts)."""
    return _core.bleu(*_pair(reference, hypothesis, "words", "bleu"), list(weights), smoothing, epsilon)


def corpus_bleu(references: Sequence, hypotheses: Sequence, weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
                smoothing=None, epsilon: float = 0.1) -> float:
    """nltk corpus_bleu with one reference per hypothesis (counts summed over the corpus, then divided)."""
    return _core.corpus_bleu(*_pairs(references, hypotheses, "words", "corpus_bleu"), list(weights), smoothing,
                             epsilon)


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
            "precision": np.array([fox_precision(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "recall": np.array([set_recall(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "f1": np.array([set_f1(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "bleu": np.array([bleu(r, h) for r, h in zip(ref_words, hyp_words)], np.float64),
            "edit_distance": normalized_edit_distance_batch(refs, hyps),
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
    if hypotheses is None:
        pairs = _samples(references, "chars", "position_profile")
    else:
        pairs = _pairs(references, hypotheses, "chars", "position_profile")
    bins = _bins(bins, "position_profile")
    profile = dict(_core.position_profile(*pairs, bins=bins))
    profile["position"] = bin_centers(bins)
    return profile


def position_profile_grid(groups: Iterable, bins: int = 20) -> Dict[str, np.ndarray]:
    """position_profile for each group of (reference, hypothesis) pairs (e.g. one group per compression ratio):
    dict of [groups, bins] arrays, counts and rates as in position_profile. For heat maps."""
    bins = _bins(bins, "position_profile_grid")
    return _core.position_profile_grid([_samples(group, "chars", "position_profile_grid") for group in groups],
                                       bins=bins)


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
    standard error), ``passages`` (the number of samples), and for pairs also ``substituted``, ``deleted``,
    ``inserted`` rates.
    """
    samples = list(samples)
    bins = _bins(bins, "decay_curve")
    if samples and all(_is_pair(sample) for sample in samples):
        return decay_from_counts(position_profile(samples, bins=bins), passages=len(samples))
    return decay_from_counts(_core.correctness_profile([np.asarray(sample) for sample in samples], bins=bins),
                             passages=len(samples))


def value_profile(values, bins: int = 20, lengths=None) -> Dict[str, np.ndarray]:
    """Per-position values (e.g. negative log-likelihoods) by relative position: ``sum``, ``count`` and ``mean``
    per bin, and ``position`` (bin centers). ``values`` is a list of 1-d arrays, or a 2-d padded array with
    ``lengths``. Non-finite values raise c3.C3ValueError."""
    bins = _bins(bins, "value_profile")
    profile = dict(_core.value_profile(values, bins=bins, lengths=lengths))
    profile["position"] = bin_centers(bins)
    return profile


PROFILE_COUNTS = ("kept", "substituted", "deleted", "inserted", "reference_tokens")
CORRECTNESS_COUNTS = ("correct", "total")


def decay_from_counts(counts: Mapping, passages: int) -> Dict[str, np.ndarray]:
    """``decay_curve`` from the int64 counts per bin of ``_core.position_profile`` (PROFILE_COUNTS: pairs) or of
    ``_core.correctness_profile`` (CORRECTNESS_COUNTS). Counts add up over parts of a corpus, so the decay curve
    of a corpus scored in parts (on several machines) is that of the summed counts. ``passages`` is how many
    passages the counts come from (for the plots' band labels)."""
    if "correct" in counts:
        total = np.asarray(counts["total"], dtype=np.int64)
        accuracy = _rates(counts["correct"], total)
        return {"position": bin_centers(len(total)), "accuracy": accuracy, "count": total,
                "stderr": _binomial_stderr(accuracy, total), "passages": passages}
    reference = np.asarray(counts["reference_tokens"], dtype=np.int64)
    rates = {key: _rates(counts[key], reference) for key in ("kept", "substituted", "deleted", "inserted")}
    return {
        "position": bin_centers(len(reference)),
        "accuracy": rates["kept"],
        "count": reference,
        "stderr": _binomial_stderr(rates["kept"], reference),
        "passages": passages,
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
#
