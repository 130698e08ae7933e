"""One run of an experiment: train (or resume) a cascade, evaluate it at every ratio, and read back what a run
wrote, checked, so that a damaged record is trained or evaluated again and never becomes a result."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from .. import _core, analysis
from ..cascade import Cascade
from ..eval import information_bits, score_rows, surprisal
from ..eval.continuation import utf8_bytes
from ..models import portable_path
from ..jsonfiles import jsonable, read_json, write_json
from ..training import load_checkpoint, save_checkpoint
from .batches import MixedBatches
from .recipe import build_cascade, make_trainer, trainable_parts

# ---- reading back what a run wrote ----------------------------------------------------------------------------
def _fail(path: str, message: str):
    raise _core.FormatError(f"{path}: {message}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_sweep_file(path: str, check: Callable[[str, object], None]):
    """The JSON value of a file a sweep wrote (sweep.json, trained.json, evaluation.json), checked
    (jsonfiles.read_json): a damaged file is a c3.FormatError naming it, never a traceback or a result."""
    return read_json(path, check)


def check_plan(path: str, value) -> None:
    """sweep.json: a JSON object (its values are compared with the current options key by key)."""
    if not isinstance(value, dict):
        _fail(path, f"expected a JSON object (the sweep's settings), got {type(value).__name__}")


def _trained_checker(method: str, seed: int):
    def check(path: str, value) -> None:
        """trained.json of run (method, seed) (None: any run): what train_run writes."""
        if not isinstance(value, dict):
            _fail(path, f"expected a JSON object, got {type(value).__name__}")
        if method is not None and (value.get("method") != method or value.get("seed") != seed):
            _fail(path, f"records run {value.get('method')!r} seed {value.get('seed')!r}, not {method!r} seed {seed}")
        for key in ("steps", "planned_steps"):
            if not _is_count(value.get(key)):
                _fail(path, f"'{key}' must be a non-negative integer, got {value.get(key)!r}")
        for key in ("log", "track", "track_ratios"):
            if not isinstance(value.get(key), list):
                _fail(path, f"'{key}' must be a list, got {type(value.get(key)).__name__}")
        if not all(isinstance(entry, list) and len(entry) == 2 for entry in value["log"]):
            _fail(path, "'log' must hold [ratio, loss] pairs")
        if not (value.get("final_loss") is None or _is_number(value.get("final_loss"))):
            _fail(path, f"'final_loss' must be a number or null, got {value.get('final_loss')!r}")
    return check


# The headline measures of each (run, ratio), numbers or null in evaluation.json.
METRICS = ("token_accuracy", "aligned_accuracy", "teacher_forced_accuracy", "fox_precision",
           "continuation_bits_per_byte")
EVALUATION_KEYS = ("passages", "curves", "teacher_errors", "teacher_regression") + METRICS


def _evaluation_checker(method: str, seed: int, ratios):
    def check(path: str, value) -> None:
        """evaluation.json of run (method, seed): what evaluate_run writes, every ratio of the sweep present with
        the measures that the summary and the report read."""
        if not isinstance(value, dict):
            _fail(path, f"expected a JSON object, got {type(value).__name__}")
        try:
            _trained_checker(method, seed)(path, value.get("training"))
        except _core.FormatError as error:
            _fail(path, "'training': " + str(error).split(": ", 1)[-1])
        for domain in ("in_domain", "out_of_domain"):
            table = value.get(domain)
            if not isinstance(table, dict):
                _fail(path, f"'{domain}' must be an object, got {type(table).__name__}")
            for ratio in ratios:
                entry = table.get(str(ratio))
                if not isinstance(entry, dict):
                    _fail(path, f"'{domain}' has no object for ratio {ratio}")
                missing = [key for key in EVALUATION_KEYS if key not in entry]
                if missing:
                    _fail(path, f"'{domain}' ratio {ratio} lacks {', '.join(missing)}")
                for key in METRICS:
                    if not (entry[key] is None or _is_number(entry[key])):
                        _fail(path, f"'{domain}' ratio {ratio}: '{key}' must be a number or null, got {entry[key]!r}")
                for key in ("curves", "teacher_errors", "teacher_regression"):
                    if not isinstance(entry[key], dict):
                        _fail(path, f"'{domain}' ratio {ratio}: '{key}' must be an object")
    return check


def check_extra(path: str, extra) -> None:
    """A sweep checkpoint's c3.extra (what _save_checkpoint writes): the step, the data generator's state, the
    loss log and the tracked accuracies."""
    if not isinstance(extra, dict):
        _fail(path, f"metadata c3.extra must be a JSON object, got {type(extra).__name__}")
    if not _is_count(extra.get("step")):
        _fail(path, f"c3.extra 'step' must be a non-negative integer, got {extra.get('step')!r}")
    if not isinstance(extra.get("data"), dict):
        _fail(path, "c3.extra 'data' must be the data generator's state (an object)")
    if not _is_number(extra.get("seconds", 0.0)):
        _fail(path, f"c3.extra 'seconds' must be a number, got {extra.get('seconds')!r}")
    for key in ("log", "track"):
        if not isinstance(extra.get(key, []), list):
            _fail(path, f"c3.extra '{key}' must be a list")


def _say(message: str) -> None:
    """A note on stderr about what a resumed sweep does differently from a fresh one."""
    print(f"c3 sweep: {message}", file=sys.stderr, flush=True)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def teacher_forced_accuracy(cascade: Cascade, contexts, batch: int) -> float:
    """The share of the contexts' tokens that the decoder predicts given the true prefix and the latents."""
    correct = score_rows(cascade, contexts, batch, reconstruct=False)["correct"]
    return float(np.mean(np.concatenate(correct))) if correct else 0.0


def track_steps(settings: dict, steps: int) -> set:
    """The steps (1-based) after which a run scores its tracking passages: track_points of them, evenly spread,
    the last step included."""
    points = int(settings.get("track_points", 0))
    return {int(round(steps * k / points)) for k in range(1, points + 1)} - {0} if points else set()


def train_run(directory: str, method: str, seed: int, settings: dict, ratios, train_regions, steps: int,
              minutes: Optional[float] = None, continuation_weight: float = 0.0, progress: bool = True,
              on_step: Optional[Callable[[int], None]] = None, track: Optional[dict] = None) -> Cascade:
    """Trains (or resumes, or loads when finished) one run; returns its cascade. The one resume path, whatever
    the number of jobs.

    A run is finished only when trained.json is a valid record AND checkpoint.safetensors loads at the step it
    records. A checkpoint that is missing or does not load is trained again from the start, and a trained.json
    that is damaged is written again from the checkpoint (either is said on stderr); a run that trains again
    loses its evaluation.json. Nothing is ever reported from a model that did not load.

    track: {ratio: held-out contexts}, scored teacher-forced at track_steps (recorded as "track" in trained.json:
    [step, [accuracy of each ratio]] in the order of `ratios`)."""
    os.makedirs(directory, exist_ok=True)
    checkpoint = os.path.join(directory, "checkpoint.safetensors")
    finished = os.path.join(directory, "trained.json")
    name = f"run {method}-seed{seed}"
    if steps == 0:
        # A method with nothing to train (a pretrained sweep's UNTRAINED): its model is the one build_cascade makes
        # from the seed, so no checkpoint is kept; trained.json records zero steps.
        record = dict(method=method, seed=seed, steps=0, planned_steps=0, threads=_core.num_threads(),
                      train_seconds=0.0, final_loss=None, log=[], track_ratios=[], track=[])
        try:
            kept = read_sweep_file(finished, _trained_checker(method, seed)) if os.path.exists(finished) else None
        except _core.C3Error:
            kept = None
        if kept is None or kept.get("steps") != 0:
            _remove(os.path.join(directory, "evaluation.json"))
            write_json(finished, record)
        return build_cascade(method, settings, max(ratios), seed)

    def fresh():
        cascade = build_cascade(method, settings, max(ratios), seed)
        data = MixedBatches(train_regions, ratios, settings["latents"], settings["batch_tokens"],
                            settings["continuation"], seed=seed + 1000,
                            curriculum_steps=int(round(settings["curriculum"] * steps)),
                            balance=settings.get("balance", "bytes"))
        return cascade, make_trainer(cascade, settings, steps), data

    cascade, trainer, data = fresh()
    step, seconds, log, tracked = 0, 0.0, [], []
    loaded = damaged = False
    if os.path.exists(checkpoint):
        try:
            extra = load_checkpoint(checkpoint, cascade.model, trainer, check=check_extra)
            if extra["data"]:  # {}: a run trained elsewhere (import_run), finished, with no data order to resume
                data.restore(extra["data"])
            step, seconds, log = int(extra["step"]), float(extra.get("seconds", 0.0)), list(extra.get("log", []))
            tracked = list(extra.get("track", []))
            loaded = True
        except (_core.C3Error, ValueError, TypeError, KeyError) as error:
            _say(f"{name}: its checkpoint does not load ({' '.join(str(error).split())}); training it from the start")
            _remove(checkpoint)
            damaged = True
            cascade, trainer, data = fresh()
            step, seconds, log, tracked = 0, 0.0, [], []
    scored = track_steps(settings, steps) if track else set()
    if os.path.exists(finished):
        record = None
        try:
            record = read_sweep_file(finished, _trained_checker(method, seed))
        except _core.C3Error as error:
            _say(f"{name}: {' '.join(str(error).split())}; "
                 + ("it is written again from the checkpoint" if loaded else "training it again"))
        if record is not None and not loaded:
            if not damaged:  # a damaged one was said above
                _say(f"{name}: {finished} says it is trained, but its checkpoint is missing; training it again")
            record = None
        elif record is not None and record["steps"] != step:
            _say(f"{name}: {finished} records {record['steps']} steps, its checkpoint holds {step}; continuing from "
                 "the checkpoint")
            record = None
        if record is not None:
            return cascade
        _remove(finished)
    # The model may change from here on: an evaluation made before is no longer of this run.
    _remove(os.path.join(directory, "evaluation.json"))
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
                                            continuations=continuations, continuation_weight=continuation_weight,
                                            continuation_task=settings.get("continuation_task", False))
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
    write_json(finished, dict(method=method, seed=seed, steps=step, planned_steps=steps,
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
    scores = score_rows(cascade, contexts, settings["eval_batch"], continuations=continuations, progress=progress,
                        description=f"{cascade.method} {ratio}x",
                        continuation_task=settings.get("continuation_task", False))
    references, hypotheses, teacher = contexts, scores["hypotheses"], scores["correct"]
    reconstruction_bits, nats = scores["bits"], float(np.sum(scores["continuation_nats"]))
    continuation_bytes = sum(utf8_bytes(cascade, c) for c in continuations)
    strict = scores["strict"]
    aligned = [surprisal.aligned_correct(r, h) for r, h in zip(references, hypotheses)]
    bits = prior(references)
    teacher_table = surprisal.error_table([1 - c for c in teacher], bits)
    aligned_table = surprisal.error_table([1 - c for c in aligned], bits, edges=teacher_table["surprisal_edges"])
    # Fox's metrics on the texts, special tokens left out (invalid UTF-8 decodes as U+FFFD).
    decode = lambda row: cascade.tokenizer.decode(np.asarray(row, np.int32), skip_special_tokens=True)  # noqa: E731
    fox = analysis.fox_metrics([decode(r) for r in references], [decode(h) for h in hypotheses])
    information = information_bits(reconstruction_bits, bits, settings["latents"])
    return dict(
        ratio=ratio, passages=len(passages), context_tokens=length,
        token_accuracy=float(np.mean([c.mean() for c in strict])),
        # The position (tokens) of each passage's first strict greedy error, its length when there is none: error
        # propagation starts there, so the strict curve after it says little about what the latents hold.
        first_error_positions=[int(np.argmin(c)) if not c.all() else int(len(c)) for c in strict],
        aligned_accuracy=float(np.mean([c.mean() for c in aligned])),
        teacher_forced_accuracy=float(np.mean(np.concatenate(teacher))),
        fox_precision=fox["precision"], edit_distance=fox["edit_distance"],
        continuation_bits_per_byte=nats / math.log(2.0) / max(continuation_bytes, 1),
        curves=surprisal.accuracy_curves(references, hypotheses, teacher),
        teacher_errors=teacher_table, aligned_errors=aligned_table,
        teacher_regression=surprisal.position_surprisal_regression([1 - c for c in teacher], bits),
        aligned_regression=surprisal.position_surprisal_regression([1 - c for c in aligned], bits),
        # Information in bits (information_bits), and per passage, in passage order, what the summary's
        # passage-level intervals resample.
        reconstruction_bits_per_token=information["reconstruction_bits_per_token"],
        prior_bits_per_token=information["prior_bits_per_token"],
        supplied_bits_per_passage=information["supplied_bits_per_passage"],
        bits_per_latent=information["bits_per_latent_mean"],
        per_passage=dict(token_accuracy=[float(c.mean()) for c in strict],
                         teacher_forced_accuracy=[float(c.mean()) for c in teacher],
                         bits_per_latent=information["bits_per_latent"]),
    )


def evaluate_run(directory: str, cascade: Optional[Cascade], prior_model: Optional[Cascade], settings: dict, ratios,
                 in_domain, out_of_domain, progress: bool = False) -> dict:
    """Every ratio of one trained run on the in-domain and out-of-domain passages, written to the run's
    evaluation.json (atomically); a run already evaluated is read back instead (the cascades may then be None).
    Surprisal is under prior_model."""
    path = os.path.join(directory, "evaluation.json")
    done = finished_evaluation(directory, ratios)
    if done is not None:
        return done
    if cascade is None or prior_model is None:
        raise _core.C3ValueError(f"{directory}: no valid evaluation.json, and no trained cascade to evaluate")
    prior = lambda rows: surprisal.prior_surprisal(prior_model, rows)  # noqa: E731
    training = read_sweep_file(os.path.join(directory, "trained.json"), _trained_checker(None, None))
    evaluation = dict(training=training, in_domain={}, out_of_domain={})
    keep = lambda ratio: ratio * settings["latents"] + settings["continuation"]  # noqa: E731
    for ratio in ratios:
        evaluation["in_domain"][str(ratio)] = evaluate_ratio(cascade, [p[:keep(ratio)] for p in in_domain], ratio,
                                                             settings, prior, progress)
        evaluation["out_of_domain"][str(ratio)] = evaluate_ratio(cascade, [p[:keep(ratio)] for p in out_of_domain],
                                                                 ratio, settings, prior, progress)
    evaluation = jsonable(evaluation)
    write_json(path, evaluation)
    return evaluation


def finished_evaluation(directory: str, ratios, quiet: bool = False) -> Optional[dict]:
    """The run's evaluation.json when it is valid (every ratio, every measure) and made from the run's current
    trained.json; else None (a damaged or stale one is said on stderr, unless quiet, and is evaluated again)."""
    path = os.path.join(directory, "evaluation.json")
    if not os.path.exists(path):
        return None
    try:
        evaluation = read_sweep_file(path, _evaluation_checker(None, None, ratios))
        training = read_sweep_file(os.path.join(directory, "trained.json"), _trained_checker(None, None))
    except _core.C3Error as error:
        quiet or _say(f"{' '.join(str(error).split())}; evaluating the run again")
        return None
    if evaluation["training"] != jsonable(training):
        quiet or _say(f"{path} was made by an earlier training of the run; evaluating it again")
        return None
    return evaluation


def import_run(directory: str, method: str, seed: int, settings: dict, ratios, cascade_dir: str,
               engine: str = "torch", train_seconds: Optional[float] = None) -> None:
    """Makes a cascade trained elsewhere (a directory in the official layout, as c3.torch.from_torch and
    examples/train_torch.py write it) the finished run (method, seed) of a sweep, so that the sweep evaluates it
    exactly as one it trained: two ways to train, one analysis.

    The cascade must be the one the sweep builds for the run (method, encoder and decoder configs, N, projector);
    its parameters replace all of that model's, written as the run's checkpoint (fresh optimiser moments) with a
    trained.json that records the planned steps, the engine and the source directory. A mismatch, a part the run
    keeps frozen (a pretrained sweep's trainable_parts) that differs from the pretrained one, or a run of zero steps
    is a c3.ConfigError and writes nothing; an evaluation of an earlier model of the run is removed."""
    trained = Cascade.load(cascade_dir)
    cascade = build_cascade(method, settings, max(ratios), seed)
    mine, theirs = cascade.model.config, trained.model.config
    for key in ("method", "num_latents", "projector", "encoder", "decoder"):
        if mine.get(key) != theirs.get(key):
            raise _core.ConfigError(f"{cascade_dir}: its {key} ({theirs.get(key)!r}) is not run {method}-seed{seed}'s "
                                    f"({mine.get(key)!r})")
    steps = int(settings.get("method_steps", {}).get(method, settings["steps"]))
    if steps == 0:  # load_run rebuilds such a run and would never read the imported weights
        raise _core.ConfigError(f"run {method}-seed{seed} trains nothing (zero steps): there is nothing to import")
    if "pretrained" in settings:
        # A part the run keeps frozen must come back as the sweep builds it: else the run's record (what it trains)
        # would be false, e.g. a decoder trained elsewhere reported as C3 with its decoder frozen.
        frozen = {part for part, trains in trainable_parts(method).items() if not trains}
        bridge_part = lambda name: ("queries" if name.startswith("model.Q.") else  # noqa: E731
                                    "projector" if name.startswith("model.mm_projector.") else "hierarchical")
        pairs = [(part, getattr(cascade.model, part).parameters(), getattr(trained.model, part).parameters())
                 for part in ("encoder", "decoder") if part in frozen]
        pairs.append(("bridge", cascade.model.bridge_parameters(), trained.model.bridge_parameters()))
        for part, built, given in pairs:
            for name, value in built.items():
                if (part != "bridge" or bridge_part(name) in frozen) and not (
                        name in given and np.array_equal(np.asarray(given[name]), np.asarray(value))):
                    label = part if part != "bridge" else bridge_part(name)
                    raise _core.ConfigError(f"{cascade_dir}: its {label} ({name}) differs from the pretrained one, "
                                            f"but run {method}-seed{seed} keeps the {label} frozen")
    for part in ("encoder", "decoder"):
        getattr(cascade.model, part).set_parameters(getattr(trained.model, part).parameters(), strict=True)
    bridge = cascade.model.bridge_parameters()
    for name, value in trained.model.bridge_parameters().items():
        bridge[name][...] = value
    trainer = make_trainer(cascade, settings, steps)
    os.makedirs(directory, exist_ok=True)
    _remove(os.path.join(directory, "evaluation.json"))
    _remove(os.path.join(directory, "trained.json"))
    save_checkpoint(os.path.join(directory, "checkpoint.safetensors"), cascade.model, trainer,
                    dict(step=steps, seconds=float(train_seconds or 0.0), data={}, log=[], track=[]))
    write_json(os.path.join(directory, "trained.json"),
               dict(method=method, seed=seed, steps=steps, planned_steps=steps, threads=0,
                    train_seconds=float(train_seconds or 0.0), final_loss=None, log=[], track_ratios=[], track=[],
                    engine=engine, source=portable_path(cascade_dir)))


def load_run(directory: str, method: str, seed: int, settings: dict, max_ratio: int) -> Cascade:
    """The trained cascade of one sweep run, from its checkpoint (a run of zero steps: as build_cascade makes it)."""
    cascade = build_cascade(method, settings, max_ratio, seed)
    if settings.get("method_steps", {}).get(method) == 0:
        return cascade
    load_checkpoint(os.path.join(directory, "checkpoint.safetensors"), cascade.model,
                    cascade.trainer(learning_rate=0.0))
    return cascade
