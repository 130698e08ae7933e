"""A corpus on a Ray cluster: compress it into latents shards, then reconstruct and score it, shard by shard.

    c3 compress --cascade C --texts corpus.jsonl --output work/ --ray [ADDRESS]
    c3 eval     --cascade C --texts corpus.jsonl --output metrics.json --ray [ADDRESS]

Input is one texts file, read as every command reads it (c3.text_files: a .jsonl file of {"text": ...} objects,
a .json list, or one text per line), cut into shards of ``shard_size`` documents, or a folder of .jsonl files, one
shard each (in name order). Each Ray actor loads the cascade once and works through the shards it is given, in
batches of ``batch_size`` documents:

    work/manifest.json            what the work directory holds (cascade identity, shards and the SHA-256 of each
                                  shard's documents, settings): a resumed run redoes the shards whose text changed
    work/latents/<shard>.safetensors   c3 compress: latents [B, N, d] with metadata (save_latents)
    work/results/<shard>.json     c3 eval: evaluation.evaluate_part of the shard (hypotheses, per-text scores,
                                  alignment counts) and the settings it was made with

Every file appears whole or not at all, so a stopped run is restarted by running it again: finished shards are
skipped. A shard whose actor dies is given to another actor (Ray restarts the dead one). The reduce step is
``evaluation.merge_parts``, the one that ``evaluation.evaluate`` (plain `c3 eval`) ends with, so the metrics are
the single-process ones, key for key and value for value, when shards are cut at multiples of the batch size
(batches, and so latents and default reconstruction lengths, are then the same). ``use_ray=False`` runs the same
shards in this process.

The cascade directory and the work directory must be paths that every node sees (a shared filesystem); the
corpus is read by the driver and shipped to the actors.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import sys
import time
from typing import Callable, List, Optional

import numpy as np

from .. import _core, text_files

SHARD_FORMAT = "c3.distributed/1"


# ---- the corpus as shards ------------------------------------------------------------------------------------------
class Shard:
    """A named run of documents; its texts are read when needed (a corpus need not fit in memory), through the
    one texts reader (c3.text_files). sha256: the hex SHA-256 of its documents' bytes, which the work directory's
    manifest records, so that a resumed run redoes a shard whose input changed."""

    def __init__(self, name: str, path: str, offset: int = 0, count: Optional[int] = None, first_line: int = 1,
                 sha256: str = "", documents: Optional[List[str]] = None):
        self.name, self.path, self.offset, self.count = name, path, offset, count
        self.first_line, self.sha256, self.documents = first_line, sha256, documents

    def texts(self) -> List[str]:
        if self.documents is not None:
            return list(self.documents)
        return [text for _, text in text_files.line_documents(self.path, self.offset, self.first_line, self.count)]


def _line_shards(path: str, stem: str, shard_size: Optional[int]) -> List[Shard]:
    """Shards of `shard_size` documents (None: all in one) of a line-format file, each with its first line and the
    SHA-256 of its document lines."""
    shards, offset, documents, start, first_line = [], 0, 0, 0, 1
    digest = hashlib.sha256()
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise _core.C3IOError(f"cannot read {path}: {error.strerror or error}") from None
    with handle:
        for line_number, raw in enumerate(handle, start=1):
            if raw.strip():
                if documents == shard_size:
                    name = f"{stem}-{len(shards):05d}"
                    shards.append(Shard(name, path, start, documents, first_line, digest.hexdigest()))
                    start, documents, first_line, digest = offset, 0, line_number, hashlib.sha256()
                documents += 1
                digest.update(raw)
            offset += len(raw)
    if documents:
        name = stem if shard_size is None else f"{stem}-{len(shards):05d}"
        shards.append(Shard(name, path, start, documents, first_line, digest.hexdigest()))
    return shards


def plan_shards(source: str, shard_size: int = 1000) -> List[Shard]:
    """Shards of a texts file (``shard_size`` documents each; .jsonl, .json or plain lines, as c3.text_files reads
    them) or of a folder of .jsonl files (one shard each)."""
    if shard_size < 1:
        raise _core.C3ValueError(f"shard_size must be at least 1, got {shard_size}")
    if os.path.isdir(source):
        names = sorted(name for name in os.listdir(source) if name.endswith(".jsonl"))
        if not names:
            raise _core.C3IOError(f"{source}: no .jsonl shards in this folder")
        shards = []
        for name in names:
            found = _line_shards(os.path.join(source, name), name[:-len(".jsonl")], None)
            shards += found or [Shard(name[:-len(".jsonl")], os.path.join(source, name), 0, 0, 1,
                                      hashlib.sha256().hexdigest())]
        return shards
    if not os.path.exists(source):
        raise _core.C3IOError(f"{source}: no such corpus file or folder")
    stem = os.path.splitext(os.path.basename(source))[0]
    if source.endswith(".json"):
        texts = text_files.read_texts_file(source)
        shards = []
        for start in range(0, len(texts), shard_size):
            part = texts[start:start + shard_size]
            digest = hashlib.sha256(json.dumps(part, ensure_ascii=False).encode("utf-8")).hexdigest()
            shards.append(Shard(f"{stem}-{len(shards):05d}", source, sha256=digest, documents=part))
        return shards
    shards = _line_shards(source, stem, shard_size)
    if not shards:
        raise _core.C3ValueError(f"{source}: the corpus holds no documents")
    return shards


# ---- the work on one shard (the same in an actor and in this process) ----------------------------------------------
def _write_json(path: str, value: dict) -> None:
    """Written beside the target, then renamed: a killed worker leaves no half file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _core.write_file_atomically(path, json.dumps(value))


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def latents_path(work: str, shard: str) -> str:
    return os.path.join(work, "latents", shard + ".safetensors")


def results_path(work: str, shard: str) -> str:
    return os.path.join(work, "results", shard + ".json")


def compress_shard(cascade, work: str, shard: str, texts: List[str], batch_size: int, truncate: bool) -> dict:
    """Latents of a shard, batch by batch, saved with their metadata, as `c3 compress` saves a file's."""
    from ..cascade import save_latents
    from .scoring import batch_slices, source_rows

    rows, _ = source_rows(cascade, texts, truncate, "--truncate")
    latents = np.concatenate([cascade.compress(rows[part]) for part in batch_slices(len(rows), batch_size)])
    os.makedirs(os.path.join(work, "latents"), exist_ok=True)
    save_latents(latents_path(work, shard), latents, cascade, source_tokens=[len(row) for row in rows],
                 metadata={"shard": shard, "batch_size": batch_size, "truncate": truncate})
    return {"shard": shard, "documents": len(texts)}


def evaluate_shard(cascade, work: str, shard: str, texts: List[str], options: dict) -> dict:
    """evaluation.evaluate_part of a shard, saved with the settings it was made with."""
    from .scoring import evaluate_part

    part = evaluate_part(cascade, texts, truncate=options["truncate"], max_new_tokens=options["max_new_tokens"],
                         batch_size=options["batch_size"], examples=options["examples"],
                         truncate_option="--truncate")
    _write_json(results_path(work, shard), dict(_result_settings(cascade.identity(), options), shard=shard,
                                                part=part))
    return {"shard": shard, "documents": len(texts)}


def _result_settings(cascade: str, options: dict) -> dict:
    return dict(format=SHARD_FORMAT, cascade=cascade, **{key: options[key] for key in sorted(options)})


# ---- workers -------------------------------------------------------------------------------------------------------
class ShardWorker:
    """Holds one loaded cascade; Ray runs it as an actor (num_cpus = threads), use_ray=False in this process."""

    def __init__(self, cascade_path: str, threads: int = 1):
        from .. import set_num_threads

        set_num_threads(int(threads))
        self.cascade_path, self._cascade = cascade_path, None

    @property
    def cascade(self):
        """The cascade, loaded on first use: an actor answers pid() as soon as it runs, which is how Pool tells an
        actor that Ray cannot place from one that is loading."""
        if self._cascade is None:
            from ..cascade import Cascade

            self._cascade = Cascade.load(self.cascade_path)
        return self._cascade

    def pid(self) -> int:
        return os.getpid()

    def describe(self, max_new_tokens: Optional[int] = None) -> dict:
        """The cascade's identity and latents; checks max_new_tokens against it (before any work)."""
        if max_new_tokens is not None:
            self.cascade.check_max_new_tokens(max_new_tokens)
        return {"cascade": self.cascade.identity(), "num_latents": self.cascade.num_latents}

    def run(self, task: str, work: str, shard: str, texts: List[str], options: dict) -> dict:
        if task == "compress":
            return compress_shard(self.cascade, work, shard, texts, options["batch_size"], options["truncate"])
        if task == "evaluate":
            return evaluate_shard(self.cascade, work, shard, texts, options)
        raise _core.C3ValueError(f"unknown task {task!r}")


def _get(reference):
    """ray.get, raising a task's own error (a c3 error, OSError or ValueError: a one-line message) rather than
    Ray's wrapper of it, which carries the actor's traceback in its message."""
    import ray

    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, (_core.C3Error, OSError, ValueError)):
            raise error.cause from None
        raise


# How long c3 waits on Ray before it stops and says why: for a cluster's address to answer, and for actors to start.
CONNECT_SECONDS = 10.0
START_SECONDS = 60.0


def _note(message: str) -> None:
    print(f"c3: note: {message}", file=sys.stderr, flush=True)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _check_reachable(address: str) -> None:
    """A C3Error unless something accepts connections at the host:port of `address` within CONNECT_SECONDS (Ray
    itself would retry an unreachable address for minutes)."""
    import socket

    where = address[len("ray://"):] if address.startswith("ray://") else address
    host, colon, port = where.rpartition(":")
    if not colon or not port.isdigit():
        return  # no port: Ray's own defaults apply
    host = host.strip("[]")  # [IPv6]:port
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS):
            pass
    except socket.timeout:
        raise _core.C3Error(f"Ray cluster at {address}: no answer within {CONNECT_SECONDS:g} s") from None
    except (OSError, OverflowError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else _first_line(error)
        raise _core.C3Error(f"Ray cluster at {address}: cannot connect ({reason})") from None


@contextlib.contextmanager
def _native_stderr_silenced(silence: bool):
    """Ray's C++ client writes a line to stderr (file descriptor 2) for each failed attempt to reach a cluster;
    the failure is reported as one line instead."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_ray(address: Optional[str] = None) -> None:
    """ray.init, quietly (no INFO lines, no dashboard, workers' output not forwarded): a new local cluster, or the
    one at `address` ("auto": the one this machine runs). An unreachable address, or a Ray that does not start, is
    a C3Error in one line, within CONNECT_SECONDS plus Ray's one connection attempt (about 40 s)."""
    import logging

    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray itself would use RAY_ADDRESS
    if address and address not in ("auto", "local"):
        _check_reachable(address)
    # Ray tries a cluster's control store 20 times over (minutes) before it gives up; once is enough here.
    variable = "RAY_gcs_server_port_wait_time_s"
    previous = os.environ.get(variable)
    if address and previous is None:
        os.environ[variable] = "1"
    try:
        with _native_stderr_silenced(bool(address)):
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False)
    except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        where = f"connect to the Ray cluster at {address}" if address else "start a local Ray cluster"
        raise _core.C3Error(f"could not {where}: {_first_line(error)}") from None
    finally:
        if address and previous is None:
            os.environ.pop(variable, None)


class Pool:
    """Workers over which shards are mapped: Ray actors (each loads the cascade once), or one in this process.

    A shard whose actor dies is handed to the next free actor; Ray restarts the dead actor (its cascade is loaded
    again) up to ``max_restarts`` times. The actors are as many as asked, or as fit the cluster's CPUs at
    ``threads`` each (note(message) says so; default: a line on stderr); more threads per actor than the cluster
    has CPUs, or actors that Ray cannot place within START_SECONDS, are a C3Error."""

    def __init__(self, cascade_path: str, use_ray: bool = True, address: Optional[str] = None,
                 actors: Optional[int] = None, threads: int = 1, max_restarts: int = 4,
                 note: Optional[Callable[[str], None]] = None):
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
            start_ray(address)
        # Each actor reserves `threads` CPUs for its life: more than the cluster has would wait for ever.
        total = int(ray.cluster_resources().get("CPU", 0))
        if self.threads > total:
            raise _core.C3ValueError(f"{self.threads} thread{'s' if self.threads > 1 else ''} per actor: the Ray "
                                     f"cluster has {total} CPUs, and each actor reserves one per thread")
        fit = total // self.threads
        if actors is None:
            actors = max(1, min(fit, int(ray.available_resources().get("CPU", 0) // self.threads)))
        elif actors > fit:
            (note or _note)(f"the Ray cluster has {total} CPUs: running {fit} actors of {self.threads} "
                            f"thread{'s' if self.threads > 1 else ''} each, not {actors}")
            actors = fit
        remote = ray.remote(ShardWorker).options(num_cpus=self.threads, max_restarts=max_restarts,
                                                 max_task_retries=0)
        self.workers = [remote.remote(cascade_path, self.threads) for _ in range(int(actors))]
        self._wait_for_actors(total)
        self.description = self.describe()

    def _wait_for_actors(self, total: int) -> None:
        """Returns once every actor runs (before any loads its cascade), or raises after START_SECONDS: the CPUs
        they reserve are held by others (other jobs on the cluster, or actors Ray has not yet released)."""
        import ray

        waiting = [worker.pid.remote() for worker in self.workers]
        _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=START_SECONDS)
        if waiting:
            free = ray.available_resources().get("CPU", 0)
            cpus = f"{self.threads} CPU{'s' if self.threads > 1 else ''}"
            raise _core.C3Error(f"{len(waiting)} of {len(self.workers)} Ray actors did not start within "
                                f"{START_SECONDS:g} s: each reserves {cpus}, and {free:g} of the cluster's {total} "
                                f"are free")

    def describe(self, max_new_tokens: Optional[int] = None) -> dict:
        if not self.use_ray:
            return self.workers[0].describe(max_new_tokens)
        import ray

        # Any live actor can answer: one that died (or is being restarted) passes the question on.
        for attempt in range(2 * len(self.workers)):
            try:
                return _get(self.workers[attempt % len(self.workers)].describe.remote(max_new_tokens))
            except ray.exceptions.RayActorError:
                if attempt == 2 * len(self.workers) - 1:
                    raise

    def pids(self) -> List[int]:
        if not self.use_ray:
            return [os.getpid()]
        import ray

        # An actor that Ray is restarting answers "unavailable" for a while (longer on a loaded machine): ask again.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                return ray.get([worker.pid.remote() for worker in self.workers])
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def map(self, task: str, work: str, shards: List[Shard], options: dict,
            callback: Optional[Callable[[dict], None]] = None, retries: int = 3) -> None:
        """Runs `task` on every shard; calls callback(report) as each finishes (in completion order)."""
        if not self.use_ray:
            for shard in shards:
                report = self.workers[0].run(task, work, shard.name, shard.texts(), options)
                callback and callback(report)
            return
        import ray

        # Each pending shard carries its attempts and the worker it failed on (None: none), so that a retry goes to
        # another actor while Ray restarts the dead one.
        pending = collections.deque((shard, 0, None) for shard in shards)
        in_flight = {}  # object ref -> (shard, attempts, worker index)
        load = [0] * len(self.workers)
        per_worker = 2  # one running, one queued: no actor waits on the driver

        def free_worker(avoid):
            candidates = [i for i in range(len(load)) if load[i] < per_worker and (i != avoid or len(load) == 1)]
            return min(candidates, key=lambda i: load[i]) if candidates else None

        while pending or in_flight:
            while pending and free_worker(pending[0][2]) is not None:
                index = free_worker(pending[0][2])
                shard, attempts, _ = pending.popleft()
                reference = self.workers[index].run.remote(task, work, shard.name, shard.texts(), options)
                in_flight[reference] = (shard, attempts, index)
                load[index] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            shard, attempts, index = in_flight.pop(done[0])
            load[index] -= 1
            try:
                report = _get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                    ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as error:
                # The actor died or is restarting; the shard may or may not have run there, and redoing it is safe
                # (every shard's files are written whole, under unique temporary names).
                if attempts >= retries:
                    raise _core.C3Error(f"shard {shard.name}: its Ray actor failed {attempts + 1} times "
                                        f"({_first_line(error)})") from error
                self.retried.append(shard.name)
                pending.appendleft((shard, attempts + 1, index))  # another actor takes it
                continue
            callback and callback(report)


# ---- the two jobs --------------------------------------------------------------------------------------------------
def _manifest(work: str, source: str, shards: List[Shard], pool: Pool, shard_size: int, batch_size: int) -> dict:
    """Checks that a work directory being resumed was made from the same corpus, cascade and settings, and
    redoes the shards whose input changed since.

    The manifest records the cascade's identity (which covers every weight) and the SHA-256 of each shard's
    documents. Another cascade, other settings or another cut into shards is refused; a shard whose content
    changed (or whose hash an older manifest lacks) loses its latents and results before the new manifest is
    written, so that it is done again and a stopped run never reports metrics of the old text."""
    manifest = {"format": SHARD_FORMAT, "source": os.path.abspath(source), "cascade": pool.description["cascade"],
                "shard_size": shard_size, "batch_size": batch_size, "shards": [shard.name for shard in shards],
                "shard_sha256": {shard.name: shard.sha256 for shard in shards}}
    path = os.path.join(work, "manifest.json")
    previous = _read_json(path) if os.path.exists(path) else None
    if os.path.exists(path) and not isinstance(previous, dict):
        raise _core.FormatError(f"{path}: not a work directory's manifest (not a JSON object); use a fresh "
                                f"work directory")
    if previous is not None:
        changed = sorted(key for key in manifest if key != "shard_sha256" and previous.get(key) != manifest[key])
        if changed:
            raise _core.C3ValueError(f"{work}: this work directory was made with another {', '.join(changed)}; "
                                     f"use a fresh one")
        hashes = previous.get("shard_sha256")
        hashes = hashes if isinstance(hashes, dict) else {}
        for shard in shards:
            if hashes.get(shard.name) != shard.sha256:
                for stale in (latents_path(work, shard.name), results_path(work, shard.name)):
                    if os.path.exists(stale):
                        os.remove(stale)
    _write_json(path, manifest)
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
                       lambda shard: _latents_done(work, shard.name, manifest["cascade"], batch_size, truncate),
                       {"batch_size": batch_size, "truncate": truncate}, progress, callback)
    return manifest


def _latents_done(work: str, shard: str, cascade: str, batch_size: int, truncate: bool) -> bool:
    path = latents_path(work, shard)
    if not os.path.exists(path):
        return False
    try:
        metadata = _core.safetensors_metadata(path)
    except _core.C3Error:
        return False
    return (metadata.get("c3.cascade") == cascade and metadata.get("user.batch_size") == str(batch_size)
            and metadata.get("user.truncate") == str(truncate))


def evaluate(source: str, cascade_path: str, work: str, *, use_ray: bool = True, address: Optional[str] = None,
             actors: Optional[int] = None, threads: int = 1, shard_size: int = 1000, batch_size: int = 32,
             truncate: bool = False, max_new_tokens: Optional[int] = None, examples: int = 3, progress: bool = True,
             callback=None, pool: Optional[Pool] = None) -> dict:
    """evaluation.evaluate of a corpus, shard by shard: the same metrics (as `c3 eval`), from the shards'
    evaluation.evaluate_part results merged by evaluation.merge_parts. The work directory keeps every shard's
    results, so an interrupted evaluation resumes."""
    from .scoring import merge_parts

    shards = plan_shards(source, shard_size)
    pool = _open_pool(cascade_path, pool, use_ray, address, actors, threads)
    pool.describe(max_new_tokens)
    manifest = _manifest(work, source, shards, pool, shard_size, batch_size)
    options = {"batch_size": batch_size, "truncate": truncate, "max_new_tokens": max_new_tokens, "examples": examples}
    settings = _result_settings(manifest["cascade"], options)

    def finished(shard):
        result = _read_json(results_path(work, shard.name))
        return result is not None and {key: result.get(key) for key in settings} == settings
    _map_with_progress(pool, "evaluate", work, shards, finished, options, progress, callback)
    parts = [_read_json(results_path(work, shard.name))["part"] for shard in shards]
    return merge_parts(parts, pool.description["num_latents"], examples)


# ---- the command line (c3 compress --ray, c3 eval --ray) -------------------------------------------------------
RAY_DEFAULTS = dict(actors=None, threads_per_actor=1, shard_size=1000, work_dir=None)
MAX_ACTORS, MAX_THREADS = 4096, 1024


def add_arguments(parser, command: str, number: Optional[Callable] = None) -> None:
    """The --ray options of `c3 compress` and `c3 eval`; they use the command's own --batch-size and --quiet.
    number(kind, low, high) gives the checked converter of an option's numbers (the CLI's one converter)."""
    number = number or (lambda kind, low, high: kind)
    positive_int = lambda high: number(int, 1, high)  # noqa: E731
    group = parser.add_argument_group("on a Ray cluster (pip install c3[ray]; see docs/DISTRIBUTED.md)")
    group.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run on Ray: a cluster's address (host:6379, ray://host:10001, auto), or none to start "
                            "one on this machine; --texts is then a JSONL file (a JSON string or {\"text\": ...} "
                            "per line) or a folder of .jsonl shards, and c3 compress's --output a work directory. An "
                            "address that does not answer, or actors that do not start within a minute, are an error")
    group.add_argument("--actors", type=positive_int(MAX_ACTORS), metavar="COUNT",
                       help="Ray actors (default: the cluster's CPUs / --threads-per-actor; more than the CPUs hold "
                            "are scaled down, with a note)")
    group.add_argument("--threads-per-actor", type=positive_int(MAX_THREADS),
                       default=RAY_DEFAULTS["threads_per_actor"], metavar="THREADS",
                       help="threads of each actor's cascade; each actor reserves as many of the cluster's CPUs")
    group.add_argument("--shard-size", type=positive_int(10 ** 9), default=RAY_DEFAULTS["shard_size"],
                       metavar="TEXTS", help="texts per shard of a JSONL file; a multiple of --batch-size keeps "
                                             "the batches, and so the results, of a run without --ray")
    if command == "eval":
        group.add_argument("--work-dir", metavar="DIR",
                           help="folder for the shards' results, kept so that a stopped run resumes (default: the "
                                "--output file's name + .work)")


# Under --ray, --texts is a JSONL corpus (file or folder) and compress's --output a work directory.
RAY_PATHS = {"compress": dict(texts="corpus", output="output_directory"),
             "eval": dict(texts="corpus", work_dir="output_directory")}


def check_arguments(args) -> None:
    """The Ray group's options do nothing without --ray: given alone, they are an error rather than ignored."""
    if getattr(args, "ray", "") is not None:
        return
    for key, default in RAY_DEFAULTS.items():
        if getattr(args, key, default) != default:
            raise _core.C3ValueError(f"--{key.replace('_', '-')} needs --ray")
