"""Long documents: where is information lost? A cascade whose decoder reads all of a document's blocks, trained on
addressed reconstruction and continuation, measured by chunk index and by distance from the end.

    c3 documents --output reports/documents [--methods c3,mean_pool] [--seeds 0] [--size small|tiny]
                 [--steps N] [--split dev|test]

Data. Byte-level, the King James Version (c3.prose), its books split into train, dev and test by book
(heldout.SPLIT_FRACTIONS, seed 0). A training window is K chunks of chunk_tokens bytes of a train book and the
continuation_tokens bytes that follow; the encoder compresses each chunk alone into N latents (the method's: C3's
queries, or mean pooling per chunk), and the decoder reads all K blocks, each in its own <img> ... </img>.

Training. Each step asks, for every window of the batch, for one of its chunks (index drawn uniformly; the task
("chunk", k)) with weight 1 - continuation_weight, and for its continuation (the task "continue") with
continuation_weight. The number of chunks K is unlocked in doubling steps (1, 2, 4, ... max_chunks) over the first
`curriculum` of the steps, each unlocked K equally likely, and a step holds about batch_tokens context bytes
(B = batch_tokens // (K * chunk_tokens) windows, at least one, so a window longer than batch_tokens is a step of
its own). Runs checkpoint every checkpoint_every steps and resume bit for bit (fixed data-parallel shares).

Evaluation. Consecutive, non-overlapping windows of max_chunks chunks and the continuation from the split's books,
measured by c3.eval.documents.document_measures. The bits the latents supply are measured against a language model
of the training books: each seed's prior, a no_context cascade trained on chunk-length passages of them (the sweep's
run, c3.experiments.runs.train_run), read through the same empty-block prompt as surprisal.prior_surprisal. The King James Version repeats verses between books, so each
window's share of 32-byte stretches that occur in the training text is reported beside it rather than filtered.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import _core, leakage, plots, prose
from ..statistics import seed_interval
from ..cascade import Cascade, scratch_model_config
from ..corpus import document_splits
from ..eval.documents import document_measures
from ..eval.surprisal import prior_surprisal
from ..jsonfiles import read_json, write_json
from ..training import load_checkpoint, save_checkpoint
from .heldout import LEAKAGE_WINDOW, SPLIT_FRACTIONS
from .recipe import SIZES as SWEEP_SIZES, make_trainer
from .runs import train_run
from .sweep import provenance

# c3 and mean_pool compress every chunk into its own block; the two text baselines give the decoder the document's
# own bytes instead: truncate_window its last K * N bytes (the rows K blocks of N latents hold: the same decoder
# budget, markers aside), full_window all of it (where the decoder's positions allow). They are trained and measured
# on continuation alone (weight 1, where the compressing methods give it 0.25 beside addressed reconstruction): a
# text block holds no chunk to address, only what it keeps.
METHODS = ("c3", "mean_pool", "truncate_window", "full_window")
TEXT_BASELINES = ("truncate_window", "full_window")
DEFAULT_METHODS = ("c3", "mean_pool", "truncate_window")
FULL_WINDOW_LIMIT = 4096  # bytes of context full_window reads at most: attention over longer texts is too slow here
SIZES = {
    # Up to 128 chunks of 128 bytes (8x each with N = 16) and 64 bytes of continuation: windows of 16 KB, a decoder
    # prompt of 128 blocks (2,304 positions); the sweep's small model shape and optimiser.
    "small": dict(model=dict(SWEEP_SIZES["small"]["model"]), latents=16, chunk_tokens=128, max_chunks=128,
                  continuation=64, batch_tokens=2048, curriculum=0.4, continuation_weight=0.25, steps=4000,
                  learning_rate=2e-3, beta2=0.999, shares=4, checkpoint_every=50, eval_windows=12, eval_batch=16,
                  prior_steps=4000),
    "tiny": dict(model=dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
                 latents=4, chunk_tokens=16, max_chunks=4, continuation=8, batch_tokens=64, curriculum=0.5,
                 continuation_weight=0.25, steps=6, learning_rate=3e-3, beta2=0.999, shares=2, checkpoint_every=3,
                 eval_windows=3, eval_batch=4, prior_steps=4),
}
TASK_ROOM = 16  # decoder positions for the longest task suffix ("<chunk 99999>")


def book_splits() -> dict:
    """{split: [token rows]}: the King James Version's books as byte rows, split by book (SPLIT_FRACTIONS)."""
    splits = document_splits(prose.ood_prose_documents(), SPLIT_FRACTIONS, seed=0)
    return {name: [np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) for _, text in books]
            for name, books in splits.items()}


def chunk_counts(max_chunks: int) -> list:
    """1, 2, 4, ... and max_chunks: the numbers of chunks the curriculum unlocks in turn."""
    counts, count = [], 1
    while count < max_chunks:
        counts.append(count)
        count *= 2
    return counts + [int(max_chunks)]


class DocumentBatches:
    """Seeded training windows of train books (see the module docstring); the generator's state travels in the
    checkpoint."""

    def __init__(self, books: Sequence, settings: dict, seed: int, steps: int):
        self.chunk, self.continuation = int(settings["chunk_tokens"]), int(settings["continuation"])
        self.counts = chunk_counts(int(settings["max_chunks"]))
        self.batch_tokens = int(settings["batch_tokens"])
        self.curriculum_steps = int(round(settings["curriculum"] * steps))
        longest = self.counts[-1] * self.chunk + self.continuation
        self.books = [book for book in books if len(book) > longest]
        if not self.books:
            raise _core.C3ValueError(f"no training book is longer than a window of {longest} bytes")
        self.weights = np.array([len(book) for book in self.books], np.float64)
        self.weights /= self.weights.sum()
        self.rng = np.random.default_rng(seed)

    def unlocked(self, step: int) -> list:
        return [k for i, k in enumerate(self.counts) if i * self.curriculum_steps <= step * len(self.counts)]

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def draw(self, step: int):
        """(chunks [B, K, chunk_tokens], continuations [B, continuation], addressed chunk index [B])."""
        unlocked = self.unlocked(step)
        count = unlocked[int(self.rng.integers(len(unlocked)))]
        batch = max(1, self.batch_tokens // (count * self.chunk))
        chunks, continuations = [], []
        for index in self.rng.choice(len(self.books), size=batch, p=self.weights):
            book = self.books[index]
            start = int(self.rng.integers(0, len(book) - count * self.chunk - self.continuation + 1))
            window = book[start:start + count * self.chunk + self.continuation]
            chunks.append(window[:count * self.chunk].reshape(count, self.chunk))
            continuations.append(window[count * self.chunk:])
        return np.stack(chunks), np.stack(continuations), self.rng.integers(0, count, size=batch)


def build_document_cascade(method: str, settings: dict, seed: int) -> Cascade:
    """A byte-level cascade whose encoder reads one chunk and whose decoder reads max_chunks blocks, a task and the
    longer of a chunk (with its stop token) and the continuation."""
    latents = int(settings["latents"])
    encoder = scratch_model_config(settings["model"], settings["chunk_tokens"], latents)
    answer = max(int(settings["chunk_tokens"]) + 1, int(settings["continuation"]))
    decoder = scratch_model_config(settings["model"], int(settings["max_chunks"]) * (latents + 2) + TASK_ROOM + answer,
                                   latents)
    if method in TEXT_BASELINES:  # the block is text: the decoder's own embeddings of the kept bytes
        kept = int(settings["max_chunks"]) * int(settings["latents" if method == "truncate_window" else "chunk_tokens"])
        # The cascade reads the kept text as its context (its encoder is never run, but bounds the context).
        encoder = scratch_model_config(settings["model"], kept, latents)
        decoder = scratch_model_config(settings["model"], kept + 2 + TASK_ROOM + answer, latents)
        return Cascade.new(encoder, decoder, latents, seed=seed, method="full_context")
    return Cascade.new(encoder, decoder, latents, seed=seed, method=method)


def check_method(method: str, settings: dict) -> None:
    """A C3ValueError for an unknown method, or full_window where the windows are longer than FULL_WINDOW_LIMIT."""
    if method not in METHODS:
        raise _core.C3ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    window = int(settings["max_chunks"]) * int(settings["chunk_tokens"])
    if method == "full_window" and window > FULL_WINDOW_LIMIT:
        raise _core.C3ValueError(f"full_window reads contexts of at most {FULL_WINDOW_LIMIT} bytes; this size's "
                                 f"windows hold {window}")


def kept_text(method: str, settings: dict, context: np.ndarray) -> np.ndarray:
    """What a text baseline's block holds of a window's context: its last K * N bytes (truncate_window: the rows K
    blocks of N latents hold) or all of it (full_window)."""
    chunks = -(-len(context) // int(settings["chunk_tokens"]))
    return context[-chunks * int(settings["latents"]):] if method == "truncate_window" else context


def train_document_run(directory: str, method: str, seed: int, settings: dict, books, steps: int,
                       progress: bool = True, on_step: Optional[Callable[[int], None]] = None) -> Cascade:
    """Trains (or resumes, or loads when finished) one run; returns its cascade. on_step(step) is called after
    every step (tests interrupt a run with it)."""
    os.makedirs(directory, exist_ok=True)
    checkpoint, finished = os.path.join(directory, "checkpoint.safetensors"), os.path.join(directory, "trained.json")
    cascade = build_document_cascade(method, settings, seed)
    trainer = make_trainer(cascade, settings, steps)
    data = DocumentBatches(books, settings, seed + 1000, steps)
    step, seconds, log = 0, 0.0, []
    if os.path.exists(checkpoint):
        extra = load_checkpoint(checkpoint, cascade.model, trainer)
        data.restore(extra["data"])
        step, seconds, log = int(extra["step"]), float(extra["seconds"]), list(extra["log"])
    if os.path.exists(finished) and read_json(finished).get("steps") == step == steps:
        return cascade
    weight = float(settings["continuation_weight"])
    started = time.perf_counter() - seconds
    bar = tqdm(total=steps, initial=step, desc=f"{method} seed {seed}", disable=not progress, leave=False,
               mininterval=1.0)

    def save():
        save_checkpoint(checkpoint, cascade.model, trainer, dict(step=step, seconds=time.perf_counter() - started,
                                                                 data=data.state(), log=log))

    try:
        while step < steps:
            chunks, continuations, addressed = data.draw(step)
            if method in TEXT_BASELINES:
                blocks = [[kept_text(method, settings, rows.reshape(-1))] for rows in chunks]
                report = trainer.step_weighted([cascade.document_group(
                    blocks, list(continuations), ["continue"] * len(blocks), add_stop=False)], [1.0])
            else:
                documents = [list(rows) for rows in chunks]
                groups = [cascade.document_group(documents, [rows[k] for rows, k in zip(chunks, addressed)],
                                                 [("chunk", int(k)) for k in addressed]),
                          cascade.document_group(documents, list(continuations), ["continue"] * len(documents),
                                                 add_stop=False)]
                report = trainer.step_weighted(groups, [1.0 - weight, weight])
            step += 1
            log.append([int(chunks.shape[1]), round(float(report["loss"]), 5)])
            bar.set_postfix(loss=f"{report['loss']:.3f}")
            bar.update(1)
            if step % settings["checkpoint_every"] == 0:
                save()
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
    save()
    write_json(finished, dict(method=method, seed=seed, steps=step, train_seconds=time.perf_counter() - started,
                              threads=_core.num_threads(), log=log))
    return cascade


def text_baseline_measures(cascade: Cascade, method: str, settings: dict, windows) -> dict:
    """A text baseline's continuation bits per byte on the windows (see METHODS): the decoder reads the kept bytes
    as its block, then the "continue" task."""
    continuation = int(settings["continuation"])
    per_document, total_bits, total_bytes = [], 0.0, 0
    batch = int(settings["eval_batch"])
    for start in range(0, len(windows), batch):
        part = windows[start:start + batch]
        latents, mask = cascade.encode([kept_text(method, settings, window[:-continuation]) for window in part])
        scores = cascade.score(latents, [window[-continuation:] for window in part], latent_mask=mask,
                               task="continue")
        for row in range(len(part)):
            bits = -float(np.sum(scores["log_probability"][row][scores["valid"][row]], dtype=np.float64)) / np.log(2.0)
            per_document.append(dict(continuation_bits=bits, continuation_bytes=continuation))
            total_bits, total_bytes = total_bits + bits, total_bytes + continuation
    return dict(per_document=per_document, continuation_bits_per_byte=total_bits / total_bytes,
                chunk_tokens=int(settings["chunk_tokens"]), continuation_tokens=continuation)


def train_prior(directory: str, seed: int, settings: dict, books, progress: bool = True) -> Cascade:
    """The seed's language model of the training books: a no_context cascade (the decoder alone, an empty block)
    trained on passages of one chunk's length by the sweep's run (train_run: resumable, loaded when finished)."""
    ratio = int(settings["chunk_tokens"]) // int(settings["latents"])
    prior_settings = dict(settings, curriculum=0.0, continuation=0, track_points=0)
    return train_run(directory, "no_context", seed, prior_settings, [ratio], books, int(settings["prior_steps"]),
                     progress=progress)


def evaluation_windows(books, train_books, settings: dict, count: int) -> list:
    """(window rows of max_chunks chunks and the continuation, each window's leaked share): consecutive,
    non-overlapping windows of the split's books, taken evenly across all of them, at most `count`."""
    length = int(settings["max_chunks"]) * int(settings["chunk_tokens"]) + int(settings["continuation"])
    windows = [book[start:start + length] for book in books for start in range(0, len(book) - length + 1, length)]
    chosen = np.unique(np.linspace(0, len(windows) - 1, min(count, len(windows))).astype(np.int64))
    index = leakage.WindowIndex(np.concatenate(train_books).astype(np.uint8).tobytes(), LEAKAGE_WINDOW)
    picked = [windows[i] for i in chosen]
    return picked, [float(index.leaked_fraction(w.astype(np.uint8).tobytes())) for w in picked]


def run_documents(output: str, methods: Sequence[str] = DEFAULT_METHODS, seeds: Sequence[int] = (0,), size: str = "small",
                  steps: Optional[int] = None, split: str = "dev", progress: bool = True,
                  command: Optional[str] = None) -> dict:
    """Trains and measures each (method, seed) (see the module docstring); writes results.json, report.md and the
    figures to `output`, and returns the results. command: the command line, for the report (the CLI passes it)."""
    if size not in SIZES:
        raise _core.C3ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    for name, values in (("methods", list(methods)), ("seeds", [int(s) for s in seeds])):
        if not values or len(set(values)) != len(values):
            raise _core.C3ValueError(f"{name} must be a non-empty list without repeats, got {values}")
    settings = dict(SIZES[size])
    for method in methods:
        check_method(method, settings)
    if split not in ("dev", "test"):
        raise _core.C3ValueError(f"split must be dev or test, got {split!r}")
    steps = int(steps or settings["steps"])
    plan = dict(methods=list(methods), seeds=[int(s) for s in seeds], size=size, steps=steps, split=split)
    os.makedirs(output, exist_ok=True)
    plan_path = os.path.join(output, "plan.json")
    if os.path.exists(plan_path) and read_json(plan_path) != plan:
        raise _core.ConfigError(f"{output} holds a run with other settings; use a new --output or the same options")
    write_json(plan_path, plan)
    books = book_splits()
    windows, leaked = evaluation_windows(books[split], books["train"], settings, settings["eval_windows"])
    results = dict(plan=plan, settings=settings, corpus=prose.LICENCE, windows=len(windows),
                   window_bytes=int(len(windows[0])), leaked_share=leaked, runs={},
                   provenance=provenance(command or f"c3.experiments.documents.run_documents({output!r}, ...)"))
    for seed in plan["seeds"]:
        prior = None
        for method in methods:
            directory = os.path.join(output, "runs", f"{method}-seed{seed}")
            evaluation = os.path.join(directory, "evaluation.json")
            if os.path.exists(evaluation):
                results["runs"][f"{method}-seed{seed}"] = read_json(evaluation)
                continue
            cascade = train_document_run(directory, method, seed, settings, books["train"], steps, progress)
            if method in TEXT_BASELINES:
                measures = text_baseline_measures(cascade, method, settings, windows)
            else:
                if prior is None:  # needed only while some compressing run of the seed is not measured
                    prior = train_prior(os.path.join(output, "runs", f"prior-seed{seed}"), seed, settings,
                                        books["train"], progress)
                measures = document_measures(cascade, windows, settings["chunk_tokens"], settings["continuation"],
                                             batch_size=settings["eval_batch"],
                                             prior=lambda rows, p=prior: prior_surprisal(p, rows))
            measures["train_seconds"] = read_json(os.path.join(directory, "trained.json"))["train_seconds"]
            write_json(evaluation, measures)
            results["runs"][f"{method}-seed{seed}"] = measures
    results["prior_seconds"] = sum(read_json(path)["train_seconds"] for path in (
        os.path.join(output, "runs", f"prior-seed{seed}", "trained.json") for seed in plan["seeds"])
        if os.path.exists(path))
    write_json(os.path.join(output, "results.json"), results)
    write_documents_report(output, results)
    for name, measures in results["runs"].items():
        if "by_chunk_index" not in measures:  # a text baseline: continuation alone
            continue
        figure = plots.new_figure(11, 4)
        left, right = figure.subplots(1, 2)
        plots.plot_document_positions(measures, "by_chunk_index", title=f"{name}: by chunk index", ax=left)
        plots.plot_document_positions(measures, "by_distance_from_end", title=f"{name}: from the end", ax=right)
        plots.save_figure(figure, os.path.join(output, f"positions-{name}"))
    return results


def _interval(values) -> str:
    """'mean' for one seed, 'mean [low, high]' (95% t-interval across seeds) for more."""
    interval = seed_interval(values)
    if interval["n"] == 1:
        return f"{interval['mean']:.3f}"
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def write_documents_report(output: str, results: dict) -> None:
    """report.md: how the results were made (command, date, machine, hours), the data, continuation at the same
    decoder budget with its interval across seeds, and each compressing method's measures at chosen distances from
    the end of the document, beside its figures."""
    plan, settings, source = results["plan"], results["settings"], results["provenance"]
    runs = results["runs"]
    hours = (sum(run.get("train_seconds", 0.0) for run in runs.values()) + results.get("prior_seconds", 0.0)) / 3600
    leaked = np.asarray(results["leaked_share"], np.float64)
    lines = ["# Long documents: where is information lost?", "",
             f"- **Command:** `{source['command']}`",
             f"- **Date and machine:** {source['date']}; {source['cpu']}, {source['cores']} cores, c3 "
             f"{source['version']} ({source['build']} build) on {source['threads']} thread"
             f"{'' if source['threads'] == 1 else 's'}",
             f"- **Hours of training:** {hours:.2f} in all, the priors included; runs may have shared the machine, "
             "so hours bound the cost from above.",
             f"- **Data:** {results['corpus']}; books split by book, measured on the {plan['split']} books: "
             f"{results['windows']} non-overlapping windows of {results['window_bytes']} bytes "
             f"({settings['max_chunks']} chunks of {settings['chunk_tokens']} bytes, N = {settings['latents']} "
             f"latents each, {settings['chunk_tokens'] // settings['latents']}x, then {settings['continuation']} "
             f"bytes of continuation); share of 32-byte stretches found in the training text: mean "
             f"{leaked.mean():.3f}, largest {leaked.max():.3f}.",
             f"- **Training:** {plan['steps']} steps a run, seeds {', '.join(map(str, plan['seeds']))}.", "",
             "## Continuation at the same decoder budget", "",
             "Bits per byte of the continuation given every block (c3, mean_pool) or the kept text (truncate_window: "
             "the last K x N bytes; full_window: all of them); mean with its 95% interval across seeds.", "",
             "| method | continuation bits per byte |", "|---|---|"]
    for method in plan["methods"]:
        values = [runs[f"{method}-seed{seed}"]["continuation_bits_per_byte"] for seed in plan["seeds"]]
        lines.append(f"| {method} | {_interval(values)} |")
    compressing = [m for m in plan["methods"] if m not in TEXT_BASELINES]
    if compressing:
        count = settings["max_chunks"]
        distances = sorted({0, 1, count // 4, count // 2, count - 1} & set(range(count)))
        lines += ["", "## Each chunk read back, by distance from the end", "",
                  "Addressed reconstruction of each chunk from all the blocks: teacher-forced, strict greedy and "
                  "aligned accuracy, and the bits per token the latents supply (the prior's surprisal minus the "
                  "reconstruction's), at chosen distances from the last chunk (0), means over windows and seeds.",
                  "", "| method | distance from the end | teacher forced | strict greedy | aligned | bits supplied |",
                  "|---|---|---|---|---|---|"]
        for method in compressing:
            for distance in distances:
                row = []
                for measure in ("teacher_forced", "strict", "aligned", "supplied_bits"):
                    values = [runs[f"{method}-seed{seed}"]["by_distance_from_end"][measure][distance]
                              for seed in plan["seeds"]]
                    values = [v for v in values if v is not None]
                    row.append(f"{np.mean(values):.3f}" if values else "-")
                lines.append(f"| {method} | {distance} | " + " | ".join(row) + " |")
        lines += ["", "Figures: " + ", ".join(f"[{name}](positions-{name}.png)" for name in sorted(runs)
                                              if "by_chunk_index" in runs[name]) + "."]
    _core.write_file_atomically(os.path.join(output, "report.md"), "\n".join(lines) + "\n")
