"""Ratio sweeps: methods x ratios x seeds at a fixed number of latents N, resumable, with a report.

    c3 sweep --output reports/sweep [--methods c3,mean_pool,truncate,no_context,full_context]
             [--ratios 2,4,8,16,32] [--seeds 0,1] [--steps 3000] [--size default|small|tiny] [--curriculum 0.4]
             [--batch-tokens 2048] [--jobs 2] [--shares 0]
             [--balance bytes|passages|longest|W1:W2:...]

Design. As in the C3 paper (which reads Fox's ratios off length bins of one model), each (method, seed) trains ONE
model on contexts of mixed length: every step draws a ratio r from the sweep's ratios and a batch of r * N-token
contexts. Each ratio is then read off held-out contexts of exactly r * N tokens. This costs methods x seeds runs
instead of methods x ratios x seeds, and every ratio sees the same model, so the curves compare positions and
ratios without one model per point. (A model trained at one ratio only would do somewhat better at that ratio.)

Two parts of the recipe exist because of what was measured on the default size:

- Every batch holds about the same number of context tokens (`batch_tokens`): r * N-token contexts come
  batch_tokens / (r * N) at a time, so a step costs about the same at every ratio instead of the longest ratio's
  steps taking most of the time.
- A ratio curriculum. Trained from scratch on all ratios at once, a cascade stays at the decoder's language-model
  prior (teacher-forced accuracy equal to no context's at every ratio after 1,250 steps), while the same cascade
  trained at 2x alone reads its latents after about 200 steps. So the ratios are unlocked in increasing order over
  the first `curriculum` fraction of the steps (ratio k of R at step k/R * curriculum * steps), each step drawing
  uniformly among the unlocked ones; after that every ratio is in the mix. `curriculum=0` is the plain mixture.

Every run checkpoints its parameters, AdamW moments and data-order state every `checkpoint_every` steps (one
safetensors file, replaced atomically). Rerunning the same command continues each run from its last checkpoint;
finished runs (trained.json) and finished evaluations (evaluation.json) are skipped. A run's data order is drawn
from its own seeded generator, so a resumed run ends bit-identical to an uninterrupted one at the same thread count
(with fixed `shares`, at any thread count).

Data. Byte-level. In-domain: CPython's pydoc topics (corpus.LICENCE), split by contiguous blocks into training
and held-out text. Out-of-domain: the docstrings of the standard library's top-level modules (OOD_LICENCE), never
trained on. Each evaluation passage is a context of r * N bytes followed by a continuation of `continuation`
bytes.

Evaluation, per method, seed and ratio, on held-out passages: greedy reconstruction (strict and aligned token
accuracy, Fox precision, edit distance), teacher-forced accuracy, accuracy-by-position curves of all three,
continuation loss in bits per byte, and the errors by (position x surprisal) with a logistic regression of error
on position and surprisal. Surprisal is under the sweep's trained no_context model of the same seed (a language
model of the corpus) when no_context is among the methods, else under each cascade's decoder prior.
"""
from __future__ import annotations

import ast
import functools
import glob
import json
import math
import multiprocessing
import os
import time
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _core, analysis, corpus, surprisal
from .cascade import Cascade, byte_tokenizer, scratch_model_config
from .training import load_checkpoint, save_checkpoint

METHODS = ("c3", "mean_pool", "truncate", "truncate_last", "no_context", "full_context")
DEFAULT_METHODS = ("c3", "mean_pool", "truncate", "no_context", "full_context")
DEFAULT_RATIOS = (2, 4, 8, 16, 32)
MAX_SHARES = 1024  # TrainingOptions' kMaxDataParallelShares
OOD_LICENCE = ("docstrings of the CPython standard library's top-level modules (Lib/*.py of the running Python), "
               "Python Software Foundation License; shipped with Python itself")

SIZES = {
    # track_points: how often (evenly over the steps) a run scores held-out teacher-forced accuracy of each ratio
    # on track_passages in-domain passages while it trains, so that a report shows whether each ratio converged.
    "default": dict(model=dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=8, num_kv_heads=4),
                    latents=16, batch_tokens=2048, curriculum=0.4, learning_rate=3e-3, steps=3000,
                    eval_passages=512, ood_passages=256, continuation=64, checkpoint_every=100, eval_batch=32,
                    track_points=20, track_passages=64),
    # The demo's shape (c3.demo): one layer fewer and rotary base 10^3, which removes the default's accuracy dips
    # at fixed positions, at half the context bytes a step; a step costs about a third of the default's.
    "small": dict(model=dict(hidden_size=128, intermediate_size=384, num_layers=3, num_heads=8, num_kv_heads=4,
                             rope_theta=1000.0),
                  latents=16, batch_tokens=1024, curriculum=0.4, learning_rate=2e-3, steps=8000,
                  eval_passages=512, ood_passages=256, continuation=64, checkpoint_every=100, eval_batch=32,
                  track_points=20, track_passages=64),
    "tiny": dict(model=dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
                 latents=4, batch_tokens=32, curriculum=0.5, learning_rate=3e-3, steps=6, eval_passages=6,
                 ood_passages=4, continuation=8, checkpoint_every=3, eval_batch=8, track_points=2, track_passages=2),
}


# ---- data -----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def ood_text() -> str:
    """Docstrings of the standard library's top-level modules, in file-name order (OOD_LICENCE)."""
    root = os.path.dirname(os.__file__)
    parts = []
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        try:
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
    return "\n\n".join(parts)


def _ids(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)


def split_regions(ids: np.ndarray, held_out_fraction: float = 0.1, blocks: int = 100):
    """(train regions, held-out regions): the token stream cut into `blocks` contiguous blocks, a fixed seeded
    tenth of them held out (the same split for every seed, so that seeds differ only in the model)."""
    bounds = np.linspace(0, len(ids), blocks + 1).astype(np.int64)
    chunks = [ids[bounds[i]:bounds[i + 1]] for i in range(blocks)]
    train, held_out = corpus.split(list(range(blocks)), held_out_fraction, seed=0)
    return [chunks[i] for i in train], [chunks[i] for i in held_out]


def default_regions():
    """(train regions, held-out regions) of the default corpus as byte ids: the sweep's fixed block split."""
    return split_regions(_ids(corpus.default_text()))


def evaluation_passages(regions, length: int, count: int, unseen_in=None, unseen_length: Optional[int] = None):
    """Up to `count` windows of `length` tokens from the regions, evenly spread (overlapping when the text is
    short), in a fixed order.

    unseen_in: regions (the training text) whose verbatim text a window must not start with: windows whose first
    `unseen_length` tokens (default: all) occur anywhere in them are skipped. The default corpus repeats its
    grammar rules and boilerplate across topics, so without this a quarter of the held-out windows of 128 bytes
    occur word for word in the training blocks, and "held-out" accuracy would partly measure memorisation."""
    per_region = np.array([max(0, len(region) - length + 1) for region in regions], np.int64)
    total = int(per_region.sum())
    if total == 0:
        return []
    first = np.concatenate([[0], np.cumsum(per_region)])

    def window(index):
        region = int(np.searchsorted(first, index, side="right") - 1)
        start = int(index - first[region])
        return regions[region][start:start + length]

    if unseen_in is None:
        return [window(i) for i in np.unique(np.linspace(0, total - 1, min(count, total)).astype(np.int64))]
    # Byte-level ids search as bytes; wider ids as int32, where a match across token boundaries can only skip more.
    wide = any(len(region) and int(np.max(region)) > 255 for region in list(unseen_in) + list(regions))
    encode = (lambda ids: np.asarray(ids, np.int32).tobytes()) if wide else \
        (lambda ids: np.asarray(ids, np.uint8).tobytes())  # noqa: E731
    seen = [encode(region) for region in unseen_in]
    check = length if unseen_length is None else min(int(unseen_length), length)
    # Candidates evenly spread over four times the count, the unseen ones kept, then `count` of those evenly spread.
    candidates = [window(i) for i in np.unique(np.linspace(0, total - 1, min(4 * count, total)).astype(np.int64))]
    unseen = [w for w in candidates if not any(encode(w[:check]) in text for text in seen)]
    if len(unseen) <= count:
        return unseen
    return [unseen[i] for i in np.unique(np.linspace(0, len(unseen) - 1, count).astype(np.int64))]


BALANCES = ("bytes", "passages", "longest")


def check_balance(balance: str, ratios: Optional[Sequence[int]] = None) -> str:
    """`balance` if it is one of BALANCES or ratio weights "w1:w2:...": one positive number per ratio (of `ratios`,
    when given), in increasing ratio order; else a C3ValueError naming the forms."""
    if balance in BALANCES or ratio_weights(balance, ratios) is not None:
        return balance
    raise _core.C3ValueError(f"balance must be one of {', '.join(BALANCES)} or ratio weights such as 1:2:4 (one "
                             f"positive number per ratio, in increasing ratio order), got {balance!r}")


def check_fraction(name: str, value: float) -> float:
    """`value` as a float if it is a number in [0, 1] (a curriculum, a loss weight, a learning-rate floor); else a
    C3ValueError naming `name`. NaN is refused: no comparison holds for it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise _core.C3ValueError(f"{name} must be in [0, 1], got {value!r}")
    return number


def ratio_weights(balance: str, ratios: Optional[Sequence[int]] = None) -> Optional[list]:
    """The weights of a "w1:w2:..." balance as floats, or None when it is not one (or not one weight per ratio)."""
    if not isinstance(balance, str):
        return None
    try:
        weights = [float(part) for part in balance.split(":")]
    except ValueError:
        return None
    if not all(math.isfinite(w) and w > 0 for w in weights):
        return None
    if ratios is not None and len(weights) != len(ratios):
        return None
    return weights


class MixedBatches:
    """Training batches of mixed ratio from the training regions: each draw picks a ratio among those unlocked at
    that step (see the module's notes on the curriculum), then batch_tokens / (ratio * N) windows (at least one)
    of ratio * N + continuation tokens. The generator's state travels in the checkpoint.

    balance: how the ratio is picked among the unlocked ones. "bytes": each equally likely, so each ratio trains on
    the same number of context bytes (and a long ratio on fewer passages). "passages": each with probability in
    proportion to the ratio, so each ratio trains on about the same number of passages (the long ratios, the
    slowest to learn, get more of the steps). "longest": as "passages", with the weight of the longest ratio of
    all doubled once it is unlocked: it is the slowest to learn, and the shorter ones, once read, need only to be
    kept (at 2x, 4x and 8x the draws are 1 : 2 : 8). "w1:w2:...": one weight per ratio in increasing order, each
    unlocked ratio drawn in proportion to its weight (to give the most steps to the ratios that must converge)."""

    def __init__(self, regions, ratios, latents, batch_tokens, continuation, seed, curriculum_steps=0,
                 balance="bytes"):
        ordered = sorted(ratios)
        self.balance = check_balance(balance, ordered)
        # Each ratio's draw weight for "passages", "longest" and given weights ("bytes" draws uniformly).
        self.ratio_weight = dict(zip(ordered, ratio_weights(self.balance, ordered) or ordered))
        self.regions = [r for r in regions if len(r) > max(ratios) * latents + continuation]
        if not self.regions:
            raise _core.C3ValueError("the training text is too short for the longest ratio")
        self.weights = np.array([len(r) for r in self.regions], np.float64)
        self.weights /= self.weights.sum()
        self.ratios, self.latents, self.continuation = sorted(ratios), latents, continuation
        self.batch_tokens, self.curriculum_steps = batch_tokens, curriculum_steps
        self.rng = np.random.default_rng(seed)

    def unlocked(self, step: int) -> list:
        """The ratios drawn from at `step` (0-based): the k-th smallest from step k / R * curriculum_steps on."""
        count = len(self.ratios)
        return [r for k, r in enumerate(self.ratios) if k * self.curriculum_steps <= step * count]

    def batch_for(self, ratio: int) -> int:
        return max(1, self.batch_tokens // (ratio * self.latents))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def draw(self, step: int = 0):
        """(contexts [B, r * N], continuations [B, C]) as int32 arrays, for 0-based `step`."""
        unlocked = self.unlocked(step)
        if self.balance == "bytes":
            ratio = unlocked[int(self.rng.integers(len(unlocked)))]
        else:
            weights = np.array([self.ratio_weight[r] for r in unlocked], np.float64)
            if self.balance == "longest" and unlocked[-1] == self.ratios[-1]:
                weights[-1] *= 2.0
            ratio = unlocked[int(self.rng.choice(len(unlocked), p=weights / weights.sum()))]
        length = ratio * self.latents
        contexts, continuations = [], []
        for region_index in self.rng.choice(len(self.regions), size=self.batch_for(ratio), p=self.weights):
            region = self.regions[region_index]
            start = int(self.rng.integers(0, len(region) - length - self.continuation + 1))
            contexts.append(region[start:start + length])
            continuations.append(region[start + length:start + length + self.continuation])
        return np.stack(contexts), np.stack(continuations)


# ---- one run --------------------------------------------------------------------------------------------------
def build_cascade(method: str, settings: dict, max_ratio: int, seed: int) -> Cascade:
    """A byte-level cascade of the sweep's shape for `method`. The decoder has room for the full context, the
    reconstruction and the continuation."""
    latents, longest = settings["latents"], max_ratio * settings["latents"]
    encoder = scratch_model_config(settings["model"], longest, latents)
    decoder = scratch_model_config(settings["model"], 2 * longest + settings["continuation"], latents)
    return Cascade.new(encoder, decoder, latents, tokenizer=byte_tokenizer(), seed=seed, method=method)


def _write_json_atomically(path: str, value) -> None:
    analysis.write_text_atomically(path, json.dumps(_jsonable(value), indent=1))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def make_trainer(cascade: Cascade, settings: dict, steps: int):
    """The sweep's (and the demo's) AdamW: warmup over the first 5% of `steps`, then cosine to settings'
    min_lr_ratio (default 5%) of the learning rate, or warmup-stable-decay with settings' lr_decay_fraction (default
    0: cosine); betas 0.9 and settings' beta2 (default 0.999); no weight decay, gradients clipped at norm 1,
    settings' shares."""
    return cascade.trainer(learning_rate=settings["learning_rate"], warmup_steps=max(1, steps // 20),
                           total_steps=steps, min_lr_ratio=settings.get("min_lr_ratio", 0.05),
                           lr_decay_fraction=settings.get("lr_decay_fraction", 0.0),
                           beta2=settings.get("beta2", 0.999), weight_decay=0.0, max_grad_norm=1.0,
                           data_parallel_shares=settings.get("shares", 0))


def teacher_forced_correct(cascade: Cascade, rows, batch: int) -> list:
    """Per row, whether the decoder, fed the true prefix after the row's latents, predicts each valid answer token
    (the row's tokens, then the stop token)."""
    correct = []
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        latents, mask = cascade.encode(part)
        scores = cascade.score(latents, part, latent_mask=mask)
        correct += [scores["correct"][k][scores["valid"][k]] for k in range(len(part))]
    return correct


def teacher_forced_accuracy(cascade: Cascade, contexts, batch: int) -> float:
    """The share of the contexts' tokens that the decoder predicts given the true prefix and the latents."""
    correct = teacher_forced_correct(cascade, contexts, batch)
    return float(np.mean(np.concatenate(correct))) if correct else 0.0


def track_steps(settings: dict, steps: int) -> set:
    """The steps (1-based) after which a run scores its tracking passages: track_points of them, evenly spread,
    the last step included."""
    points = int(settings.get("track_points", 0))
    return {int(round(steps * k / points)) for k in range(1, points + 1)} - {0} if points else set()


def train_run(directory: str, method: str, seed: int, settings: dict, ratios, train_regions, steps: int,
              minutes: Optional[float] = None, continuation_weight: float = 0.0, progress: bool = True,
              on_step: Optional[Callable[[int], None]] = None, track: Optional[dict] = None) -> Cascade:
    """Trains (or resumes, or loads when finished) one run; returns its cascade.

    track: {ratio: held-out contexts}, scored teacher-forced at track_steps (recorded as "track" in trained.json:
    [step, [accuracy of each ratio]] in the order of `ratios`)."""
    os.makedirs(directory, exist_ok=True)
    cascade = build_cascade(method, settings, max(ratios), seed)
    checkpoint = os.path.join(directory, "checkpoint.safetensors")
    finished = os.path.join(directory, "trained.json")
    trainer = make_trainer(cascade, settings, steps)
    data = MixedBatches(train_regions, ratios, settings["latents"], settings["batch_tokens"], settings["continuation"],
                        seed=seed + 1000, curriculum_steps=int(round(settings["curriculum"] * steps)),
                        balance=settings.get("balance", "bytes"))
    step, seconds, log, tracked = 0, 0.0, [], []
    if os.path.exists(checkpoint):
        extra = load_checkpoint(checkpoint, cascade.model, trainer)
        data.restore(extra["data"])
        step, seconds, log = int(extra["step"]), float(extra.get("seconds", 0.0)), list(extra.get("log", []))
        tracked = list(extra.get("track", []))
    scored = track_steps(settings, steps) if track else set()
    if os.path.exists(finished):
        return cascade
    started = time.perf_counter() - seconds
    bar = tqdm(total=steps, initial=step, desc=f"{method} seed {seed}", disable=not progress, leave=False,
               mininterval=1.0)
    try:
        while step < steps:
            if minutes is not None and time.perf_counter() - started > minutes * 60:
                break
            contexts, continuations = data.draw(step)
            if continuation_weight:
                report = cascade.train_step(trainer, contexts, continuation_contexts=contexts,
                                            continuations=continuations, continuation_weight=continuation_weight)
            else:
                report = cascade.train_step(trainer, contexts)
            step += 1
            log.append([int(contexts.shape[1] // settings["latents"]), round(float(report["loss"]), 5)])
            bar.set_postfix(loss=f"{report['loss']:.3f}")
            bar.update(1)
            if step in scored:
                # Scoring draws no random numbers and changes no parameter: the run trains as it would without.
                tracked.append([step, [round(teacher_forced_accuracy(cascade, track[r], settings["eval_batch"]), 5)
                                       for r in sorted(track)]])
            if step % settings["checkpoint_every"] == 0 or step == steps:
                _save_checkpoint(checkpoint, cascade, trainer, data, step, time.perf_counter() - started, log,
                                 tracked)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
    _save_checkpoint(checkpoint, cascade, trainer, data, step, time.perf_counter() - started, log, tracked)
    # log: [ratio, loss] of every step, for learning curves by ratio; track: held-out accuracy during training.
    _write_json_atomically(finished, dict(method=method, seed=seed, steps=step, planned_steps=steps,
                                          threads=_core.num_threads(),
                                          train_seconds=time.perf_counter() - started,
                                          final_loss=log[-1][1] if log else None, log=log,
                                          track_ratios=sorted(track) if track else [], track=tracked))
    return cascade


def _save_checkpoint(path, cascade, trainer, data, step, seconds, log, tracked=()):
    # The one training-checkpoint format (train/checkpoint.hpp), written atomically.
    save_checkpoint(path, cascade.model, trainer, dict(step=step, seconds=seconds, data=data.state(), log=log,
                                                       track=list(tracked)))


# ---- evaluation -----------------------------------------------------------------------------------------------
def evaluate_ratio(cascade: Cascade, passages, ratio: int, settings: dict, prior, progress: bool = False) -> dict:
    """Every measure of one (model, ratio) on passages of ratio * N + continuation tokens. `prior` maps token rows
    to their surprisal (bits)."""
    length = ratio * settings["latents"]
    contexts = [p[:length] for p in passages]
    continuations = [p[length:] for p in passages]
    references, hypotheses, teacher, nats = [], [], [], 0.0
    for start in tqdm(range(0, len(passages), settings["eval_batch"]), desc=f"{cascade.method} {ratio}x",
                      disable=not progress, leave=False):
        rows = contexts[start:start + settings["eval_batch"]]
        latents, mask = cascade.encode(rows)
        hypotheses += cascade.reconstruct(latents, source_tokens=[len(r) for r in rows], return_ids=True,
                                          latent_mask=mask)
        scores = cascade.score(latents, rows, latent_mask=mask)
        teacher += [scores["correct"][k][scores["valid"][k]].astype(np.int8) for k in range(len(rows))]
        follow = continuations[start:start + settings["eval_batch"]]
        follow_scores = cascade.score(latents, follow, latent_mask=mask)
        nats -= float(np.where(follow_scores["valid"], follow_scores["log_probability"].astype(np.float64), 0).sum())
        references += rows
    continuation_bytes = sum(len(c) for c in continuations)  # byte-level: one token per byte
    strict = [surprisal.strict_correct(r, h) for r, h in zip(references, hypotheses)]
    aligned = [surprisal.aligned_correct(r, h) for r, h in zip(references, hypotheses)]
    bits = prior(references)
    teacher_table = surprisal.error_table([1 - c for c in teacher], bits)
    aligned_table = surprisal.error_table([1 - c for c in aligned], bits, edges=teacher_table["surprisal_edges"])
    decode = lambda row: bytes(int(t) for t in row if int(t) < 256).decode("utf-8", errors="replace")  # noqa: E731
    fox = analysis.fox_metrics([decode(r) for r in references], [decode(h) for h in hypotheses])
    return dict(
        ratio=ratio, passages=len(passages), context_tokens=length,
        token_accuracy=float(np.mean([c.mean() for c in strict])),
        aligned_accuracy=float(np.mean([c.mean() for c in aligned])),
        teacher_forced_accuracy=float(np.mean(np.concatenate(teacher))),
        fox_precision=fox["precision"], edit_distance=fox["edit_distance"],
        continuation_bits_per_byte=nats / math.log(2.0) / max(continuation_bytes, 1),
        curves=surprisal.accuracy_curves(references, hypotheses, teacher),
        teacher_errors=teacher_table, aligned_errors=aligned_table,
        teacher_regression=surprisal.position_surprisal_regression([1 - c for c in teacher], bits),
        aligned_regression=surprisal.position_surprisal_regression([1 - c for c in aligned], bits),
    )


def evaluate_run(directory: str, cascade: Optional[Cascade], prior_model: Optional[Cascade], settings: dict, ratios,
                 in_domain, out_of_domain, progress: bool = False) -> dict:
    """Every ratio of one trained run on the in-domain and out-of-domain passages, written to the run's
    evaluation.json (atomically); a run already evaluated is read back instead (the cascades may then be None).
    Surprisal is under prior_model."""
    path = os.path.join(directory, "evaluation.json")
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    prior = lambda rows: surprisal.prior_surprisal(prior_model, rows)  # noqa: E731
    with open(os.path.join(directory, "trained.json")) as handle:
        evaluation = dict(training=json.load(handle), in_domain={}, out_of_domain={})
    keep = lambda ratio: ratio * settings["latents"] + settings["continuation"]  # noqa: E731
    for ratio in ratios:
        evaluation["in_domain"][str(ratio)] = evaluate_ratio(cascade, [p[:keep(ratio)] for p in in_domain], ratio,
                                                             settings, prior, progress)
        evaluation["out_of_domain"][str(ratio)] = evaluate_ratio(cascade, [p[:keep(ratio)] for p in out_of_domain],
                                                                 ratio, settings, prior, progress)
    evaluation = _jsonable(evaluation)
    _write_json_atomically(path, evaluation)
    return evaluation


def load_run(directory: str, method: str, seed: int, settings: dict, max_ratio: int) -> Cascade:
    """The trained cascade of one sweep run, from its checkpoint."""
    cascade = build_cascade(method, settings, max_ratio, seed)
    load_checkpoint(os.path.join(directory, "checkpoint.safetensors"), cascade.model,
                    cascade.trainer(learning_rate=0.0))
    return cascade


def _in_workers(job, work: list, jobs: int, description: str, progress: bool) -> None:
    """job(item) for every item of `work`, in up to `jobs` spawned worker processes."""
    if not work:
        return
    # Not a with-block: Pool.__exit__ terminates the workers without waiting for them, so they could still hold
    # their queues' semaphores when this process exits.
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(work)))
    try:
        for _ in tqdm(pool.imap_unordered(job, work), total=len(work), desc=description, disable=not progress):
            pass
        pool.close()  # every job is done: the workers exit on their own
    except BaseException:
        pool.terminate()  # an error or an interrupt stops the other jobs
        raise
    finally:
        pool.join()


def _training_job(work) -> str:
    """train_run of one run in a worker process (run_sweep's jobs), without a progress bar."""
    directory, method, seed, settings, ratios, train_regions, steps, minutes, continuation_weight, threads, track = work
    _core.set_num_threads(threads)
    train_run(directory, method, seed, settings, ratios, train_regions, steps, minutes, continuation_weight,
              progress=False, track=track)
    return f"{method}-seed{seed}"


def _evaluation_job(work) -> str:
    """evaluate_run of one finished run in a worker process, on one thread (run_sweep's jobs)."""
    output, method, seed, settings, ratios, prior_is_no_context, in_domain, out_of_domain = work
    _core.set_num_threads(1)
    run = lambda name: os.path.join(output, "runs", f"{name}-seed{seed}")  # noqa: E731
    cascade = load_run(run(method), method, seed, settings, max(ratios))
    prior_model = (load_run(run("no_context"), "no_context", seed, settings, max(ratios))
                   if prior_is_no_context and method != "no_context" else cascade)
    evaluate_run(run(method), cascade, prior_model, settings, ratios, in_domain, out_of_domain)
    return f"{method}-seed{seed}"


# ---- the sweep ------------------------------------------------------------------------------------------------
def _check_list(name, values, allowed=None):
    values = list(values)
    if not values:
        raise _core.C3ValueError(f"{name}: give at least one")
    if len(set(values)) != len(values):
        raise _core.C3ValueError(f"{name}: {values} repeats a value")
    for value in values:
        if allowed is not None and value not in allowed:
            raise _core.C3ValueError(f"{name}: unknown {value!r} (known: {', '.join(allowed)})")
    return values


def run_sweep(output: str, methods: Sequence[str] = DEFAULT_METHODS, ratios: Sequence[int] = DEFAULT_RATIOS,
              seeds: Sequence[int] = (0, 1), size: str = "default", steps: Optional[int] = None,
              minutes: Optional[float] = None, eval_passages: Optional[int] = None,
              continuation_weight: float = 0.0, curriculum: Optional[float] = None,
              batch_tokens: Optional[int] = None, jobs: int = 1, shares: int = 0, balance: str = "bytes",
              progress: bool = True,
              on_step: Optional[Callable[[str, int, int], None]] = None) -> dict:
    """Trains, evaluates and reports every (method, seed); returns the results written to results.json.

    steps: optimiser steps per run (default: the size's). minutes: a cap on each run's training time (the
    schedule still follows `steps`; a capped run is not reproducible). eval_passages: held-out passages per ratio
    (default: the size's; out-of-domain passages are capped at the size's ood_passages). curriculum: the fraction
    of the steps over which the ratios are unlocked (default: the size's; 0: all from the start). batch_tokens:
    context tokens per step (default: the size's). jobs: runs trained at once, each in its own process with
    num_threads() // jobs threads, then evaluated at once, each in its own one-thread process (1: one after
    another in this process, on all of c3's threads). shares: fixed data-parallel shares per training step
    (TrainingOptions::data_parallel_shares), which make a run's parameters the same bit for bit on any number of
    threads and jobs; 0 (the default): one share per thread. balance: how each step picks its ratio
    (MixedBatches: "bytes", each unlocked ratio equally likely; "passages", in proportion to the ratio; "longest",
    as "passages" with the longest ratio's weight doubled).
    on_step(method, seed, step) is called after every step (tests interrupt a run with it)."""
    if size not in SIZES:
        raise _core.C3ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    methods = _check_list("methods", methods, METHODS)
    ratios = sorted(_check_list("ratios", [int(r) for r in ratios]))
    seeds = _check_list("seeds", [int(s) for s in seeds])
    if min(ratios) < 1:
        raise _core.C3ValueError(f"ratios must be at least 1, got {ratios}")
    continuation_weight = check_fraction("continuation_weight", continuation_weight)
    settings = dict(SIZES[size])
    if curriculum is not None:
        settings["curriculum"] = check_fraction("curriculum", curriculum)
    if int(jobs) < 1:
        raise _core.C3ValueError(f"jobs must be at least 1, got {jobs}")
    jobs = int(jobs)
    if jobs > 1 and on_step is not None:
        raise _core.C3ValueError("on_step runs in this process: it needs jobs=1")
    if batch_tokens is not None:
        if int(batch_tokens) < 1:
            raise _core.C3ValueError(f"batch_tokens must be at least 1, got {batch_tokens}")
        settings["batch_tokens"] = int(batch_tokens)
    if not 0 <= int(shares) <= MAX_SHARES:
        raise _core.C3ValueError(f"shares must be in [0, {MAX_SHARES}], got {shares}")
    settings["shares"] = int(shares)
    settings["balance"] = check_balance(balance, ratios)
    steps = int(steps or settings["steps"])
    eval_count = int(eval_passages or settings["eval_passages"])
    # results.json records the settings the runs used, not the size's defaults that the options replaced.
    settings.update(steps=steps, eval_passages=eval_count)
    plan = dict(methods=methods, ratios=ratios, seeds=seeds, size=size, steps=steps, minutes=minutes,
                eval_passages=eval_count, continuation_weight=continuation_weight, curriculum=settings["curriculum"],
                batch_tokens=settings["batch_tokens"])
    if settings["shares"]:
        plan["shares"] = settings["shares"]  # absent when 0, so sweeps recorded before the option still resume
    if balance != "bytes":
        plan["balance"] = balance  # likewise absent at the default
    os.makedirs(output, exist_ok=True)
    plan_path = os.path.join(output, "sweep.json")
    if os.path.exists(plan_path):
        with open(plan_path) as handle:
            previous = json.load(handle)
        if previous != _jsonable(plan):
            current = _jsonable(plan)
            changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
            raise _core.ConfigError(f"{output} holds a sweep with other settings ({', '.join(changed)}); use a new "
                                    "--output or the same options to continue it")
    else:
        _write_json_atomically(plan_path, plan)

    train_regions, held_out_regions = default_regions()
    passage_length = max(ratios) * settings["latents"] + settings["continuation"]
    # Held-out windows whose shortest evaluated part (the lowest ratio's context and continuation) occurs verbatim
    # in the training text are skipped, so no evaluated passage was seen in training.
    in_domain = evaluation_passages(held_out_regions, passage_length, eval_count, unseen_in=train_regions,
                                    unseen_length=min(ratios) * settings["latents"] + settings["continuation"])
    out_of_domain = evaluation_passages([_ids(ood_text())], passage_length, min(eval_count, settings["ood_passages"]))
    # A fixed, evenly spread subset of the in-domain passages, scored during training (train_run's track).
    subset = np.unique(np.linspace(0, len(in_domain) - 1, min(settings.get("track_passages", 0),
                                                              len(in_domain))).astype(np.int64))
    track = {r: [in_domain[i][:r * settings["latents"]] for i in subset] for r in ratios} if len(subset) else None

    runs = [(method, seed) for seed in seeds for method in methods]
    run_directory = lambda m, s: os.path.join(output, "runs", f"{m}-seed{s}")  # noqa: E731
    cascades = {}
    if jobs > 1:
        # Runs train side by side, each in its own process with num_threads // jobs threads: a small model's step
        # does not fill many cores, so separate runs use them better than one run on all of them.
        threads = max(1, _core.num_threads() // jobs)
        work = [(run_directory(m, s), m, s, settings, ratios, train_regions, steps, minutes, continuation_weight,
                 threads, track) for m, s in runs
                if not os.path.exists(os.path.join(run_directory(m, s), "trained.json"))]
        _in_workers(_training_job, work, jobs, "training runs", progress)
    else:
        for method, seed in tqdm(runs, desc="training runs", disable=not progress):
            hook = (lambda step, m=method, s=seed: on_step(m, s, step)) if on_step else None
            cascades[method, seed] = train_run(run_directory(method, seed), method, seed, settings, ratios,
                                               train_regions, steps, minutes, continuation_weight, progress, hook,
                                               track)

    results = dict(plan=plan, settings=settings, corpus=corpus.LICENCE, out_of_domain_corpus=OOD_LICENCE, runs={})
    if jobs > 1:
        # One run per worker process, each on one thread: greedy decoding at evaluation batches is too small a
        # product for many threads, so separate processes use the cores better.
        work = [(output, method, seed, settings, ratios, "no_context" in methods, in_domain, out_of_domain)
                for method, seed in runs
                if not os.path.exists(os.path.join(run_directory(method, seed), "evaluation.json"))]
        _in_workers(_evaluation_job, work, jobs, "evaluating runs", progress)
    for method, seed in tqdm(runs, desc="evaluating runs", disable=not progress or jobs > 1):
        cascade = cascades.get((method, seed))  # None when workers trained and evaluated it
        prior_model = cascades.get(("no_context", seed), cascade)
        results["runs"][f"{method}-seed{seed}"] = evaluate_run(run_directory(method, seed), cascade, prior_model,
                                                               settings, ratios, in_domain, out_of_domain, progress)
    results["summary"] = summarise(results, methods, ratios, seeds)
    _write_json_atomically(os.path.join(output, "results.json"), results)
    write_report(output, results)
    return results


METRICS = ("token_accuracy", "aligned_accuracy", "teacher_forced_accuracy", "fox_precision",
           "continuation_bits_per_byte")


def summarise(results: dict, methods, ratios, seeds) -> dict:
    """{domain: {metric: {method: {ratio: [mean, standard deviation over seeds]}}}}."""
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
    return summary


# ---- the report -----------------------------------------------------------------------------------------------
def _figure(rows=1, columns=1, width=6.4, height=4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows))
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(rows, columns, k + 1) for k in range(rows * columns)]


def _save(figure, output, name):
    figure.tight_layout()
    figure.savefig(os.path.join(output, name), dpi=72)
    return name


def _ratio_panels(ratios, seed: int, ylabel: str, draw):
    """One panel per ratio; draw(axis, index, ratio) plots each method's line in it."""
    figure, axes = _figure(1, len(ratios), width=3.6, height=3.0)
    for index, (axis, ratio) in enumerate(zip(axes, ratios)):
        draw(axis, index, ratio)
        axis.set_title(f"{ratio}x, seed {seed}")
        axis.set_xlabel("step")
        axis.set_ylabel(ylabel)
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
            axis.plot(steps[window - 1:], smooth, label=method, color=analysis.color_for(method))
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
                          label=method, color=analysis.color_for(method))
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


def write_report(output: str, results: dict) -> None:
    """report.md and the plots from results (as run_sweep returns them)."""
    plan, summary = results["plan"], results["summary"]
    methods, ratios, seeds = plan["methods"], plan["ratios"], plan["seeds"]
    plots = []
    for metric, label in (("token_accuracy", "greedy token accuracy (strict)"),
                          ("teacher_forced_accuracy", "teacher-forced token accuracy"),
                          ("continuation_bits_per_byte", "continuation bits per byte")):
        figure, (axis,) = _figure()
        for method in methods:
            values = summary["in_domain"][metric][method]
            mean = np.array([np.nan if values[str(r)][0] is None else values[str(r)][0] for r in ratios])
            spread = np.array([0.0 if values[str(r)][1] is None else values[str(r)][1] for r in ratios])
            axis.errorbar(ratios, mean, yerr=spread, marker="o", capsize=3, label=method,
                          color=analysis.color_for(method))
        axis.set_xscale("log", base=2)
        axis.set_xticks(ratios)
        axis.set_xticklabels([f"{r}x" for r in ratios])
        axis.set_xlabel("compression ratio (context tokens per latent)")
        axis.set_ylabel(label)
        # Two lines: one line of this length is wider than the figure and was clipped.
        axis.set_title(f"{label} against ratio\n(held-out, mean and sd over {len(seeds)} seeds)")
        axis.legend()
        plots.append(_save(figure, output, f"{metric}_vs_ratio.png"))
    plots.append(_learning_curves(output, results, methods, ratios, seeds[0]))
    tracks = {method: results["runs"][f"{method}-seed{seeds[0]}"]["training"].get("track") or [] for method in methods}
    if any(tracks.values()):
        plots.append(_save(tracking_figure(tracks, ratios, seeds[0]), output, "held_out_during_training.png"))
    first = f"{methods[0]}-seed{seeds[0]}"
    for method in methods:
        run = results["runs"][f"{method}-seed{seeds[0]}"]["in_domain"]
        figure, axes = _figure(1, len(ratios), width=4.0, height=3.2)
        for axis, ratio in zip(axes, ratios):
            surprisal.plot_accuracy_curves({k: {kk: np.asarray(vv, dtype=float) for kk, vv in v.items()}
                                            for k, v in run[str(ratio)]["curves"].items()},
                                           title=f"{method} {ratio}x", ax=axis)
        plots.append(_save(figure, output, f"decay_{method}.png"))
        figure, axes = _figure(1, len(ratios), width=4.0, height=3.2)
        for axis, ratio in zip(axes, ratios):
            table = {k: np.asarray(v, dtype=float) for k, v in run[str(ratio)]["teacher_errors"].items()}
            surprisal.plot_error_heatmap(table, title=f"{method} {ratio}x teacher-forced errors", ax=axis)
        plots.append(_save(figure, output, f"heatmap_{method}.png"))
    lines = ["# c3 sweep: C3 against baselines under the same latent budget", "",
             f"Methods {', '.join(methods)}; ratios {', '.join(f'{r}x' for r in ratios)} at N = "
             f"{results['settings']['latents']} latents; seeds {', '.join(map(str, seeds))}; {plan['steps']} steps "
             f"per run ({plan['size']} size). One model per method and seed, trained on contexts of mixed length "
             f"(about {results['settings']['batch_tokens']} context tokens per step; ratios unlocked in increasing "
             f"order over the first {plan['curriculum']:.0%} of the steps); each ratio is read off held-out "
             "contexts of exactly ratio x N bytes.", "",
             f"In-domain text: {results['corpus']}. Out-of-domain text: {results['out_of_domain_corpus']}.", ""]
    for domain in ("in_domain", "out_of_domain"):
        passages = results["runs"][first][domain][str(ratios[0])]["passages"]
        lines += [f"## {domain.replace('_', '-')} ({passages} passages per ratio)", ""]
        for metric in METRICS:
            lines += [f"**{metric}** (mean ± sd over seeds)", "",
                      "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for method in methods:
                cells = []
                for r in ratios:
                    mean, spread = summary[domain][metric][method][str(r)]
                    cells.append("n/a" if mean is None else f"{mean:.3f} ± {spread:.3f}")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
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
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    analysis.write_text_atomically(os.path.join(output, "report.md"), "\n".join(lines) + "\n")
