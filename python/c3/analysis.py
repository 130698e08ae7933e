"""Information loss by position: Fox metrics, error profiles, decay curves and their plots.

The heavy work (alignment, edit distance, BLEU) runs in ``c3._core`` with the GIL released; this module shapes
inputs and outputs and draws figures. Plots use matplotlib's object API with the Agg canvas (no pyplot state),
so they work headless and from threads; every plot function takes ``ax=`` (draw into the caller's figure) and
returns its ``Figure``, which shows itself as the last value of a notebook cell.

Conventions, as in Fox: a ``str`` is characters for edit distance and alignment, and whitespace-split words for
set precision/recall and BLEU. Token ids (lists or integer arrays) and lists of words work everywhere.
"""
from __future__ import annotations

import functools
import io
import math
import os
import zlib
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
    "plot_decay_curves",
    "plot_ratio_heatmap",
    "plot_precision_vs_ratio",
    "plot_training_loss",
    "save_figure",
    "new_figure",
    "color_for",
    "ratio_label",
    "ratio_value",
    "sort_keys",
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
# Every plot function draws into ``ax`` when one is given (a figure the caller made) and otherwise into a new
# figure; it returns the Figure. Each ratio (and each method label) keeps one colour in every plot (color_for),
# ratios sort by value, and save_figure writes vector files beside the PNG.

# Okabe & Ito's colour-blind-safe palette (yellow left out: it vanishes on white), then black and grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#999999")
# The compression methods keep distinct colours of the palette (a hash could give two of them the same one); the
# bounds are grey and black.
METHOD_COLORS = {"c3": "#D55E00", "mean_pool": "#0072B2", "truncate": "#009E73", "truncate_last": "#CC79A7",
                 "no_context": "#999999", "full_context": "#000000", "mean_pool_hidden": "#56B4E9",
                 "hierarchical": "#E69F00"}


def ratio_value(key) -> Optional[float]:
    """The compression ratio a key stands for: 4, 4.0 and "4x" give 4.0; a method label ("greedy") gives None."""
    value = None
    if isinstance(key, (int, float, np.integer, np.floating)) and not isinstance(key, bool):
        value = float(key)
    elif isinstance(key, str):
        text = key.strip()
        try:
            value = float(text[:-1] if text[-1:] in ("x", "X", "\u00d7") else text)
        except ValueError:
            return None
    return value if value is not None and math.isfinite(value) else None


def ratio_label(key) -> str:
    """How a key reads in legends and ticks: ratios as "4x", "2.5x"; other labels unchanged."""
    value = ratio_value(key)
    return f"{value:g}x" if value is not None else str(key)


def sort_keys(keys: Iterable) -> list:
    """Ratios in numeric order (4x before 16x), then method labels in their given order."""
    keys = list(keys)
    ratios = sorted((key for key in keys if ratio_value(key) is not None), key=ratio_value)
    return ratios + [key for key in keys if ratio_value(key) is None]


def color_for(key) -> str:
    """The one colour of a ratio or method in every plot.

    Powers of two take the palette in order (2x, 4x, 8x, 16x, ... ); the compression methods (c3, mean_pool, ...)
    take METHOD_COLORS; any other ratio or label takes a colour chosen by a hash of its label, so the same key gets
    the same colour in every figure and every process.
    """
    if isinstance(key, str) and key in METHOD_COLORS:
        return METHOD_COLORS[key]
    value = ratio_value(key)
    if value is not None and value > 0:
        octave = math.log2(value)
        if octave == round(octave):
            return PALETTE[(int(round(octave)) - 1) % len(PALETTE)]
    return PALETTE[zlib.crc32(ratio_label(key).encode("utf-8")) % len(PALETTE)]


@functools.lru_cache(maxsize=None)
def _notebook_figure_class():
    # Built on first use, so that `import c3` does not import matplotlib.
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """A matplotlib Figure that shows itself when it is the last value of a notebook cell.

        The plots use no pyplot state, so Jupyter's inline backend never registers them, and a headless kernel
        (MPLBACKEND=Agg) would print ``<Figure ...>``; IPython asks ``_repr_png_`` for the picture instead.
        """

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.canvas.print_figure(buffer, format="png", dpi=self.dpi)
            return buffer.getvalue()

    NotebookFigure.__qualname__ = "NotebookFigure"  # pickles as c3.analysis.NotebookFigure (module __getattr__)
    return NotebookFigure


def __getattr__(name: str):
    if name == "NotebookFigure":
        return _notebook_figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_figure(width: float = 6.4, height: float = 4.0):
    """An empty figure (inches) for several plots drawn with ``ax=``; it shows itself in a notebook like theirs.

    ``figure = new_figure(11, 4); left, right = figure.subplots(1, 2)``
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _notebook_figure_class()(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _axes(ax, width: float = 6.4, height: float = 4.0):
    """(figure, axes): the caller's axes and its root figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure.figure, ax  # a SubFigure's .figure is its root Figure; a Figure's is itself
    figure = new_figure(width, height)
    return figure, figure.add_subplot()


def write_text_atomically(path: str, text: str) -> None:
    """Writes `text` (UTF-8) through c3's one atomic writer: an interrupted write leaves the old file or none, never
    half a file."""
    _core.write_file_atomically(os.fspath(path), text)


def save_figure(figure, path: str, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list:
    """Writes ``figure`` once per format (PNG for screens and Markdown, PDF or SVG for a paper).

    ``path`` is the file name; a .png, .pdf or .svg extension on it is dropped. Each file is written under a
    temporary name and renamed, so an interrupted save leaves no half-written plot. Returns the paths written.
    """
    stem, extension = os.path.splitext(os.fspath(path))
    if extension.lower().lstrip(".") not in ("png", "pdf", "svg", ""):
        stem = os.fspath(path)
    kinds = [kind.lower().lstrip(".") for kind in formats]
    unknown = [kind for kind in kinds if kind not in ("png", "pdf", "svg")]
    if unknown or not kinds:
        raise _core.C3ValueError(f"save_figure: formats must be png, pdf or svg, got {list(formats)!r}")
    written = []
    for kind in kinds:
        target = f"{stem}.{kind}"
        rendered = io.BytesIO()
        figure.savefig(rendered, format=kind, dpi=dpi)
        _core.write_file_atomically(target, rendered.getvalue())
        written.append(target)
    return written


def _passages_note(counts: Sequence[int]) -> str:
    counts = sorted(set(int(count) for count in counts))
    if not counts:
        return ""
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f", {span} passage{'s' if counts[-1] != 1 else ''}"


POSITION_LABEL = "relative position in the passage (0 = start, 1 = end)"


def plot_decay_curves(curves_by_ratio: Mapping, title: str = "Reconstruction accuracy by position",
                      show_stderr: bool = True, ylabel: str = "accuracy (fraction of reference tokens)", ax=None):
    """One line per compression ratio (or method): accuracy against relative position in the text.

    ``curves_by_ratio`` maps a ratio (4, "4x") or a method label to a ``decay_curve`` dict or to a 1-d accuracy
    array. Lines are in numeric ratio order, each in its ``color_for`` colour. With ``show_stderr``, a band of
    plus and minus one binomial standard error (over the reference tokens in each bin) surrounds each curve that
    has one, and the legend says so and over how many passages.
    """
    from matplotlib.patches import Patch

    figure, axes = _axes(ax)
    banded, passages = False, []
    for key in sort_keys(curves_by_ratio):
        curve = curves_by_ratio[key]
        if isinstance(curve, Mapping):
            accuracy = np.asarray(curve["accuracy"], dtype=np.float64)
            position = np.asarray(curve.get("position", bin_centers(len(accuracy))), dtype=np.float64)
            stderr = curve.get("stderr")
        else:
            accuracy = np.asarray(curve, dtype=np.float64)
            position, stderr = bin_centers(len(accuracy)), None
        color = color_for(key)
        axes.plot(position, accuracy, marker="o", markersize=3, color=color, label=ratio_label(key))
        if show_stderr and stderr is not None:
            stderr = np.asarray(stderr, dtype=np.float64)
            axes.fill_between(position, accuracy - stderr, accuracy + stderr, color=color, alpha=0.2, linewidth=0)
            banded = True
            if isinstance(curve, Mapping) and "passages" in curve:
                passages.append(curve["passages"])
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel(POSITION_LABEL)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if curves_by_ratio:
        handles, labels = axes.get_legend_handles_labels()
        if banded:
            handles.append(Patch(facecolor="0.5", alpha=0.3))
            labels.append("band: \u00b11 standard error" + _passages_note(passages))
        numeric = all(ratio_value(key) is not None for key in curves_by_ratio)
        axes.legend(handles, labels, title="compression ratio" if numeric else None, loc="best")
    return figure


def plot_ratio_heatmap(ratios: Sequence, profile_matrix, title: str = "Accuracy by ratio and position",
                       label: str = "accuracy (fraction of tokens)", ax=None):
    """Heat map: rows are compression ratios (smallest at the bottom), columns relative-position bins (e.g. the
    ``accuracy`` of ``decay_curve`` per ratio, stacked). NaN cells (no tokens) are left blank. Each ratio's tick
    label is in its ``color_for`` colour."""
    matrix = np.asarray(profile_matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(ratios):
        raise ValueError(f"plot_ratio_heatmap: expected a [{len(ratios)}, bins] matrix, got shape {matrix.shape}")
    ratios = list(ratios)
    order = [ratios.index(key) for key in sort_keys(ratios)]
    ratios, matrix = [ratios[i] for i in order], matrix[order]
    figure, axes = _axes(ax, 7.0, 1.6 + 0.45 * max(len(ratios), 3))
    bins = matrix.shape[1]
    image = axes.imshow(
        np.ma.masked_invalid(matrix), aspect="auto", origin="lower", cmap="viridis", vmin=0.0, vmax=1.0,
        extent=(0.0, 1.0, -0.5, len(ratios) - 0.5), interpolation="nearest",
    )
    axes.set_yticks(range(len(ratios)))
    axes.set_yticklabels([ratio_label(key) for key in ratios])
    for tick, key in zip(axes.get_yticklabels(), ratios):
        tick.set_color(color_for(key))
        tick.set_fontweight("bold")
    axes.set_xlabel(f"{POSITION_LABEL}, {bins} bins")
    axes.set_ylabel("compression ratio")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=label)
    return figure


def plot_precision_vs_ratio(ratios: Sequence[float], precisions: Sequence[float], edit_distances: Sequence[float],
                            title: str = "Reconstruction against compression", ax=None):
    """Fox precision (lenient, left axis) and normalised edit distance (strict, right axis) against the ratio,
    on a log2 ratio axis. Each point is filled with its ratio's ``color_for`` colour."""
    ratios = np.asarray([ratio_value(r) for r in ratios], dtype=np.float64)
    precisions = np.asarray(precisions, dtype=np.float64)
    edit_distances = np.asarray(edit_distances, dtype=np.float64)
    if not (ratios.shape == precisions.shape == edit_distances.shape) or ratios.ndim != 1:
        raise ValueError("plot_precision_vs_ratio: ratios, precisions and edit_distances must be 1-d of one length")
    order = np.argsort(ratios)
    ratios, precisions, edit_distances = ratios[order], precisions[order], edit_distances[order]
    colors = [color_for(r) for r in ratios]
    figure, axes = _axes(ax)
    right = axes.twinx()
    axes.plot(ratios, precisions, color="0.2", linestyle="-", marker="o", markerfacecolor="white",
              label="Fox precision (word sets, left axis)")
    axes.scatter(ratios, precisions, c=colors, marker="o", s=50, edgecolors="0.2", zorder=3)
    right.plot(ratios, edit_distances, color="0.2", linestyle="--", marker="s", markerfacecolor="white",
               label="edit distance (characters, right axis)")
    right.scatter(ratios, edit_distances, c=colors, marker="s", s=50, edgecolors="0.2", zorder=3)
    axes.set_xscale("log", base=2)
    axes.set_xticks(ratios, [ratio_label(r) for r in ratios])
    axes.minorticks_off()
    axes.set_xlabel("compression ratio (text tokens per latent token, log scale)")
    axes.set_ylabel("precision (fraction of output words)")
    right.set_ylabel("normalised edit distance (edits per character)")
    # Both metrics lie in [0, 1]; the strip above 1 holds the legend, clear of the points.
    top = max(1.0, float(np.nanmax(edit_distances)) if edit_distances.size else 1.0)
    for side in (axes, right):
        side.set_ylim(0.0, 1.22 * top)
        side.set_yticks(np.linspace(0.0, top, 6))
    axes.grid(alpha=0.3)
    lines = axes.get_lines() + right.get_lines()
    axes.legend(lines, [line.get_label() for line in lines], loc="upper center", ncols=2, fontsize="small")
    axes.set_title(title)
    return figure


def plot_training_loss(logs: Mapping, title: str = "Training loss", consecutive: bool = False, ax=None):
    """Training loss against the optimiser step, one line per run.

    ``logs`` maps a ratio or label to the reports ``c3.fit`` returned (dicts with ``loss``) or to a 1-d array of
    losses. With ``consecutive``, each run's steps continue where the previous run's ended (training phases),
    and a dotted line marks each boundary. The loss is the mean cross-entropy per answer token, in nats.
    """
    figure, axes = _axes(ax)
    start = 0
    for index, key in enumerate(logs if consecutive else sort_keys(logs)):
        reports = logs[key]
        losses = np.asarray([report["loss"] for report in reports] if len(reports) and isinstance(reports[0], Mapping)
                            else reports, dtype=np.float64)
        steps = start + np.arange(1, len(losses) + 1)
        axes.plot(steps, losses, color=color_for(key), linewidth=1.2, label=ratio_label(key))
        if consecutive:
            if index:
                axes.axvline(start + 0.5, color="0.5", linestyle=":", linewidth=1)
            start += len(losses)
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("training loss (cross-entropy, nats per token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if logs:
        axes.legend()
    return figure
