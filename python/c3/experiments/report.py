"""A sweep's summary and report: means with 95% intervals across seeds, paired differences against C3,
passage-level block-bootstrap intervals, bits, compute, and the figures (learning curves, tracking, decay)."""
from __future__ import annotations

import math
import os

import numpy as np

from .. import _core, statistics
from ..plots import color_for, plot_error_heatmap, save_figure
from .heldout import SPLIT_FRACTIONS
from .runs import METRICS

# Information in bits (information_bits); absent from evaluations made before they were measured.
BIT_METRICS = ("reconstruction_bits_per_token", "prior_bits_per_token", "supplied_bits_per_passage",
               "bits_per_latent")
# The per-passage measures a passage-level (block bootstrap) interval is computed for.
PASSAGE_METRICS = ("token_accuracy", "teacher_forced_accuracy", "bits_per_latent")
CONFIDENCE = 0.95


def _seed_values(results: dict, domain: str, metric: str, method: str, ratio, seeds) -> dict:
    """{seed: value} of the seeds whose run measured `metric` (None and absent values left out)."""
    values = {}
    for seed in seeds:
        value = results["runs"][f"{method}-seed{seed}"][domain][str(ratio)].get(metric)
        if value is not None and math.isfinite(value):
            values[seed] = float(value)
    return values


def summarise(results: dict, methods, ratios, seeds) -> dict:
    """{domain: {metric: {method: {ratio: [mean, standard deviation over seeds (ddof 0)]}}}} (as recorded sweeps
    have it), and:

    - "intervals": {domain: {metric: {method: {ratio: statistics.seed_interval over the seeds}}}} (95%, Student t
      with n - 1 degrees of freedom; None where no seed measured it), for METRICS and BIT_METRICS;
    - "paired": {domain: {metric: {baseline: {ratio: statistics.paired_difference of C3 minus the baseline, seed
      by seed, plus "seeds"}}}} over the seeds both measured (when c3 is among the methods);
    - "passage_intervals": {domain: {metric: {method: {ratio: statistics.block_bootstrap}}}} when the passages
      carry document ids (results["held_out"]): each passage's value averaged over the seeds first, then documents
      resampled as blocks, for PASSAGE_METRICS."""
    summary = {}
    for domain in ("in_domain", "out_of_domain"):
        summary[domain] = {}
        for metric in METRICS:
            table = {}
            for method in methods:
                table[method] = {}
                for ratio in ratios:
                    values = [results["runs"][f"{method}-seed{seed}"][domain][str(ratio)][metric] for seed in seeds]
                    values = [v for v in values if v is not None]
                    table[method][str(ratio)] = [float(np.mean(values)) if values else None,
                                                 float(np.std(values)) if values else None]
            summary[domain][metric] = table
    intervals, paired, passage = {}, {}, {}
    held_out = results.get("held_out") or {}
    for domain in ("in_domain", "out_of_domain"):
        intervals[domain], paired[domain], passage[domain] = {}, {}, {}
        for metric in METRICS + BIT_METRICS:
            intervals[domain][metric] = {
                method: {str(r): (statistics.seed_interval(list(values.values()), CONFIDENCE) if values else None)
                         for r in ratios
                         for values in [_seed_values(results, domain, metric, method, r, seeds)]}
                for method in methods}
            if "c3" not in methods:
                continue
            paired[domain][metric] = {}
            for baseline in methods:
                if baseline == "c3":
                    continue
                paired[domain][metric][baseline] = {}
                for r in ratios:
                    ours = _seed_values(results, domain, metric, "c3", r, seeds)
                    theirs = _seed_values(results, domain, metric, baseline, r, seeds)
                    common = [seed for seed in seeds if seed in ours and seed in theirs]
                    entry = None
                    if common:
                        entry = statistics.paired_difference([ours[k] for k in common], [theirs[k] for k in common],
                                                             CONFIDENCE)
                        entry["seeds"] = common
                    paired[domain][metric][baseline][str(r)] = entry
        documents = held_out.get(f"{domain}_documents")
        if documents is None:
            continue
        for metric in PASSAGE_METRICS:
            passage[domain][metric] = {}
            for method in methods:
                passage[domain][metric][method] = {}
                for r in ratios:
                    rows = [results["runs"][f"{method}-seed{seed}"][domain][str(r)].get("per_passage", {}).get(metric)
                            for seed in seeds]
                    rows = [row for row in rows if row is not None and len(row) == len(documents)]
                    passage[domain][metric][method][str(r)] = (
                        statistics.block_bootstrap(np.mean(np.asarray(rows, np.float64), axis=0), documents,
                                                   confidence=CONFIDENCE) if rows else None)
    summary.update(intervals=intervals, paired=paired, passage_intervals=passage)
    return summary


# ---- the report -----------------------------------------------------------------------------------------------
def _figure(rows=1, columns=1, width=6.4, height=4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows))
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(rows, columns, k + 1) for k in range(rows * columns)]


def _save(figure, output, name):
    """Writes the figure as output/name (PNG) through the one atomic writer (plots.save_figure)."""
    figure.tight_layout()
    save_figure(figure, os.path.join(output, name), formats=("png",), dpi=72)
    return name


def _ratio_panels(ratios, seed: int, ylabel: str, draw):
    """One panel per ratio; draw(axis, index, ratio) plots each method's line in it."""
    figure, axes = _figure(1, len(ratios), width=3.6, height=3.0)
    for index, (axis, ratio) in enumerate(zip(axes, ratios)):
        draw(axis, index, ratio)
        axis.set_title(f"{ratio}x, seed {seed}")
        axis.set_xlabel("step")
        axis.set_ylabel(ylabel)
    if axes[0].get_legend_handles_labels()[0]:  # no lines: every run was untrained or imported without a log
        axes[0].legend(fontsize="small")
    figure.tight_layout()
    return figure


def learning_curves_figure(logs: dict, ratios, seed: int):
    """Training loss against step, one panel per ratio, one line per method (a running mean over that ratio's
    steps): shows when each method leaves the language-model prior, and whether its loss still falls at the end.
    logs: {method: [(ratio, loss) of every step]}."""
    def draw(axis, index, ratio):
        for method, log in logs.items():
            steps = np.array([k + 1 for k, (r, _) in enumerate(log) if r == ratio])
            losses = np.array([loss for r, loss in log if r == ratio], dtype=float)
            if len(losses) == 0:
                continue
            window = max(1, len(losses) // 20)
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1:], smooth, label=method, color=color_for(method))
    return _ratio_panels(ratios, seed, "training loss (nats per token)", draw)


def _learning_curves(output, results, methods, ratios, seed):
    logs = {method: results["runs"][f"{method}-seed{seed}"]["training"].get("log") or [] for method in methods}
    return _save(learning_curves_figure(logs, ratios, seed), output, "learning_curves.png")


def tracking_figure(tracks: dict, ratios, seed: int):
    """Held-out teacher-forced accuracy during training, one panel per ratio, one line per method: a ratio whose
    line is flat over the last steps has converged at this schedule. tracks: {method: [(step, [accuracy of each
    ratio])]}."""
    def draw(axis, index, ratio):
        for method, track in tracks.items():
            if track:
                axis.plot([step for step, _ in track], [values[index] for _, values in track], marker=".",
                          label=method, color=color_for(method))
    return _ratio_panels(ratios, seed, "held-out teacher-forced accuracy", draw)


def _tracking_lines(results, methods, ratios, seeds) -> list:
    """A Markdown table of each run's tracked held-out accuracy at three quarters of its steps and at the end."""
    lines = []
    for seed in seeds:
        for method in methods:
            training = results["runs"][f"{method}-seed{seed}"]["training"]
            track, tracked_ratios = training.get("track") or [], training.get("track_ratios") or []
            if len(track) < 2 or list(tracked_ratios) != list(ratios):
                continue
            last_step = track[-1][0]
            middle = min(track, key=lambda point: abs(point[0] - 0.75 * last_step))
            cells = [f"{a:.3f} → {b:.3f}" for a, b in zip(middle[1], track[-1][1])]
            lines.append(f"| {method} | {seed} | {middle[0]} → {last_step} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    header = ["## Converged?", "",
              "Held-out teacher-forced accuracy scored during training (in-domain, "
              f"{results['settings'].get('track_passages')} passages per ratio), at about three quarters of the "
              "steps and at the end: a ratio that still gains is still being learned.", "",
              "| method | seed | steps | " + " | ".join(f"{r}x" for r in ratios) + " |",
              "|---|---|---|" + "---|" * len(ratios)]
    return header + lines + [""]


def seed_band(curves, confidence: float = CONFIDENCE) -> dict:
    """The mean across seeds of curves measured at the same positions (one 1-D array per seed) and its t-interval
    at each position (statistics.seed_interval; NaN values, such as empty bins, left out): dict(mean, low, high)
    arrays. One seed (or one value at a position) gives a mean and no band (NaN low and high)."""
    table = np.asarray([np.asarray(curve, np.float64) for curve in curves], np.float64)
    if table.ndim != 2 or table.shape[0] == 0:
        raise _core.ShapeError(f"seed_band needs one curve per seed, all of one length; got shape {table.shape}")
    mean, low, high = (np.full(table.shape[1], np.nan) for _ in range(3))
    for position in range(table.shape[1]):
        values = table[:, position][np.isfinite(table[:, position])]
        if values.size:
            entry = statistics.seed_interval(values, confidence)
            mean[position], low[position], high[position] = entry["mean"], entry["low"], entry["high"]
    return dict(mean=mean, low=low, high=high)


def decay_figure(runs: list, ratios, method: str):
    """Accuracy by relative position, one panel per ratio, one line per kind of accuracy (teacher-forced, strict
    and aligned greedy), each the mean across seeds with its 95% t-interval across seeds as a band. runs: the
    in-domain evaluation of `method` for each seed ({ratio: {"curves": ...}})."""
    figure, axes = _figure(1, len(ratios), width=4.0, height=3.2)
    for axis, ratio in zip(axes, ratios):
        kinds = runs[0][str(ratio)]["curves"]
        for kind in kinds:
            position = np.asarray(kinds[kind]["position"], np.float64)
            band = seed_band([np.asarray(run[str(ratio)]["curves"][kind]["accuracy"], np.float64) for run in runs])
            line, = axis.plot(position, band["mean"], marker=".", label=kind.replace("_", " "))
            if np.isfinite(band["low"]).any():
                axis.fill_between(position, band["low"], band["high"], alpha=0.2, color=line.get_color())
        axis.set_ylim(0.0, 1.02)
        axis.set_xlabel("relative position in the text")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{method} {ratio}x ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
        axis.legend(loc="lower left", fontsize="small")
    return figure


def _interval_cell(entry, digits: int = 3, signed: bool = False) -> str:
    """"mean [low, high]" of a seed_interval/paired_difference/block_bootstrap dict; "n/a" for None, and the mean
    with "(1 seed)" when there is no interval."""
    if entry is None:
        return "n/a"
    mean = entry.get("mean", entry.get("estimate"))
    if mean is None:
        return "n/a"
    form = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    low, high = entry.get("low"), entry.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return form.format(mean) + " (1 seed)"
    return f"{form.format(mean)} [{form.format(low)}, {form.format(high)}]"


def _flops_text(value: float) -> str:
    return f"{value:.3g}"


def write_report(output: str, results: dict) -> None:
    """report.md and the plots from results (as run_sweep returns them)."""
    plan, summary = results["plan"], results["summary"]
    methods, ratios, seeds = plan["methods"], plan["ratios"], plan["seeds"]
    if "intervals" not in summary:  # results summarised before intervals existed
        summary = dict(summary, **{key: value for key, value in summarise(results, methods, ratios, seeds).items()
                                   if key not in summary})
    intervals = summary["intervals"]
    plots = []
    for metric, label in (("token_accuracy", "greedy token accuracy (strict)"),
                          ("teacher_forced_accuracy", "teacher-forced token accuracy"),
                          ("continuation_bits_per_byte", "continuation bits per byte")):
        figure, (axis,) = _figure()
        for method in methods:
            entries = [intervals["in_domain"][metric][method][str(r)] for r in ratios]
            mean = np.array([np.nan if e is None else e["mean"] for e in entries], np.float64)
            half = np.array([0.0 if e is None or e["half_width"] is None or not math.isfinite(e["half_width"]) else e["half_width"]
                             for e in entries], np.float64)
            axis.errorbar(ratios, mean, yerr=half, marker="o", capsize=3, label=method,
                          color=color_for(method))
        axis.set_xscale("log", base=2)
        axis.set_xticks(ratios)
        axis.set_xticklabels([f"{r}x" for r in ratios])
        axis.set_xlabel("compression ratio (context tokens per latent)")
        axis.set_ylabel(label)
        # Two lines: one line of this length is wider than the figure and was clipped.
        axis.set_title(f"{label} against ratio\n(held-out, mean and 95% t-interval over {len(seeds)} seeds)")
        axis.legend()
        plots.append(_save(figure, output, f"{metric}_vs_ratio.png"))
    plots.append(_learning_curves(output, results, methods, ratios, seeds[0]))
    tracks = {method: results["runs"][f"{method}-seed{seeds[0]}"]["training"].get("track") or [] for method in methods}
    if any(tracks.values()):
        plots.append(_save(tracking_figure(tracks, ratios, seeds[0]), output, "held_out_during_training.png"))
    first = f"{methods[0]}-seed{seeds[0]}"
    for method in methods:
        plots.append(_save(decay_figure([results["runs"][f"{method}-seed{seed}"]["in_domain"] for seed in seeds],
                                        ratios, method), output, f"decay_{method}.png"))
        run = results["runs"][f"{method}-seed{seeds[0]}"]["in_domain"]
        figure, axes = _figure(1, len(ratios), width=4.0, height=3.2)
        for axis, ratio in zip(axes, ratios):
            table = {k: np.asarray(v, dtype=float) for k, v in run[str(ratio)]["teacher_errors"].items()}
            plot_error_heatmap(table, title=f"{method} {ratio}x teacher-forced errors", ax=axis)
        plots.append(_save(figure, output, f"heatmap_{method}.png"))
    settings = results["settings"]
    method_steps = settings.get("method_steps") or {}
    steps_text = (f"{plan['steps']} steps per run" if not plan.get("equal_flops") else
                  f"equal training FLOPs: every method trains for about the FLOPs of C3 at {plan['steps']} steps ("
                  + ", ".join(f"{m} {method_steps.get(m)}" for m in methods) + " steps)")
    recipe = plan.get("recipe", "recorded")
    unit = _unit(results)
    lines = ["# c3 sweep: C3 against baselines under the same latent budget", "",
             f"Methods {', '.join(methods)}; ratios {', '.join(f'{r}x' for r in ratios)} at N = "
             f"{settings['latents']} latents; seeds {', '.join(map(str, seeds))}; {steps_text} "
             f"({plan['size']} size; recipe {recipe}: AdamW beta2 {settings.get('beta2', 0.999)}). One model per "
             f"method and seed, trained on contexts of mixed length "
             f"(about {settings['batch_tokens']} context tokens per step; ratios unlocked in increasing "
             f"order over the first {plan['curriculum']:.0%} of the steps); each ratio is read off held-out "
             f"contexts of exactly ratio x N {unit}.", "",
             f"In-domain text: {results['corpus']}. Out-of-domain text: {results['out_of_domain_corpus']}.", ""]
    lines += _pretrained_lines(results, methods)
    lines[1:1] = _provenance_lines(results, methods, seeds)
    lines += _held_out_lines(results)
    lines += [f"Intervals: the mean over seeds with its two-sided 95% Student t-interval (n - 1 degrees of freedom; "
              f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}; one seed gives no interval).", ""]
    for domain in ("in_domain", "out_of_domain"):
        passages = results["runs"][first][domain][str(ratios[0])]["passages"]
        lines += [f"## {domain.replace('_', '-')} ({passages} passages per ratio)", ""]
        for metric in METRICS:
            lines += [f"**{metric}** (mean over seeds [95% t-interval])", "",
                      "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for method in methods:
                cells = [_interval_cell(intervals[domain][metric][method][str(r)]) for r in ratios]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += _paired_lines(summary, methods, ratios)
    lines += _passage_lines(results, summary, methods, ratios, seeds)
    lines += _bits_lines(results, summary, methods, ratios)
    lines += _first_error_lines(results, methods, ratios, seeds)
    lines += _compute_lines(results, methods)
    lines += _tracking_lines(results, methods, ratios, seeds)
    lines += ["## Position decay or content difficulty", "",
              "Logistic regression of each token's teacher-forced error on its relative position (0..1) and its "
              "prior surprisal (bits), seed " + str(seeds[0]) + ", in-domain: coefficient (standard error).", "",
              "| method | ratio | position | surprisal | error rate |", "|---|---|---|---|---|"]
    for method in methods:
        run = results["runs"][f"{method}-seed{seeds[0]}"]["in_domain"]
        for r in ratios:
            fit = run[str(r)]["teacher_regression"]
            cells = [("n/a" if c is None else f"{c:.3f} ({s:.3f})") for c, s in
                     zip(fit["coefficients"][1:], fit["stderr"][1:])]
            lines.append(f"| {method} | {r}x | {cells[0]} | {cells[1]} | {fit['error_rate']:.3f} |")
    lines += ["", "## Plots", "",
              "Decay plots (decay_*.png): accuracy by relative position, the mean over seeds with its 95% "
              "t-interval across seeds as the band.", ""] + [f"![{name}]({name})" for name in plots] + [""]
    _core.write_file_atomically(os.path.join(output, "report.md"), "\n".join(lines) + "\n")


def _provenance_lines(results: dict, methods, seeds) -> list:
    """The command, date, machine and hours of training (from each run's trained.json record)."""
    source = results.get("provenance")
    if not source:
        return []
    hours = {}
    for method in methods:
        for seed in seeds:
            training = (results["runs"].get(f"{method}-seed{seed}") or {}).get("training") or {}
            if isinstance(training.get("train_seconds"), (int, float)):
                hours.setdefault(method, []).append(training["train_seconds"] / 3600)
    total = sum(sum(values) for values in hours.values())
    per_method = "; ".join(f"{method} {np.mean(values):.2f} h a run" for method, values in hours.items())
    return ["", f"- **Command:** `{source['command']}`",
            f"- **Date and machine:** {source['date']}; {source['cpu']}, {source['cores']} cores, "
            f"c3 {source['version']} ({source['build']} build) on {source['threads']} "
            f"thread{'' if source['threads'] == 1 else 's'}",
            f"- **Hours of training:** {total:.1f} in all ({per_method}); runs may have shared the machine "
            "with other work, so hours bound the cost from above."]


def _unit(results: dict) -> str:
    """What a sweep's contexts count: bytes (byte-level cascades) or tokens (a pretrained sweep's)."""
    return "tokens" if "pretrained" in results["settings"] else "bytes"


def _pretrained_lines(results: dict, methods) -> list:
    """What a pretrained sweep starts from and what each method trains."""
    settings = results["settings"]
    source = settings.get("pretrained")
    if not source:
        return []
    from .recipe import trainable_parts

    steps = settings.get("method_steps") or {}
    rows = []
    for method in methods:
        parts = [part for part, trains in trainable_parts(method).items() if trains]
        rows.append(f"| {method} | {', '.join(parts) or 'nothing (the pretrained decoder is its model)'} | "
                    f"{steps.get(method, results['plan']['steps'])} |")
    encoder, decoder = settings["encoder_model"], settings["decoder_model"]
    return ["## Pretrained models", "",
            f"Encoder and decoder from {source['name']}: encoder {encoder['num_layers']} layers of "
            f"{encoder['hidden_size']}, decoder {decoder['num_layers']} layers of {decoder['hidden_size']}, "
            f"vocabulary {settings['vocab']} plus C3's three special tokens. Contexts, ratios and continuations "
            f"count the decoder's tokens. Fresh parts (Q, projector, hierarchical blocks) learn at "
            f"{settings['learning_rate']:g}; a pretrained part that trains learns at that times its scale (encoder "
            f"{settings.get('encoder_scale', 1):g}, decoder {settings.get('decoder_scale', 1):g}).", "",
            "| method | trains | steps |", "|---|---|---|"] + rows + [""]


def _first_error_lines(results: dict, methods, ratios, seeds) -> list:
    """Where strict greedy decoding first goes wrong: after that position a strict curve measures error
    propagation as much as what the latents hold."""
    plan_runs = [results["runs"].get(f"{m}-seed{s}") or {} for m in methods for s in seeds]
    if not any("first_error_positions" in (run.get("in_domain") or {}).get(str(ratios[0]), {}) for run in plan_runs):
        return []  # a sweep evaluated before the measure existed
    unit = _unit(results)
    lines = ["## First greedy error", "",
             f"Position of each passage's first strict greedy error as a fraction of its context (ratio x N {unit}), "
             "pooled over seeds and in-domain passages: median [quartiles], and the share of passages decoded "
             "without an error.", "",
             "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    latents = results["settings"]["latents"]
    for method in methods:
        cells = []
        for r in ratios:
            positions = [p for s in seeds for p in
                         results["runs"][f"{method}-seed{s}"]["in_domain"][str(r)].get("first_error_positions", [])]
            if not positions:
                cells.append("n/a")
                continue
            fraction = np.asarray(positions, np.float64) / (r * latents)
            q1, median, q3 = np.quantile(fraction, [0.25, 0.5, 0.75])
            cells.append(f"{median:.2f} [{q1:.2f}, {q3:.2f}]; {np.mean(fraction >= 1):.0%} clean")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _held_out_lines(results: dict) -> list:
    """The held-out design: which split, how many passages, how many dropped for leakage."""
    held_out = results.get("held_out") or {}
    if held_out.get("design") not in ("documents", "prose"):
        return ["Held-out design: regions (the default corpus cut into 100 contiguous blocks, a fixed tenth held "
                "out; held-out windows whose lowest ratio's part occurs verbatim in the training blocks skipped).",
                ""]
    report = held_out["report"]
    inside, outside = report["in_domain"], report["out_of_domain"]
    unit = inside.get("unit", "bytes")
    if held_out["design"] == "prose":
        return ["## Held-out design: prose split by book", "",
                f"Trained on the train split of the King James Version's books ({report['train_documents']} books, "
                f"{report['train_bytes']} bytes; corpus.document_splits by fractions {SPLIT_FRACTIONS}, seed 0 for "
                f"every seed). Evaluated in-domain on the **{report['split']}** split: {inside['documents']} books "
                f"cut into {inside['available']} non-overlapping passages of {inside['length']} {unit}, of which "
                f"{inside['leaked']} were dropped because some {inside['window']}-byte stretch of their text occurs "
                f"verbatim in the training text; {inside['returned']} passages from "
                f"{len(set(held_out['in_domain_documents']))} books evaluated (requested {inside['requested']}). "
                f"Out-of-domain: {outside['returned']} passages of {outside['length']} {unit} from "
                f"{len(set(held_out['out_of_domain_documents']))} of {outside['documents']} documentation topics "
                "(never trained on: no leakage check).", ""] + ([f"Note: {inside['note']}.", ""]
                                                                if inside.get("short") else [])
    lines = ["## Held-out design: documents", "",
             f"Trained on the train split of the corpus's documents ({report['train_documents']} documents, "
             f"{report['train_bytes']} bytes; corpus.document_splits by fractions {SPLIT_FRACTIONS}, seed 0 for "
             f"every seed). Evaluated in-domain on "
             f"the **{report['split']}** split: {inside['documents']} documents cut into {inside['available']} "
             f"non-overlapping passages of {inside['length']} bytes, of which {inside['leaked']} were dropped because "
             f"some {inside['window']}-byte stretch of them occurs verbatim in the training text; "
             f"{inside['returned']} passages from {len(set(held_out['in_domain_documents']))} documents evaluated "
             f"(requested {inside['requested']}). Out-of-domain: {outside['returned']} passages of "
             f"{outside['length']} bytes from {len(set(held_out['out_of_domain_documents']))} of "
             f"{outside['documents']} books, cut the same way (never trained on: no leakage check).", ""]
    if inside.get("short"):
        lines += [f"Note: {inside['note']}.", ""]
    return lines


def _paired_lines(summary: dict, methods, ratios) -> list:
    paired = summary.get("paired") or {}
    if not any(paired.get(domain) for domain in ("in_domain", "out_of_domain")):
        return []
    lines = ["## C3 minus each baseline, seed by seed", "",
             "The per-seed difference C3 - baseline (both trained with the same seed), its mean and 95% t-interval "
             "(statistics.paired_difference). An interval that excludes 0 is a difference the seeds support; for "
             "bits per byte and bits per token lower is better.", ""]
    for domain in ("in_domain", "out_of_domain"):
        for metric in ("token_accuracy", "teacher_forced_accuracy", "continuation_bits_per_byte", "bits_per_latent"):
            table = paired.get(domain, {}).get(metric)
            if not table:
                continue
            lines += [f"**{metric}**, {domain.replace('_', '-')}: C3 - baseline", "",
                      "| baseline | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for baseline in table:
                lines.append(f"| {baseline} | " + " | ".join(_interval_cell(table[baseline][str(r)], signed=True)
                                                           for r in ratios) + " |")
            best = _best_baseline_cells(summary, domain, metric, list(table), ratios)
            if best:
                lines.append("| **the best baseline** | " + " | ".join(best) + " |")
            lines.append("")
    return lines


LOWER_IS_BETTER = ("continuation_bits_per_byte", "reconstruction_bits_per_token")


def _best_baseline_cells(summary: dict, domain: str, metric: str, baselines, ratios) -> list:
    """Per ratio, the baseline with the best mean over seeds (a training variant of C3 is not a baseline) and C3
    minus it, seed by seed: the verdict against the strongest competitor at that ratio."""
    from .recipe import VARIANTS

    intervals = summary["intervals"][domain][metric]
    candidates = [b for b in baselines if b not in VARIANTS]
    cells = []
    for r in ratios:
        scored = [(intervals[b][str(r)]["mean"], b) for b in candidates
                  if intervals.get(b, {}).get(str(r)) and intervals[b][str(r)].get("mean") is not None]
        if not scored:
            cells.append("n/a")
            continue
        _, name = (min if metric in LOWER_IS_BETTER else max)(scored)
        cells.append(f"{name}: {_interval_cell(summary['paired'][domain][metric][name][str(r)], signed=True)}")
    return cells if any(cell != "n/a" for cell in cells) else []


def _passage_lines(results: dict, summary: dict, methods, ratios, seeds) -> list:
    passage = summary.get("passage_intervals") or {}
    if not any(passage.get(domain) for domain in ("in_domain", "out_of_domain")):
        return []
    lines = ["## Passage-level intervals (documents as blocks)", "",
             f"Each passage's value averaged over the {len(seeds)} seeds, then a block bootstrap over documents "
             "(statistics.block_bootstrap, 2,000 resamples, 95% percentile interval): how much the verdict depends "
             "on which documents were held out. Few documents give wide intervals.", ""]
    for domain in ("in_domain", "out_of_domain"):
        for metric, table in (passage.get(domain) or {}).items():
            lines += [f"**{metric}**, {domain.replace('_', '-')} (mean over passages [95% block-bootstrap "
                      "interval])", "",
                      "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for method in methods:
                lines.append(f"| {method} | " + " | ".join(_interval_cell(table[method][str(r)]) for r in ratios)
                             + " |")
            lines.append("")
    return lines


def _bits_lines(results: dict, summary: dict, methods, ratios) -> list:
    intervals = summary["intervals"]["in_domain"]
    if all(intervals["bits_per_latent"][m][str(r)] is None for m in methods for r in ratios):
        return []
    prior = ("the pretrained decoder itself (no_context, untrained)" if "no_context" in methods and
             "pretrained" in results["settings"] else
             "the sweep's no_context model of the same seed" if "no_context" in methods else
             "each cascade's own decoder with an empty latent block (no no_context run: a rough prior for methods "
             "whose decoder never saw an empty block)")
    lines = ["## Information in bits", "",
             f"Per token, the reconstruction surprisal -log2 p(true token | latents, true prefix) and the prior "
             f"surprisal under {prior}; the latents supply prior - reconstruction bits at each position, summed over "
             f"a passage of ratio x N {_unit(results)}, and divided by N = {results['settings']['latents']}: **bits per latent** "
             "(in-domain; mean over seeds [95% t-interval]). A lossless code of the context would need all of its "
             "prior bits.", "",
             "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(_interval_cell(intervals["bits_per_latent"][method][str(r)], 2)
                                                   for r in ratios) + " |")
    lines += ["", "Reconstruction and prior surprisal, bits per token (in-domain, mean over seeds):", "",
              "| method | " + " | ".join(f"{r}x recon / prior" for r in ratios) + " |",
              "|---|" + "---|" * len(ratios)]
    for method in methods:
        cells = []
        for r in ratios:
            recon = intervals["reconstruction_bits_per_token"][method][str(r)]
            prior_entry = intervals["prior_bits_per_token"][method][str(r)]
            cells.append("n/a" if recon is None or prior_entry is None else
                         f"{recon['mean']:.3f} / {prior_entry['mean']:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _compute_lines(results: dict, methods) -> list:
    compute = results.get("compute")
    if not compute:
        return []
    reference = (compute.get("c3") or {}).get("training_flops")
    lines = ["## Training compute", "",
             "Estimated training FLOPs per run (recipe.training_flops: 6 x matmul parameters x tokens + attention "
             "6 x layers x tokens^2 x width, per part each method runs, each step's ratio in expectation over the "
             "curriculum; in a pretrained sweep a frozen decoder counts 4 passes instead of 6 and a frozen encoder "
             "2).", "",
             "| method | steps | training FLOPs | relative to c3 |", "|---|---|---|---|"]
    for method in methods:
        entry = compute[method]
        relative = f"{entry['training_flops'] / reference:.2f}" if reference else "n/a"
        lines.append(f"| {method} | {entry['steps']} | {_flops_text(entry['training_flops'])} | {relative} |")
    return lines + [""]
