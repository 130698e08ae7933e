"""The main job: train small byte-level cascades from scratch on the CPU at several compression ratios, evaluate
them on held-out text, and write a report (Markdown, plots as PNG and PDF, JSON) on where the information is lost.

    c3 demo --output reports/demo [--minutes 10] [--ratios 4,8,16] [--size default|tiny]

Every ratio keeps N latents fixed and changes the passage length (ratio = passage bytes / N). By default every run
trains a fixed number of steps (STEPS), so that its numbers reproduce on any machine; the default size takes about
10 minutes on a 2-core machine. With --minutes the budget is split across ratios instead; each run measures its own
speed first and sets the cosine schedule to end at the budget. At the lowest ratio, mean pooling and truncation
(the same decoder and N) train for as many steps as C3 did, so the report answers the baseline question too.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import numpy as np

from . import analysis, corpus, evaluation
from .cascade import Cascade, byte_tokenizer, scratch_model_config
from .training import fit

SIZES = {
    # encoder and decoder shapes, latents, batch size, evaluation passages
    "default": dict(model=dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=8, num_kv_heads=4),
                    latents=16, batch=32, evaluate=64, learning_rate=3e-3),
    "tiny": dict(model=dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
                 latents=4, batch=8, evaluate=8, learning_rate=3e-3),
}


# Fixed steps per ratio at the default size: about 10 minutes on a 2-core machine with the 4x baselines (C3 at 64
# bytes takes about 0.25 s a step there, a baseline about half of that; 128 bytes about 0.5 s, 256 bytes about 1.1 s).
STEPS = {"default": {2: 1000, 4: 1000, 8: 100, 16: 40, 32: 20}, "tiny": {}}
BASELINES = ("mean_pool", "truncate")


def steps_for(size: str, ratio: int) -> int:
    return STEPS[size].get(ratio, 20 if size == "default" else 8)


def train_one(ratio: int, seconds: Optional[float], size: dict, seed: int, progress: bool = True,
              steps: Optional[int] = None, method: str = "c3"):
    """Trains one cascade for `steps` steps, or for about `seconds`; returns (cascade, held-out passages, log)."""
    latents = size["latents"]
    length = ratio * latents
    tokenizer = byte_tokenizer()
    train, held_out = corpus.split(corpus.passages(length, stride=length // 2), seed=seed)
    config = scratch_model_config(size["model"], length, latents)
    cascade = Cascade.new(config, config, latents, tokenizer=tokenizer, seed=seed, method=method)
    rng = np.random.default_rng(seed)

    def batches():
        # Full-length passages throughout: a length curriculum (tried) over-trains the early positions and
        # leaves a bump in the decay curve that is the schedule's, not the compression's.
        while True:
            yield [train[i] for i in rng.integers(0, len(train), size=size["batch"])]

    if steps is None:
        # Measure the speed with a throwaway trainer, then size the schedule to the budget.
        probe = cascade.trainer(learning_rate=0.0)
        probe_batches = batches()
        cascade.train_step(probe, next(probe_batches))  # the first step allocates: not timed
        started = time.perf_counter()
        for _ in range(3):
            cascade.train_step(probe, next(probe_batches))
        per_step = (time.perf_counter() - started) / 3
        steps = max(10, int(seconds / per_step))
    trainer = cascade.trainer(learning_rate=size["learning_rate"], warmup_steps=max(1, steps // 20),
                              total_steps=steps, min_lr_ratio=0.05, weight_decay=0.01, max_grad_norm=1.0)
    log = fit(trainer, batches(), steps, step_fn=lambda t, b: cascade.train_step(t, b), progress=progress,
              description=f"{method} {ratio}x ({length} bytes -> {latents} latents)")
    return cascade, held_out, log


def evaluate(cascade: Cascade, passages, count: int):
    """Greedy reconstruction and teacher-forced scores on the first `count` held-out passages
    (c3.evaluation.evaluate)."""
    return evaluation.evaluate(cascade, passages[:count])


def run_demo(output_dir: str = "reports/demo", ratios=(4, 8, 16), minutes: Optional[float] = None,
             size: str = "default", seed: int = 0, progress: bool = True) -> dict:
    """Trains and evaluates C3 at each ratio (fixed steps, or a time budget with `minutes`) and the baselines at
    the lowest ratio; writes the report; returns C3's metrics by ratio (the baselines' are in baselines.json)."""
    os.makedirs(output_dir, exist_ok=True)
    config = SIZES[size]
    # The lowest ratio gets 60% of the budget (all of it when alone): it carries the accuracy goal and needs the
    # most steps to reach it.
    weights = np.array([max(1.0, 1.5 * (len(ratios) - 1)) if r == min(ratios) else 1.0 for r in ratios], dtype=float)
    budget = (minutes or 0.0) * 60.0 * 0.85  # leave time for evaluation and plots
    results = {}
    started = time.perf_counter()
    if minutes is not None:
        # The baselines get time too: they cost about half of C3 per step.
        weights[np.argmin(ratios)] *= 2.0
    baselines = {}
    for ratio, share in zip(ratios, weights / weights.sum()):
        for method in ("c3",) + (BASELINES if ratio == min(ratios) else ()):
            steps = steps_for(size, ratio) if minutes is None else None
            if method != "c3":
                steps = results[ratio]["steps"]  # as many steps as C3 had
            run_started = time.perf_counter()
            cascade, held_out, log = train_one(ratio, None if minutes is None else budget * share / 2 ** (
                ratio == min(ratios)), config, seed, progress, steps=steps, method=method)
            train_seconds = time.perf_counter() - run_started
            metrics = evaluate(cascade, held_out, config["evaluate"])
            metrics.update(ratio=ratio, method=method, steps=len(log), train_seconds=train_seconds,
                           final_loss=log[-1]["loss"],
                           tokens_per_second=float(np.median([r["tokens_per_second"] for r in log])),
                           held_out_passages=len(held_out))
            if method == "c3":
                results[ratio] = metrics
            else:
                baselines[method] = metrics
            print(f"{method} {ratio}x: greedy token accuracy {metrics['token_accuracy']:.3f}, teacher-forced "
                  f"{metrics['teacher_forced_accuracy']:.3f}, Fox precision {metrics['fox_precision']:.3f} "
                  f"({len(log)} steps in {train_seconds:.0f} s)", file=sys.stderr, flush=True)
    write_report(output_dir, results, config, size, time.perf_counter() - started, baselines, minutes)
    return results


def write_report(output_dir: str, results: dict, config: dict, size: str, seconds: float,
                 baselines: Optional[dict] = None, minutes: Optional[float] = None) -> None:
    ratios = sorted(results)
    plots = {  # each written as PNG (for report.md) and PDF (for a paper)
        "decay_curves": analysis.plot_decay_curves({r: results[r]["decay"] for r in ratios},
                                                   title="Greedy reconstruction: kept rate by position"),
        "teacher_forced_decay": analysis.plot_decay_curves({r: results[r]["teacher_decay"] for r in ratios},
                                                           title="Teacher-forced accuracy by position"),
        "ratio_position_heatmap": analysis.plot_ratio_heatmap(
            ratios, np.stack([results[r]["decay"]["accuracy"] for r in ratios]),
            title="Greedy reconstruction: kept rate by ratio and position"),
        "precision_vs_ratio": analysis.plot_precision_vs_ratio(
            ratios, [results[r]["fox_precision"] for r in ratios], [results[r]["edit_distance"] for r in ratios]),
    }
    for name, figure in plots.items():
        analysis.save_figure(figure, os.path.join(output_dir, name), formats=("png", "pdf"))
    goal = results.get(4, {}).get("token_accuracy")
    budget = "fixed steps per ratio" if minutes is None else f"a budget of {minutes:g} minutes"
    lines = ["# c3 demo: where the information goes", "",
             f"Byte-level cascades trained from scratch on the CPU ({size} size, {budget}, {seconds / 60:.1f} "
             "minutes in all) "
             f"on {corpus.LICENCE}. Every ratio uses {config['latents']} latents; held-out passages were never "
             "trained on.", "",
             "| ratio | passage bytes | steps | train s | greedy token acc. | teacher-forced acc. | Fox precision "
             "| edit distance | BLEU |", "|---|---|---|---|---|---|---|---|---|"]
    for r in ratios:
        m = results[r]
        lines.append(f"| {r}x | {r * config['latents']} | {m['steps']} | {m['train_seconds']:.0f} | "
                     f"{m['token_accuracy']:.3f} | {m['teacher_forced_accuracy']:.3f} | {m['fox_precision']:.3f} | "
                     f"{m['edit_distance']:.3f} | {m['bleu']:.3f} |")
    lines += ["", "Greedy token accuracy is strict: the reconstruction's i-th byte must equal the reference's i-th byte.",
              "Fox precision is the lenient set-based word precision of the Fox benchmark.", ""]
    if baselines:
        low = min(ratios)
        lines += [f"## C3 against baselines at {low}x (same decoder, same N, same steps)", "",
                  "| method | steps | greedy token acc. | teacher-forced acc. | Fox precision | edit distance |",
                  "|---|---|---|---|---|---|"]
        for method, m in [("c3", results[low])] + sorted(baselines.items()):
            lines.append(f"| {method} | {m['steps']} | {m['token_accuracy']:.3f} | {m['teacher_forced_accuracy']:.3f} "
                         f"| {m['fox_precision']:.3f} | {m['edit_distance']:.3f} |")
        lines += ["", "mean_pool: the decoder reads N means of contiguous windows of byte embeddings; truncate: the "
                  "decoder reads the first N bytes as ordinary tokens. `c3 sweep` compares them at every ratio.", ""]
    if goal is not None:
        verdict = "reaches" if goal >= 0.95 else "is below"
        lines.append(f"**Goal** (at least 0.95 greedy token accuracy at 4x): this run {verdict} it with {goal:.3f}.")
        lines.append("")
    lines += ["## Decay by position", "", "![decay](decay_curves.png)", "", "![teacher](teacher_forced_decay.png)", "",
              "![heatmap](ratio_position_heatmap.png)", "", "![precision](precision_vs_ratio.png)", "",
              "Each plot is also saved as PDF beside its PNG.", "",
              "Kept rate by relative position (20 bins, alignment-based):", "",
              "| ratio | " + " | ".join(f"{b}" for b in range(1, 21)) + " |", "|---|" + "---|" * 20]
    for r in ratios:
        lines.append(f"| {r}x | " + " | ".join(f"{a:.2f}" for a in results[r]["decay"]["accuracy"]) + " |")
    lines += ["", "## Examples (held-out)", ""]
    for r in ratios:
        for reference, hypothesis in results[r]["examples"][:1]:
            lines += [f"**{r}x** reference: `{reference!r}`", "", f"reconstruction: `{hypothesis!r}`", ""]
    with open(os.path.join(output_dir, "report.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    for name, table in (("results.json", results), ("baselines.json", baselines or {})):
        if table:
            with open(os.path.join(output_dir, name), "w") as handle:
                json.dump(_serialisable(table), handle, indent=2)


def _serialisable(table: dict) -> dict:
    """Metrics by key with their curves as lists, without the examples."""
    return {str(key): {k: (v if not isinstance(v, dict) else {kk: np.asarray(vv).tolist() for kk, vv in v.items()})
                       for k, v in metrics.items() if k != "examples"} for key, metrics in table.items()}
