"""Figures of information loss: decay curves, ratio heatmaps, precision against ratio, training loss, error
heatmaps by position and surprisal, and the three accuracy curves.

Plots use matplotlib's object API with the Agg canvas (no pyplot state), so they work headless and from threads;
every plot function takes ``ax=`` (draw into the caller's figure) and returns its ``Figure``, which shows itself as
the last value of a notebook cell. matplotlib is imported on first use.
"""
from __future__ import annotations

import functools
import io
import math
import os
import zlib
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from . import _core
from .analysis import bin_centers

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

    NotebookFigure.__qualname__ = "NotebookFigure"  # pickles as c3.plots.NotebookFigure (module __getattr__)
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


def plot_error_heatmap(table: dict, title: str = "Error rate by position and surprisal", ax=None):
    """The error_table's rate as a heatmap: relative position across, surprisal bins up."""
    figure, ax = _axes(ax)
    rate = np.asarray(table["rate"], np.float64)
    image = ax.imshow(rate.T, origin="lower", aspect="auto", cmap="magma_r", vmin=0.0,
                      vmax=max(1e-9, float(np.nanmax(rate)) if np.isfinite(rate).any() else 1.0),
                      extent=(0.0, 1.0, 0, rate.shape[1]))
    edges = table["surprisal_edges"]
    ax.set_yticks(np.arange(rate.shape[1]) + 0.5)
    ax.set_yticklabels([f"{edges[j]:.1f}-{edges[j + 1]:.1f}" for j in range(rate.shape[1])])
    ax.set_xlabel("relative position in the text")
    ax.set_ylabel("prior surprisal (bits)")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="error rate")
    return figure


def plot_accuracy_curves(curves: dict, title: str = "Accuracy by position", ax=None):
    """The three accuracy_curves on one axis, with binomial standard-error bands."""
    figure, ax = _axes(ax)
    for name, curve in curves.items():
        position, accuracy = curve["position"], curve["accuracy"]
        ax.plot(position, accuracy, marker=".", label=name.replace("_", " "))
        stderr = np.nan_to_num(curve["stderr"])
        ax.fill_between(position, accuracy - stderr, accuracy + stderr, alpha=0.2)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("relative position in the text")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower left")
    return figure


def plot_document_positions(measures: dict, by: str = "by_distance_from_end", title: Optional[str] = None,
                            ax=None):
    """A document's measures (c3.eval.documents.document_measures) by chunk index or by distance from the end:
    teacher-forced, strict greedy and aligned accuracy on the left axis, the bits the latents supply per token on the
    right, each point an average over the documents that have that chunk (positions without any are left out)."""
    if by not in ("by_chunk_index", "by_distance_from_end"):
        raise _core.C3ValueError(f"by must be by_chunk_index or by_distance_from_end, got {by!r}")
    figure, ax = _axes(ax)
    values = measures[by]
    position = np.arange(len(values["chunks"]))
    for name, label in (("teacher_forced", "teacher forced"), ("strict", "strict greedy"),
                        ("aligned", "aligned greedy")):
        series = np.array([np.nan if v is None else v for v in values[name]], dtype=np.float64)
        if np.isfinite(series).any():
            ax.plot(position, series, marker=".", label=label)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(values["index"] + " (chunks of " + str(measures["chunk_tokens"]) + " tokens)")
    ax.set_ylabel("accuracy")
    supplied = np.array([np.nan if v is None else v for v in values["supplied_bits"]], dtype=np.float64)
    right = ax.twinx()
    right.plot(position, supplied, color="0.4", linestyle="--", label="bits supplied per token")
    right.set_ylabel("bits the latents supply per token")
    ax.set_title(title or f"Across the document, {values['index']}")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left")
    return figure
