"""A corpus on a Ray cluster: compress it into latents shards, then reconstruct and score it, shard by shard.

    c3 compress --cascade C --texts corpus.jsonl --output work/ --ray [ADDRESS]
    c3 eval     --cascade C --texts corpus.jsonl --output metrics.json --ray [ADDRESS]

Input is one JSONL file (each line a JSON string or an object with a "text" field), cut into shards of
``shard_size`` documents, or a folder of such files, one shard each (in name order). Each Ray actor loads the
cascade once and works through the shards it is given, in batches of ``batch_size`` documents:

    work/manifest.json            what the work directory holds (cascade identity, shards, settings)
    work/latents/<shard>.safetensors   latents [B, N, d] with metadata (save_latents: cascade, source tokens)
    work/counts/<shard>.json      token counts (evaluation sizes its reconstructions from the longest text)
    work/results/<shard>.json     hypotheses, Fox per-page scores and alignment counts

Every file appears whole or not at all, so a stopped run is restarted by running it again: finished shards are
skipped. A shard whose actor dies is given to another actor (Ray restarts the dead one). The reduce step merges
the per-shard results as the single-process computation does: Fox scores are per-page means over the corpus
(``analysis.fox_summary`` of the concatenated pages) and the decay curve comes from summed alignment counts
(``analysis.decay_from_counts``). ``use_ray=False`` runs the same shards in this process: results are identical
(same shards, same batches, same threads per worker).

The cascade directory and the work directory must be paths that every node sees (a shared filesystem); the
corpus is read by the driver and shipped to the actors.
"""
from __future__ import annotations

import collections
import json
import os
from typing import Callable, Iterator, List, Optional

import numpy as np

from . import _core

SHARD_FORMAT = "c3.distributed/1"


# ---- the corpus as shards ------------------------------------------------------------------------------------------
class Shard:
    """A named run of documents; its texts are read when needed (a corpus need not fit in memory)."""

    def __init__(self, name: str, path: str, offset: int = 0, count: Optional[int] = None):
        self.name, self.path, self.offset, self.count = name, path, offset, count

    def texts(self) -> List[str]:
        texts = []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            line_number = 0
            for raw in handle:
                line_number += 1
                if self.count is not None and len(texts) == self.count:
                    break
                if not raw.strip():
                    continue
                texts.append(_document(raw, self.path, self.name, line_number))
        return texts


def _document(raw: bytes, path: str, shard: str, line_number: int) -> str:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _core.FormatError(f"{path}: shard {shard}, line {line_number}: not JSON ({error})") from None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return value["text"]
    if isinstance(value, str):
        return value
    raise _core.FormatError(f"{path}: shard {shard}, line {line_number}: expected a JSON string or an object "
                            f"with a 'text' string")


def plan_shards(source: str, shard_size: int = 1000) -> List[Shard]:
    """Shards of a JSONL file (``shard_size`` non-empty lines each) or of a folder of JSONL files (one each)."""
    if shard_size < 1:
        raise _core.C3ValueError(f"shard_size must be at least 1, got {shard_size}")
    if os.path.isdir(source):
        names = sorted(name for name in os.listdir(source) if name.endswith(".jsonl"))
        if not names:
            raise _core.C3IOError(f"{source}: no .jsonl shards in this folder")
        return [Shard(name[:-len(".jsonl")], os.path.join(source, name)) for name in names]
    if not os.path.exists(source):
        raise _core.C3IOError(f"{source}: no such corpus file or folder")
    stem = os.path.splitext(os.path.basename(source))[0]
    shards, offset, documents, start = [], 0, 0, 0
    with open(source, "rb") as handle:
        for raw in handle:
            if raw.strip():
                if documents == shard_size:
                    shards.append(Shard(f"{stem}-{len(shards):05d}", source, start, documents))
                    start, documents = offset, 0
                documents += 1
            offset += len(raw)
    if documents:
        shards.append(Shard(f"{stem}-{len(shards):05d}", source, start, documents))
    if not shards:
        raise _core.C3ValueError(f"{source}: the corpus holds no documents")
    return shards


# ---- the work on one shard (the same in an actor and in this process) ----------------------------------------------
def _batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(count, start + batch_size))


def _write_json(path: str, value: dict) -> None:
    """Written beside the target, then renamed: a killed worker leaves no half file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w") as handle:
        json.dump(value, handle)
    os.replace(partial, path)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def latents_path(work: str, shard: str) -> str:
    return os.path.join(work, "latents", shard + ".safetensors")


def counts_path(work: str, shard: str) -> str:
    return os.path.join(work, "counts", shard + ".json")


def results_path(work: str, shard: str) -> str:
    return os.path.join(work, "results", shard + ".json")


def compress_shard(cascade, work: str, shard: str, texts: List[str], batch_size: int, truncate: bool) -> dict:
    """Latents of a shard, batch by batch, saved with their metadata."""
    from .cascade import save_latents

    latents = np.concatenate([cascade.compress(texts[part], truncate=truncate)
                              for part in _batches(len(texts), batch_size)])
    source_tokens = [len(row) for row in cascade.tokenize(texts)]
    os.makedirs(os.path.join(work, "latents"), exist_ok=True)
    save_latents(latents_path(work, shard), latents, cascade, source_tokens=source_tokens,
                 metadata={"shard": shard, "batch_size": batch_size, "truncate": truncate})
    return {"shard": shard, "documents": len(texts)}


def count_shard(cascade, work: str, shard: str, texts: List[str]) -> dict:
    counts = {"shard": shard, "cascade": cascade.identity(), "tokens": [len(row) for row in cascade.tokenize(texts)]}
    _write_json(counts_path(work, shard), counts)
    return counts


def evaluate_shard(cascade, work: str, shard: str, texts: List[str], batch_size: int, max_new_tokens: int) -> dict:
    """Reconstruct and score a shard, as `c3 eval` does for a whole corpus: latents (made here, or read from an
    earlier compression of this shard by this cascade), greedy reconstructions, Fox per-page scores and the
    alignment counts of the decay curve."""
    from . import analysis
    from .cascade import load_latents

    latents = None
    path = latents_path(work, shard)
    if os.path.exists(path):
        try:
            stored, metadata = load_latents(path, cascade)
            if (len(stored) == len(texts) and metadata.get("user.batch_size") == str(batch_size)
                    and metadata.get("c3.cascade") == cascade.identity()):
                latents = stored
        except _core.C3Error:
            latents = None  # made by another cascade, or damaged: compressed again below
    if latents is None:
        compress_shard(cascade, work, shard, texts, batch_size, truncate=True)
        latents, _ = load_latents(path, cascade)
    hypotheses = []
    for part in _batches(len(texts), batch_size):
        hypotheses += cascade.reconstruct(latents[part], max_new_tokens=max_new_tokens)
    references = cascade.tokenize(texts)
    hypothesis_ids = [np.asarray(cascade.tokenizer.encode(h), dtype=np.int32) for h in hypotheses]
    profile = _core.position_profile(list(zip(references, hypothesis_ids)), bins=20)
    scores = analysis.fox_page_scores(texts, hypotheses)
    result = {"format": SHARD_FORMAT, "shard": shard, "cascade": cascade.identity(), "batch_size": batch_size,
              "max_new_tokens": max_new_tokens, "hypotheses": hypotheses,
              "source_tokens": [len(row) for row in references],
              "fox": {key: [None if np.isnan(v) else float(v) for v in values] for key, values in scores.items()},
              "profile": {key: np.asarray(profile[key]).tolist() for key in analysis.PROFILE_COUNTS}}
    _write_json(results_path(work, shard), result)
    return {"shard": shard, "documents": len(texts)}


def merge_results(results: List[dict], num_latents: int) -> dict:
    """The reduce step: the metrics `c3 eval` writes, from per-shard results in corpus order."""
    from . import analysis

    scores = {key: np.array([np.nan if v is None else v for result in results for v in result["fox"][key]],
                            dtype=np.float64) for key in analysis.FOX_SCORES}
    metrics = analysis.fox_summary(scores)
    counts = {key: np.sum([np.asarray(result["profile"][key], np.int64) for result in results], axis=0)
              for key in analysis.PROFILE_COUNTS}
    metrics["decay"] = {key: np.asarray(value).tolist() for key, value in analysis.decay_from_counts(counts).items()}
    lengths = [n for result in results for n in result["source_tokens"]]
    metrics["compression_ratio"] = float(np.mean(lengths) / num_latents)
    return metrics


# ---- workers -------------------------------------------------------------------------------------------------------
class ShardWorker:
    """Holds one loaded cascade; Ray runs it as an actor (num_cpus = threads), use_ray=False in this process."""

    def __init__(self, cascade_path: str, threads: int = 1):
        from . import set_num_threads
        from .cascade import Cascade

        set_num_threads(int(threads))
        self.cascade = Cascade.load(cascade_path)

    def pid(self) -> int:
        return os.getpid()

    def describe(self) -> dict:
        return {"cascade": self.cascade.identity(), "num_latents": self.cascade.num_latents}

    def run(self, task: str, work: str, shard: str, texts: List[str], options: dict) -> dict:
        if task == "compress":
            return compress_shard(self.cascade, work, shard, texts, options["batch_size"], options["truncate"])
        if task == "count":
            return count_shard(self.cascade, work, shard, texts)
        if task == "evaluate":
            return evaluate_shard(self.cascade, work, shard, texts, options["batch_size"], options["max_new_tokens"])
        raise _core.C3ValueError(f"unknown task {task!r}")


class Pool:
    """Workers over which shards are mapped: Ray actors (each loads the cascade once), or one in this process.

    A shard whose actor dies is handed to the next free actor; Ray restarts the dead actor (its cascade is loaded
    again) up to ``max_restarts`` times."""

    def __init__(self, cascade_path: str, use_ray: bool = True, address: Optional[str] = None,
                 actors: Optional[int] = None, threads: int = 1, max_restarts: int = 4):
        self.use_ray, self.threads = use_ray, int(threads)
        self.retried = []  # shards handed to another actor after theirs died
        if not use_ray:
            self.workers = [ShardWorker(cascade_path, threads)]
            self.description = self.workers[0].describe()
            return
        try:
            import ray
        except ImportError:
            raise _core.C3Error("running on Ray needs the ray package: pip install 'c3[ray]'") from None

        if not ray.is_initialized():
            ray.init(address=address or None, log_to_driver=False)
        if actors is None:
            actors = max(1, int(ray.available_resources().get("CPU", 1) // self.threads))
        remote = ray.remote(ShardWorker).options(num_cpus=self.threads, max_restarts=max_restarts,
                                                 max_task_retries=0)
        self.workers = [remote.remote(cascade_path, self.threads) for _ in range(int(actors))]
        self.description = ray.get(self.workers[0].describe.remote())

    def pids(self) -> List[int]:
        if not self.use_ray:
            return [os.getpid()]
        import ray

        return ray.get([worker.pid.remote() for worker in self.workers])

    def map(self, task: str, work: str, shards: List[Shard], options: dict,
            callback: Optional[Callable[[dict], None]] = None, retries: int = 3) -> None:
        """Runs `task` on every shard; calls callback(report) as each finishes (in completion order)."""
        if not self.use_ray:
            for shard in shards:
                report = self.workers[0].run(task, work, shard.name, shard.texts(), options)
                callback and callback(report)
            return
        import ray

        pending = collections.deque((shard, 0) for shard in shards)
        in_flight = {}  # object ref -> (shard, attempts, worker index)
        load = [0] * len(self.workers)
        per_worker = 2  # one running, one queued: no actor waits on the driver
        while pending or in_flight:
            while pending and min(load) < per_worker:
                index = int(np.argmin(load))
                shard, attempts = pending.popleft()
                reference = self.workers[index].run.remote(task, work, shard.name, shard.texts(), options)
                in_flight[reference] = (shard, attempts, index)
                load[index] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            shard, attempts, index = in_flight.pop(done[0])
            load[index] -= 1
            try:
                report = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError):
                if attempts >= retries:
                    raise
                self.retried.append(shard.name)
                pending.appendleft((shard, attempts + 1))  # its actor died: another one takes it
                continue
            callback and callback(report)


# ---- the two jobs --------------------------------------------------------------------------------------------------
def _manifest(work: str, source: str, shards: List[Shard], pool: Pool, shard_size: int, batch_size: int) -> dict:
    """Checks that a work directory being resumed was made from the same corpus, cascade and settings."""
    manifest = {"format": SHARD_FORMAT, "source": os.path.abspath(source), "cascade": pool.description["cascade"],
                "shard_size": shard_size, "batch_size": batch_size, "shards": [shard.name for shard in shards]}
    previous = _read_json(os.path.join(work, "manifest.json"))
    if previous is not None and previous != manifest:
        changed = sorted(key for key in manifest if previous.get(key) != manifest[key])
        raise _core.C3ValueError(f"{work}: this work directory was made with another {', '.join(changed)}; "
                                 f"use a fresh one")
    _write_json(os.path.join(work, "manifest.json"), manifest)
    return manifest


def _map_with_progress(pool: "Pool", task: str, work: str, shards: List[Shard], finished: Callable[[Shard], bool],
                       options: dict, progress: bool, callback=None) -> None:
    """Maps `task` over the shards not yet finished, under a progress bar that counts the finished ones too."""
    from tqdm.auto import tqdm

    todo = [shard for shard in shards if not finished(shard)]
    bar = tqdm(total=len(shards), initial=len(shards) - len(todo), desc=task, unit="shard", disable=not progress)

    def done(report):
        bar.update(1)
        callback and callback(report)
    try:
        pool.map(task, work, todo, options, done)
    finally:
        bar.close()


def _open_pool(cascade_path, pool, use_ray, address, actors, threads) -> Pool:
    return pool if pool is not None else Pool(cascade_path, use_ray=use_ray, address=address, actors=actors,
                                              threads=threads)


def compress(source: str, cascade_path: str, work: str, *, use_ray: bool = True, address: Optional[str] = None,
             actors: Optional[int] = None, threads: int = 1, shard_size: int = 1000, batch_size: int = 32,
             truncate: bool = False, progress: bool = True, callback=None, pool: Optional[Pool] = None) -> dict:
    """Compress a corpus into work/latents/<shard>.safetensors; shards already there (from this cascade) are
    skipped. Returns the manifest."""
    shards = plan_shards(source, shard_size)
    pool = _open_pool(cascade_path, pool, use_ray, address, actors, threads)
    manifest = _manifest(work, source, shards, pool, shard_size, batch_size)
    _map_with_progress(pool, "compress", work, shards,
                       lambda shard: _latents_done(work, shard.name, manifest["cascade"], batch_size),
                       {"batch_size": batch_size, "truncate": truncate}, progress, callback)
    return manifest


def _latents_done(work: str, shard: str, cascade: str, batch_size: int) -> bool:
    path = latents_path(work, shard)
    if not os.path.exists(path):
        return False
    try:
        metadata = _core.safetensors_metadata(path)
    except _core.C3Error:
        return False
    return metadata.get("c3.cascade") == cascade and metadata.get("user.batch_size") == str(batch_size)


def evaluate(source: str, cascade_path: str, output: Optional[str] = None, *, work: Optional[str] = None,
             use_ray: bool = True, address: Optional[str] = None, actors: Optional[int] = None, threads: int = 1,
             shard_size: int = 1000, batch_size: int = 32, max_new_tokens: Optional[int] = None,
             progress: bool = True, callback=None, pool: Optional[Pool] = None) -> dict:
    """Fox metrics, decay curve and compression ratio of a cascade on a corpus, as `c3 eval` computes them;
    written to `output` (JSON) when given. Reconstructions run to the longest text's length + 8 tokens unless
    max_new_tokens is given. The work directory (default: output + '.work') keeps every shard's results, so an
    interrupted evaluation resumes."""
    if work is None:
        if output is None:
            raise _core.C3ValueError("evaluate needs an output file or a work directory")
        work = output + ".work"
    shards = plan_shards(source, shard_size)
    pool = _open_pool(cascade_path, pool, use_ray, address, actors, threads)
    manifest = _manifest(work, source, shards, pool, shard_size, batch_size)
    identity = manifest["cascade"]
    if max_new_tokens is None:
        _map_with_progress(pool, "count", work, shards,
                           lambda shard: (_read_json(counts_path(work, shard.name)) or {}).get("cascade") == identity,
                           {}, progress)
        max_new_tokens = max(max(_read_json(counts_path(work, shard.name))["tokens"]) for shard in shards) + 8

    def finished(shard):
        result = _read_json(results_path(work, shard.name))
        return (result is not None and result.get("format") == SHARD_FORMAT and result.get("cascade") == identity
                and result.get("batch_size") == batch_size and result.get("max_new_tokens") == max_new_tokens)
    _map_with_progress(pool, "evaluate", work, shards, finished,
                       {"batch_size": batch_size, "max_new_tokens": max_new_tokens}, progress, callback)
    metrics = merge_results([_read_json(results_path(work, shard.name)) for shard in shards],
                            pool.description["num_latents"])
    if output:
        _write_json(output, metrics)
    return metrics


# ---- the command line (c3 compress --ray, c3 eval --ray) -------------------------------------------------------
def add_arguments(parser) -> None:
    """The --ray options of a `c3` subcommand."""
    group = parser.add_argument_group("on a Ray cluster (pip install c3[ray]; see docs/DISTRIBUTED.md)")
    group.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run on Ray: a cluster's address (host:6379, ray://host:10001, auto), or none to start "
                            "one on this machine; --texts is then a JSONL corpus or a folder of .jsonl shards")
    group.add_argument("--actors", type=int, help="Ray actors (default: the cluster's CPUs / --threads-per-actor)")
    group.add_argument("--threads-per-actor", dest="threads_per_actor", type=int, default=1)
    group.add_argument("--shard-size", dest="shard_size", type=int, default=1000,
                       help="documents per shard of a JSONL file")
    group.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="documents per forward")
    group.add_argument("--work-dir", dest="work_dir", help="shards' outputs (c3 eval; default: OUTPUT.work)")
    group.add_argument("--no-progress", dest="progress", action="store_false")


def run_command(command: str, args) -> bool:
    """Runs `c3 compress` or `c3 eval` on Ray when --ray was given; False when it was not."""
    if getattr(args, "ray", None) is None:
        return False
    common = dict(address=args.ray or None, actors=args.actors, threads=args.threads_per_actor,
                  shard_size=args.shard_size, batch_size=args.batch_size, progress=args.progress)
    if command == "compress":
        manifest = compress(args.texts, args.cascade, args.output, truncate=getattr(args, "truncate", False),
                            **common)
        print(json.dumps({"output": args.output, "shards": len(manifest["shards"])}))
    else:
        metrics = evaluate(args.texts, args.cascade, args.output, work=args.work_dir, **common)
        print(json.dumps({k: metrics[k] for k in ("precision", "edit_distance", "bleu", "compression_ratio")}))
    return True
