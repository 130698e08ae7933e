"""The main job: train small byte-level cascades from scratch on the CPU, read each compression ratio off held-out
text, beside mean pooling and truncation under the same latent budget, and write a report (Markdown, plots as PNG
and PDF, JSON) on where the information is lost. Each trained cascade is kept in the output's cascades/<method>, for
`c3 eval --cascade` on other text.

    c3 demo --output reports/demo [--ratios 2,4,8] [--steps 8000 | --minutes 10] [--size default|tiny] [--seed 0]

Every ratio keeps N latents fixed and changes the passage length (ratio = passage bytes / N). The recipe is the
sweep's (c3.experiments.recipe) with a shallower model (3 layers, rotary base 10^3, more steps in the same time): each
method trains ONE model on contexts of mixed length, the ratios unlocked in increasing order over the first part of the steps
(a cascade trained on every ratio at once from the start stays at its language-model prior), every step holding about
the same number of context bytes, and each step's ratio drawn in proportion to its length, so that every ratio trains
on about the same number of passages. C3, mean pooling and truncation (the same decoder and N) train the same number
of steps. By default that is a fixed number (STEPS_DEFAULT), so that the numbers do not depend on the machine's
speed; every step runs in a fixed number of data-parallel shares, so that they do not depend on its thread count
either (they reproduce bit for bit at the same seed on any number of threads of one machine). The default size takes
about 12 minutes on a 2-core AMD Zen 4 and twice that on a Zen 3 (AVX2). With --minutes the steps are sized to the
budget from each method's measured speed instead.
"""
from __future__ import annotations

import itertools
import json
import numbers
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from .. import _core, corpus, plots
from ..eval import evaluate
from ..training import fit
from . import heldout, recipe
from .batches import MixedBatches
from .report import learning_curves_figure

# Fixed steps of every method at the default size: about 12 minutes on a 2-core Zen 4 (AVX-512), 24 on a Zen 3.
STEPS_DEFAULT = 4000
DEFAULT_RATIOS = (2, 4, 8)

SIZES = {
    # encoder and decoder shapes, latents, context bytes per step, curriculum fraction, steps, evaluation passages;
    # no continuation (c3.recipe.build_cascade sizes the decoder for it); data-parallel shares, fixed so that the
    # trained cascades are the same on any number of threads; each step's ratio drawn in proportion to its length
    # (MixedBatches' balance), so that 8x, the slowest to learn, gets the most steps
    # The model is the sweep's small shape: 3 layers, rotary base 10^3. AdamW's beta2 is the sweep's (recipe.RECIPES'
    # "recorded", 0.999), chosen on the dev split at this schedule too (docs/RESULTS.md, "The sweep's recipe").
    "default": dict(model=dict(recipe.SIZES["small"]["model"]),
                    latents=16, batch_tokens=1024, curriculum=0.4, learning_rate=2e-3, min_lr_ratio=0.05,
                    beta2=recipe.RECIPES["recorded"]["beta2"],
                    steps=STEPS_DEFAULT, evaluate=128, continuation=0, shares=4, balance="passages"),
    "tiny": dict(model=dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
                 latents=4, batch_tokens=32, curriculum=0.5, learning_rate=3e-3, min_lr_ratio=0.05, steps=8,
                 evaluate=8, continuation=0, shares=2, balance="passages"),
}
METHODS = ("c3", "mean_pool", "truncate")
CASCADES = "cascades"  # the folder of the output where each method's trained cascade is saved


def held_out_texts(train_regions, held_out_regions, ratio: int, latents: int, count: int) -> list:
    """`count` held-out passages of ratio * N bytes that occur nowhere in the training text, as strings (decoded
    leniently where a window cuts a character, as corpus.passages does)."""
    windows = heldout.evaluation_passages(held_out_regions, ratio * latents, count, unseen_in=train_regions)
    return [bytes(int(b) for b in window).decode("utf-8", errors="ignore") for window in windows]


def mixed_batches(train_regions, ratios, size: dict, seed: int, steps: int):
    """The sweep's mixed-ratio batches (curriculum over the first size["curriculum"] of `steps`), as a generator
    of context rows."""
    data = MixedBatches(train_regions, ratios, size["latents"], size["batch_tokens"], size["continuation"],
                              seed=seed + 1000, curriculum_steps=int(round(size["curriculum"] * steps)),
                              balance=size.get("balance", "bytes"))
    for step in itertools.count():
        yield data.draw(step)[0]


def seconds_per_step(method: str, ratios, size: dict, seed: int, train_regions) -> float:
    """One training step's time for `method`, measured with a throwaway cascade on the longest ratio's batches
    (token-balanced, so every ratio costs about the same)."""
    cascade = recipe.build_cascade(method, size, max(ratios), seed)
    probe = cascade.trainer(learning_rate=0.0)
    batches = mixed_batches(train_regions, [max(ratios)], size, seed, 1)
    cascade.train_step(probe, next(batches))  # the first step allocates: not timed
    started = time.perf_counter()
    for _ in range(3):
        cascade.train_step(probe, next(batches))
    return (time.perf_counter() - started) / 3


def train(method: str, ratios, size: dict, seed: int, steps: int, train_regions, progress: bool = True):
    """Trains one `method` cascade on the mixed ratios for `steps` steps; returns (cascade, reports)."""
    cascade = recipe.build_cascade(method, size, max(ratios), seed)
    trainer = recipe.make_trainer(cascade, size, steps)
    log = fit(trainer, mixed_batches(train_regions, ratios, size, seed, steps), steps,
              step_fn=lambda t, batch: dict(cascade.train_step(t, batch), ratio=batch.shape[1] // size["latents"]),
              progress=progress,
              description=f"{method} on {','.join(f'{r}x' for r in sorted(ratios))}")
    return cascade, log


def cascade_path(output_dir: str, method: str) -> str:
    """Where run_demo (and save_cascade) keeps `method`'s trained cascade: output_dir/cascades/<method>."""
    return os.path.join(output_dir, CASCADES, method)


def save_cascade(cascade, output_dir: str, method: str) -> str:
    """Saves a trained cascade at cascade_path(output_dir, method), where Cascade.load and `c3 eval --cascade` read
    it (Cascade.save replaces the folder atomically); returns the path. It draws no random numbers and changes no
    parameter, so saving leaves training and evaluation as they were."""
    path = cascade_path(output_dir, method)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cascade.save(path)
    return path


def accuracy_curves_figure(results: dict, method: str = "C3"):
    """Teacher-forced, strict greedy and aligned greedy accuracy by relative position, one panel per ratio.
    results: {ratio: c3.eval.evaluate's metrics}. A greedy "decay" that teacher forcing does not show is error
    propagation, not information lost from the latents. The figure shows itself in a notebook."""
    ratios = sorted(results)
    figure = plots.new_figure(3.6 * len(ratios), 3.0)
    for axis, r in zip(figure.subplots(1, len(ratios), squeeze=False)[0], ratios):
        plots.plot_accuracy_curves({"teacher_forced": results[r]["teacher_decay"],
                                        "strict_greedy": results[r]["strict_decay"],
                                        "aligned_greedy": results[r]["decay"]}, title=f"{method}, {r}x", ax=axis)
    return figure


def run_demo(output_dir: str = "reports/demo", ratios=DEFAULT_RATIOS, minutes: Optional[float] = None,
             size: str = "default", seed: int = 0, progress: bool = True, steps: Optional[int] = None) -> dict:
    """Trains C3, mean pooling and truncation (the size's fixed steps, `steps` of them, or as many as fit in
    `minutes`), evaluates each at every ratio on held-out text and writes the report; returns C3's metrics by ratio
    (the baselines' are in baselines.json, by method and ratio). Each trained cascade is saved at
    cascade_path(output_dir, method), for `c3 eval --cascade` on other text."""
    if size not in SIZES:
        raise _core.C3ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if steps is not None:
        if minutes is not None:
            raise _core.C3ValueError(f"give steps or minutes, not both: got steps={steps!r}, minutes={minutes!r}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise _core.C3ValueError(f"steps must be a whole number of at least 1, got {steps!r}")
    ratios = sorted({int(r) for r in ratios})
    if not ratios or ratios[0] < 1:
        raise _core.C3ValueError(f"ratios must be at least 1, got {ratios}")
    os.makedirs(output_dir, exist_ok=True)
    config = SIZES[size]
    started = time.perf_counter()
    train_regions, held_out_regions = heldout.default_regions()
    steps = config["steps"] if steps is None else int(steps)
    if minutes is not None:
        # 85% of the budget trains (the rest evaluates), the same number of steps for every method.
        per_step = sum(seconds_per_step(m, ratios, config, seed, train_regions) for m in METHODS)
        steps = max(10, int(minutes * 60.0 * 0.85 / per_step))
    texts = {r: held_out_texts(train_regions, held_out_regions, r, config["latents"], config["evaluate"])
             for r in ratios}
    results, baselines, logs = {}, {}, {}
    for method in METHODS:
        run_started = time.perf_counter()
        cascade, log = train(method, ratios, config, seed, steps, train_regions, progress)
        train_seconds = time.perf_counter() - run_started
        logs[method] = [(report["ratio"], report["loss"]) for report in log]
        save_cascade(cascade, output_dir, method)
        for ratio in ratios:
            metrics = evaluate(cascade, texts[ratio])
            metrics.update(ratio=ratio, method=method, steps=len(log), train_seconds=train_seconds,
                           final_loss=log[-1]["loss"],
                           tokens_per_second=float(np.median([r["tokens_per_second"] for r in log])),
                           held_out_passages=len(texts[ratio]))
            (results if method == "c3" else baselines.setdefault(method, {}))[ratio] = metrics
            print(f"{method} {ratio}x: greedy token accuracy "
                  f"{metrics['token_accuracy']:.3f}, teacher-forced {metrics['teacher_forced_accuracy']:.3f}, Fox "
                  f"precision {metrics['fox_precision']:.3f} ({len(log)} steps in {train_seconds:.0f} s)",
                  file=sys.stderr, flush=True)
    write_report(output_dir, results, config, size, time.perf_counter() - started, baselines, minutes, seed, logs,
                 cascades=METHODS)
    return results


def loss_by_quarter(log, ratio: int) -> list:
    """The mean training loss of `ratio`'s steps in each quarter of the run (None where a quarter has none of
    them): a loss that still falls from the third quarter to the last is a ratio still being learned.
    log: [(ratio, loss) of every step]."""
    quarters = []
    for k in range(4):
        part = log[k * len(log) // 4:(k + 1) * len(log) // 4]
        losses = [loss for r, loss in part if r == ratio]
        quarters.append(float(np.mean(losses)) if losses else None)
    return quarters


def write_report(output_dir: str, results: dict, config: dict, size: str, seconds: float,
                 baselines: Optional[dict] = None, minutes: Optional[float] = None, seed: int = 0,
                 logs: Optional[dict] = None, cascades: Sequence[str] = ()) -> None:
    """report.md, the plots, results.json and baselines.json. logs: {method: [(ratio, loss) of every step]}, for
    the training-loss curves and table (left out when not given). cascades: the methods whose cascades are saved
    at cascade_path(output_dir, method), which the report tells how to evaluate on one's own text."""
    ratios = sorted(results)
    baselines = baselines or {}
    figures = {  # each written as PNG (for report.md) and PDF (for a paper)
        "decay_curves": plots.plot_decay_curves({r: results[r]["decay"] for r in ratios},
                                                title="C3, greedy reconstruction: kept rate by position"),
        "teacher_forced_decay": plots.plot_decay_curves({r: results[r]["teacher_decay"] for r in ratios},
                                                        title="C3, teacher-forced accuracy by position"),
        "ratio_position_heatmap": plots.plot_ratio_heatmap(
            ratios, np.stack([results[r]["decay"]["accuracy"] for r in ratios]),
            title="C3, greedy reconstruction: kept rate by ratio and position"),
        "precision_vs_ratio": plots.plot_precision_vs_ratio(
            ratios, [results[r]["fox_precision"] for r in ratios], [results[r]["edit_distance"] for r in ratios]),
    }
    figures["accuracy_curves"] = accuracy_curves_figure(results)
    if logs:
        figures["learning_curves"] = learning_curves_figure(logs, ratios, seed)
    for name, figure in figures.items():
        plots.save_figure(figure, os.path.join(output_dir, name), formats=("png", "pdf"))
    steps = results[ratios[0]]["steps"]
    budget = f"{steps} steps each" + ("" if minutes is None else f", sized to a budget of {minutes:g} minutes")
    lines = ["# c3 demo: where the information goes", "",
             f"Byte-level cascades trained from scratch on the CPU ({size} size, seed {seed}, {budget}, "
             f"{seconds / 60:.1f} minutes in all) on {corpus.LICENCE}. Each method is one model trained on mixed "
             f"ratios ({', '.join(f'{r}x' for r in ratios)}, unlocked in increasing order); every ratio uses "
             f"{config['latents']} latents and is read off {results[ratios[0]]['held_out_passages']} held-out "
             "passages of its length, never trained on.", "",
             "## C3 by ratio", "",
             "| ratio | passage bytes | greedy token acc. | teacher-forced acc. | Fox precision | edit distance "
             "| BLEU |", "|---|---|---|---|---|---|---|"]
    for r in ratios:
        m = results[r]
        lines.append(f"| {r}x | {r * config['latents']} | {m['token_accuracy']:.3f} | "
                     f"{m['teacher_forced_accuracy']:.3f} | {m['fox_precision']:.3f} | {m['edit_distance']:.3f} | "
                     f"{m['bleu']:.3f} |")
    lines += ["", "Greedy token accuracy is strict: the reconstruction's i-th byte must equal the reference's i-th "
              "byte, so one dropped byte fails the rest. Teacher-forced accuracy scores each byte given the true "
              "prefix: the gap between the two is error propagation, not lost information. Fox precision is the "
              "lenient set-based word precision of the Fox benchmark.", ""]
    if baselines:
        lines += ["## C3 against baselines (same decoder, same N, same steps)", "",
                  "Greedy token accuracy / teacher-forced accuracy:", "",
                  "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
        for method, table in [("c3", results)] + sorted(baselines.items()):
            lines.append(f"| {method} | " + " | ".join(
                f"{table[r]['token_accuracy']:.3f} / {table[r]['teacher_forced_accuracy']:.3f}" for r in ratios) + " |")
        lines += ["", "mean_pool: the decoder reads N means of contiguous windows of byte embeddings; truncate: the "
                  "decoder reads the first N bytes as ordinary tokens. `c3 sweep` compares them up to 32x, with "
                  "continuation loss and errors by surprisal.", ""]
    goal = results.get(4, {}).get("token_accuracy")
    if goal is not None:
        verdict = "reaches" if goal >= 0.95 else "is below"
        lines += [f"**Goal** (at least 0.95 greedy token accuracy at 4x): this run {verdict} it with {goal:.3f}.", ""]
    if cascades:
        lines += ["## Your own text", "",
                  "Each trained cascade is saved here, " + ", ".join(
                      f"{method} in `{cascade_path(output_dir, method)}`" for method in cascades)
                  + ". To read your own text with one:", "",
                  "```", f"c3 eval --cascade {cascade_path(output_dir, cascades[0])} --texts my_texts.txt", "```", "",
                  "`my_texts.txt` holds one text per line (a `.jsonl` file, one `{\"text\": ...}` object per line, "
                  f"keeps line breaks). Every text is compressed into {config['latents']} latents, so a text of "
                  f"{4 * config['latents']} bytes is read at 4x; the cascades were trained on texts of "
                  f"{ratios[0] * config['latents']} to {ratios[-1] * config['latents']} bytes, so cut longer text into "
                  "pieces of that length. In Python: `c3.Cascade.load(path)` and "
                  "`c3.evaluate(cascade, texts)`.", ""]
    if logs:
        lines += ["## Training loss by ratio", "",
                  "Mean training loss (nats per byte) of each ratio's steps, by quarter of the run. A loss that still "
                  "falls from the third quarter to the last is a ratio still being learned: more steps would likely "
                  "lift it (the learning rate is low by then, so a small fall still counts).", "",
                  "![training loss](learning_curves.png)", "",
                  "| method | ratio | 1st quarter | 2nd | 3rd | 4th |", "|---|---|---|---|---|---|"]
        for method, log in logs.items():
            for r in ratios:
                lines.append(f"| {method} | {r}x | " + " | ".join(
                    "–" if value is None else f"{value:.3f}" for value in loss_by_quarter(log, r)) + " |")
        lines.append("")
    lines += ["## Decay by position", "",
              "C3's accuracy by relative position, three ways: teacher-forced (the true prefix is fed: what the latents "
              "hold), strict greedy (every byte after a slip counts as wrong) and aligned greedy (the kept rate after "
              "a Levenshtein alignment, which forgives the shift). Where strict greedy falls and teacher-forced does "
              "not, the loss is error propagation, not information missing from the latents.", "",
              "![three curves](accuracy_curves.png)", "",
              "![decay](decay_curves.png)", "", "![teacher](teacher_forced_decay.png)", "",
              "![heatmap](ratio_position_heatmap.png)", "", "![precision](precision_vs_ratio.png)", "",
              "Each plot is also saved as PDF beside its PNG.", "",
              "C3's kept rate by relative position (20 bins, alignment-based):", "",
              "| ratio | " + " | ".join(f"{b}" for b in range(1, 21)) + " |", "|---|" + "---|" * 20]
    for r in ratios:
        lines.append(f"| {r}x | " + " | ".join(f"{a:.2f}" for a in results[r]["decay"]["accuracy"]) + " |")
    lines += ["", "## Examples (held-out)", ""]
    for r in ratios:
        for reference, hypothesis in results[r]["examples"][:1]:
            lines += [f"**{r}x** reference: `{reference!r}`", "", f"reconstruction: `{hypothesis!r}`", ""]
    _core.write_file_atomically(os.path.join(output_dir, "report.md"), "\n".join(lines) + "\n")
    _core.write_file_atomically(os.path.join(output_dir, "results.json"),
                                   json.dumps(_serialisable(results), indent=2))
    if baselines:
        _core.write_file_atomically(os.path.join(output_dir, "baselines.json"), json.dumps(
            {method: _serialisable(table) for method, table in baselines.items()}, indent=2))


def _serialisable(table: dict) -> dict:
    """Metrics by key with their curves as lists, without the examples."""
    return {str(key): {k: (v if not isinstance(v, dict) else {kk: np.asarray(vv).tolist() for kk, vv in v.items()})
                       for k, v in metrics.items() if k != "examples"} for key, metrics in table.items()}
