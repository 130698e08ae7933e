"""The c3 command under generated command lines: for every subcommand, Hypothesis draws options with numbers (huge,
negative, floats, exponents, garbage), paths (missing, folders, /dev/null, files with bad contents) and JSON
configs, and each run (a subprocess) must exit 0, or exit 2 with exactly one line on stderr and no traceback.

Each command starts from a baseline of tiny sizes (one training step, a tiny model), so that a drawn command line
that passes validation finishes in seconds; each test sets one option to hostile values, with a few others set to
accepted ones, so that every option of every command meets bad input with the rest valid. --ray only ever names
loopback addresses that refuse at once. The draws are derandomized, so that a run is reproducible."""
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import c3
from c3.cascade import scratch_model_config

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
TEXTS = ["The quick brown fox.", "Errors should never pass silently.", "short"]
EXAMPLES = 3  # per command and option: 61 of them, about a second a run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Inputs good and bad: a tiny cascade and its latents, texts, a corpus, and files that are not what they say."""
    folder = tmp_path_factory.mktemp("cli_properties")
    cascade = c3.Cascade.new(scratch_model_config(SHAPE, 40, 4), scratch_model_config(SHAPE, 40, 4), 4, seed=0)
    cascade.save(str(folder / "casc"))
    c3.save_latents(str(folder / "latents.safetensors"), cascade.compress(TEXTS), cascade,
                    source_tokens=[len(row) for row in cascade.tokenize(TEXTS)])
    files = {"texts.txt": "\n".join(TEXTS) + "\n", "texts.json": json.dumps(TEXTS), "empty.txt": "",
             "bad.json": '{"not": "a list"}', "corpus.jsonl": "".join(json.dumps(t) + "\n" for t in TEXTS),
             "badcorpus.jsonl": '"fine"\n{not json\n', "long.txt": "x" * 500 + "\n",
             "config.json": json.dumps({"steps": 1, "hidden_size": 16}), "list.json": "[1, 2]",
             "truncated.json": '{"steps": ', "nan.json": '{"learning_rate": NaN}'}
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    (folder / "binary.bin").write_bytes(b"\xff\xfe\x00\x81garbage")
    (folder / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1") * 40)
    (folder / "fake.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    (folder / "folder").mkdir()
    (folder / "shards").mkdir()
    (folder / "shards" / "a.jsonl").write_text(json.dumps(TEXTS[0]) + "\n")
    return folder


# ---- values ---------------------------------------------------------------------------------------------------
# Hostile values: numbers outside each option's documented range (its --help) or not numbers at all, paths that are
# missing, folders, devices or files with bad contents, and JSON configs of every shape. A hostile number is never
# a valid one, since a valid large one (a million steps) would start real work.
NOT_NUMBERS = ["nan", "inf", "-inf", "1e400", "-1e400", "abc", "", " ", "0x10", "1,2", "--1", "1e", "\x7f"]
# Text without digits (a command line cannot hold NUL or a lone surrogate).
no_digits = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="\x00"),
                    max_size=6)


def outside(low, high, integer=True):
    """Values that an option of range [low, high] refuses: the edges just past it and far beyond, fractions (for
    integers), numbers anywhere below or above, and text that is no number."""
    if integer:
        edges = [str(low - 1), str(high + 1), f"{high + 1:.6e}", "-1", "1e23", "2.5"]
        below, above = st.integers(-2 ** 70, low - 1).map(str), st.integers(high + 1, 2 ** 70).map(str)
    else:
        edges = [repr(float(low)) if low == 0 else repr(low - 1e-9), repr(high * 1.5), "-1", "1e23"]
        below = st.floats(max_value=low, allow_nan=False).map(repr)
        above = st.floats(min_value=high, exclude_min=True, allow_nan=False).map(repr)
    words = no_digits.filter(lambda text: text.strip().lower() not in ("", "inf", "nan", "infinity"))
    return st.one_of(st.sampled_from(edges), st.sampled_from(NOT_NUMBERS), below, above, words)


INPUTS = ["missing.txt", "folder", os.devnull, "binary.bin", "empty.txt", "latin1.txt", "texts.txt", "texts.json",
          "bad.json", "corpus.jsonl", "badcorpus.jsonl", "long.txt", "casc", "latents.safetensors",
          "fake.safetensors", "shards", "config.json", "/", "missing/deeper/file"]
# Outputs: never "/" (the tests run as root on some machines, where the file system root is writable), nor one of
# the files above, which later runs read.
OUTPUTS = ["out.json", "folder", os.devnull, "missing/deeper/out.json", "", "fresh_dir", "/proc/version", "casc/x",
           "shards", "/proc"]
hostile_paths, hostile_outputs = st.sampled_from(INPUTS + OUTPUTS), st.sampled_from(OUTPUTS)
CONFIG_KEYS = ["steps", "latents", "ratio", "batch", "learning_rate", "hidden_size", "layers", "seed", "colour"]
# Config values: small valid ones are harmless (the command line's options win); the rest are out of range.
JSON_VALUES = st.one_of(st.sampled_from([1, 2, 1e23, 2.5, -5, 0, True, None, "3", [1], {"a": 1}, 2 ** 64, -1e-9]),
                        st.integers(-2 ** 70, 0), st.integers(2 ** 32, 2 ** 70), st.text(max_size=4))
configs = st.one_of(st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES, max_size=3),
                    st.sampled_from([[], "text", 5, None]))
hostile_configs = st.one_of(hostile_paths, configs.map(lambda value: ("json", json.dumps(value))),
                            st.sampled_from([("json", "{"), ("json", "[" * 5000), ("json", '{"steps": ' + "9" * 5000
                                                                                   + "}")]))


# ---- command lines ----------------------------------------------------------------------------------------------
# Each option of a command: (values the command accepts, all small so that a run is short, or None where the option
# never goes with the baseline; hostile values). A command line is the command's baseline, up to three options
# set to accepted values, then (mostly) one hostile argument, last so that it wins: one bad input at a time, with
# the rest valid, reaches the checks behind argparse's, the files' and the library's.
def integer(low, high, *valid):
    return st.sampled_from(valid or ("1", "2", "1e0", "2.0")), outside(low, high)


def real(low, high, *valid):
    return st.sampled_from(valid), outside(low, high, integer=False)


def integers(low, high, *valid):
    """A comma-separated list: hostile with one element out of range, or broken commas, or repeats."""
    hostile = st.one_of(st.sampled_from(["2,2", "2,,4", ",", "2,", ""]),
                        st.tuples(st.lists(st.sampled_from(valid), max_size=2), outside(low, high)).map(
                            lambda parts: ",".join(parts[0] + [parts[1]])))
    return st.sampled_from(valid), hostile


def path(*valid):
    return (st.sampled_from(valid) if valid else None), hostile_paths


def output(*valid):
    return (st.sampled_from(valid) if valid else None), hostile_outputs


def choice(valid, hostile):
    return (st.sampled_from(valid) if valid else None), st.sampled_from(hostile)


FLAG = (st.just(None), st.just(None))
# The documented ranges (c3 <command> --help).
STEPS, SEED, BATCH, TOKENS = (1, 10 ** 9), (0, 2 ** 32 - 1), (1, 65536), (1, 2 ** 24)
RAY = {"--ray": choice([], ["127.0.0.1:1", "ray://127.0.0.1:1", "127.0.0.1:99999", "[::1]:1", "not an address"]),
       "--actors": (None, outside(1, 4096)), "--threads-per-actor": (None, outside(1, 1024)),
       "--shard-size": (None, outside(1, 10 ** 9))}
COMMANDS = {
    "demo": (["--output", "demo_out", "--size", "tiny", "--steps", "1", "--ratios", "2"],
             {"--output": output("demo_out", "fresh_dir"), "--steps": integer(*STEPS),
              "--minutes": (None, outside(0, 10 ** 6, integer=False)),
              "--seed": integer(*SEED, "0", "4294967295"), "--ratios": integers(1, 1024, "2", "4"),
              "--size": choice(["tiny"], ["small", "", "TINY"])}),
    "train": (["--output", "train_out", "--steps", "1", "--latents", "2", "--ratio", "2", "--batch", "2",
               "--hidden-size", "16", "--layers", "1"],
              {"--output": output("train_out"), "--text": path("texts.txt"),
               "--config": (st.just("config.json"), hostile_configs), "--encoder": path(), "--decoder": path(),
               "--latents": integer(1, 4096), "--ratio": integer(1, 1024), "--steps": integer(*STEPS),
               "--batch": integer(*BATCH), "--learning-rate": real(0, 1, "0.001", "1e-2"),
               "--hidden-size": integer(1, 8192, "16", "32"), "--layers": integer(1, 256),
               "--seed": integer(*SEED, "0", "4294967295"),
               "--method": choice(["c3", "mean_pool", "truncate"], ["nope", ""]),
               "--freeze": choice(["encoder", "queries"], ["all"])}),
    "compress": (["--cascade", "casc", "--texts", "texts.txt", "--output", "lat_out.safetensors"],
                 dict({"--cascade": path("casc"), "--texts": path("texts.txt", "texts.json"),
                       "--output": output("lat_out.safetensors"), "--batch-size": integer(*BATCH),
                       "--truncate": FLAG}, **RAY)),
    "reconstruct": (["--cascade", "casc", "--latents", "latents.safetensors"],
                    {"--cascade": path("casc"), "--latents": path("latents.safetensors"),
                     "--output": output("out.json", os.devnull), "--max-new-tokens": integer(*TOKENS),
                     "--batch-size": integer(*BATCH)}),
    "eval": (["--cascade", "casc", "--texts", "texts.txt", "--max-new-tokens", "4"],
             dict({"--cascade": path("casc"), "--texts": path("texts.txt", "texts.json"),
                   "--output": output("out.json"), "--work-dir": output(), "--max-new-tokens": integer(*TOKENS),
                   "--batch-size": integer(*BATCH), "--truncate": FLAG}, **RAY)),
    "sweep": (["--output", "sweep_out", "--size", "tiny", "--methods", "c3", "--ratios", "2", "--seeds", "0",
               "--steps", "1", "--eval-passages", "1"],
              {"--output": output("sweep_out", "fresh_dir"), "--ratios": integers(1, 1024, "2", "4"),
               "--seeds": integers(*SEED, "0", "1", "4294967295"), "--steps": integer(*STEPS),
               "--minutes": real(0, 10 ** 6, "0.01"), "--eval-passages": integer(1, 10 ** 7),
               "--continuation-weight": real(0, 1, "0", "0.5"), "--curriculum": real(0, 1, "0", "0.5"),
               "--jobs": integer(1, 1024, "1"), "--batch-tokens": integer(*TOKENS, "32", "64"),
               "--shares": integer(0, 1024, "0", "1", "2"),
               "--methods": choice(["c3", "mean_pool"], ["c3,c3", "gist", ""]),
               "--size": choice(["tiny"], ["huge", ""]),
               "--balance": choice(["bytes", "passages", "1"], ["1:2", "nan", "-1", "0", "x:y", ""])}),
    "documents": (["--output", "doc_out", "--size", "tiny", "--methods", "c3", "--steps", "1"],
                  {"--output": output("doc_out", "fresh_dir"), "--seeds": integers(*SEED, "0", "1"),
                   "--steps": integer(*STEPS), "--methods": choice(["c3", "mean_pool"], ["c3,c3", "gist", ""]),
                   "--size": choice(["tiny"], ["huge", ""]), "--split": choice(["dev", "test"], ["train", ""])}),
    # Never the valid name smollm2: it would convert real weights (about 30 s).
    "models": ([], {"name": choice([], ["smollm", "", "SmolLM2", "../smollm2"])}),
}
GARBAGE = st.sampled_from(["--bogus", "-x", "extra", "--steps=", "--output"])


@st.composite
def command_lines(draw, command, hostile_option):
    """The baseline, up to two options set to accepted values, then `hostile_option` set to a hostile value (in
    one example of six, left out: then the run may do real, tiny work), and now and then an unknown argument."""
    baseline, options = COMMANDS[command]
    arguments = [command, *baseline, "--quiet"]

    def add(option, value):
        if option == "name":  # the positional argument of c3 models
            arguments.append(value)
        else:
            arguments.extend([option] if value is None else [option, value])

    accepted = sorted(option for option, (valid, _) in options.items() if valid is not None)
    for option in draw(st.lists(st.sampled_from(accepted), max_size=2, unique=True)) if accepted else []:
        add(option, draw(options[option][0]))
    if draw(st.integers(0, 5)) < 5:
        add(hostile_option, draw(options[hostile_option][1]))
    if draw(st.integers(0, 9)) == 9:
        arguments.append(draw(GARBAGE))
    return arguments


def run(arguments, folder):
    """The command in a subprocess; a JSON config drawn as ("json", text) is written to a file first."""
    argv = []
    for argument in arguments:
        if isinstance(argument, tuple):
            (folder / "drawn_config.json").write_text(argument[1])
            argument = "drawn_config.json"
        argv.append(argument)
    environment = {key: value for key, value in os.environ.items() if key not in ("C3_DEBUG", "RAY_ADDRESS")}
    return argv, subprocess.run([sys.executable, "-m", "c3.cli", *argv], cwd=folder, capture_output=True, text=True,
                                env=environment, timeout=120)


@pytest.mark.parametrize("command, option", [(command, option) for command in sorted(COMMANDS)
                                             for option in sorted(COMMANDS[command][1])])
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_command_line_succeeds_or_fails_in_one_line(workspace, command, option, data):
    arguments = data.draw(command_lines(command, option), label="command line")
    argv, result = run(arguments, workspace)
    if result.returncode == 0:
        return
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, \
        f"c3 {' '.join(argv)}\nexit status {result.returncode}, stderr:\n{result.stderr}"
    assert lines[0].startswith(f"c3 {command}: error: ") or lines[0].startswith("c3: error: "), lines[0]
