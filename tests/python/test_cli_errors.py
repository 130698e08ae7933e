"""Errors of the c3 command and of the Python API that used to hang, print a traceback or a usage block, or raise
types that are not c3's: each is now one stderr line `c3 <command>: error: <message>` with exit status 2 (the
command, run in a subprocess), or a c3 error type (the API). Ray's cases finish within a bounded wait."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import c3
from c3 import _loader, cli
from c3.eval import distributed
from c3.cascade import scratch_model_config

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
TEXTS = ["hello there", "general kenobi", "short", "a b c d"]


def run_c3(*arguments, cwd, env=None, timeout=120):
    """`python3 -m c3.cli ...` in a subprocess, with this environment (C3_DEBUG removed) plus `env`."""
    environment = {key: value for key, value in os.environ.items() if key != "C3_DEBUG"}
    return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=cwd, capture_output=True, text=True,
                          env=dict(environment, **(env or {})), timeout=timeout)


def error_line(result, prefix):
    """The one stderr line of a failed command, which must start with `prefix` ("c3 train: error: ")."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with a tiny cascade (casc), its latents, a texts file and a JSONL corpus."""
    folder = tmp_path_factory.mktemp("cli_errors")
    cascade = c3.Cascade.new(scratch_model_config(SHAPE, 40, 4), scratch_model_config(SHAPE, 40, 4), 4, seed=0)
    cascade.save(str(folder / "casc"))
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with open(folder / "corpus.jsonl", "w") as handle:
        for text in TEXTS:
            handle.write(json.dumps(text) + "\n")
    return folder


# ---- numbers: one checked converter, its range in the message ----------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    (["demo", "--steps", "1e23"], "c3 demo: error: --steps: must be an integer at least 1 and at most 1000000000, "
                                  "got '1e23'"),
    (["demo", "--seed", "99999999999999999999"], "c3 demo: error: --seed: must be an integer at least 0 and at most "
                                                 "4294967295, got '99999999999999999999'"),
    (["sweep", "--seeds", "-1"], "c3 sweep: error: --seeds: must be numbers separated by commas, each an integer at "
                                 "least 0 and at most 4294967295, got '-1'"),
    (["train", "--output", "never", "--batch", "1e14"], "c3 train: error: --batch: must be an integer at least 1 and "
                                                        "at most 65536, got '1e14'"),
    (["sweep", "--batch-tokens", "1e11"], "c3 sweep: error: --batch-tokens: must be an integer at least 1 and at most "
                                          "16777216, got '1e11'"),
    (["train", "--output", "never", "--learning-rate", "nan"], "c3 train: error: --learning-rate: must be a number "
                                                               "greater than 0 and at most 1, got 'nan'"),
    (["demo", "--minutes", "1e400"], "c3 demo: error: --minutes: must be a number greater than 0 and at most "
                                     "1000000, got '1e400'"),
    (["eval", "--cascade", "casc", "--texts", "corpus.jsonl", "--ray", "--threads-per-actor", "1e6"],
     "c3 eval: error: --threads-per-actor: must be an integer at least 1 and at most 1024, got '1e6'"),
])
def test_numbers_out_of_range_name_the_range(workspace, arguments, message):
    assert error_line(run_c3(*arguments, cwd=workspace), "c3 ") == message
    assert not (workspace / "never").exists()


@pytest.mark.parametrize("config, message", [
    ({"steps": -5}, "steps must be an integer at least 1 and at most 1000000000, got '-5'"),
    ({"latents": 0}, "latents must be an integer at least 1 and at most 4096, got '0'"),  # was range()'s error
    ({"batch": 1e14}, "batch must be an integer at least 1 and at most 65536, got '100000000000000.0'"),
    ({"seed": 2 ** 64}, "seed must be an integer at least 0 and at most 4294967295"),
    ({"learning_rate": True}, "learning_rate must be a number greater than 0 and at most 1, got 'true'"),
])
def test_config_values_pass_the_same_converters(workspace, tmp_path, config, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    line = error_line(run_c3("train", "--output", str(tmp_path / "never"), "--config", str(path), cwd=workspace),
                      "c3 train: error: ")
    assert line.startswith(f"c3 train: error: --config {path}: {message}"), line
    assert not (tmp_path / "never").exists()


def test_config_that_json_cannot_hold_is_a_format_error(workspace, tmp_path):
    for name, content in (("deep.json", "[" * 100000), ("digits.json", '{"steps": ' + "9" * 5000 + "}")):
        (tmp_path / name).write_text(content)
        line = error_line(run_c3("train", "--output", "never", "--config", str(tmp_path / name), cwd=workspace),
                          "c3 train: error: ")
        assert f"--config {tmp_path / name}: not valid JSON" in line


def test_numbers_in_range_are_accepted_in_every_spelling():
    assert cli.STEPS("1e3") == 1000 and cli.STEPS(" 7 ") == 7 and cli.STEPS(5.0) == 5
    assert cli.SEED("4294967295") == 2 ** 32 - 1 and cli.SEED(0) == 0
    assert cli.FRACTION("0") == 0.0 and cli.FRACTION("1") == 1.0 and cli.MINUTES("0.02") == 0.02
    for converter, value in ((cli.STEPS, "2.5"), (cli.STEPS, True), (cli.SEED, "4294967296"),
                             (cli.FRACTION, "inf"), (cli.LEARNING_RATE, "0"), (cli.BATCH, "0x10"), (cli.STEPS, 1e300),
                             (cli.MINUTES, 10 ** 400)):
        with pytest.raises(cli.argparse.ArgumentTypeError, match="must be"):
            converter(value)
    # Every number option's help states its range.
    help_text = " ".join(run_c3("train", "--help", cwd=".").stdout.split())
    assert "1 to 1000000000" in help_text and "0 to 4294967295" in help_text and "1 to 65536" in help_text


# ---- argparse's errors: one line, no usage block ----------------------------------------------------------------
@pytest.mark.parametrize("arguments, prefix, words", [
    (["bogus"], "c3: error: ", "invalid choice: 'bogus'"),
    ([], "c3: error: ", "required: command"),
    (["train"], "c3 train: error: ", "required: --output"),
    (["train", "--output", "x", "--steps"], "c3 train: error: ", "--steps: expected one argument"),
    (["train", "--output", "x", "--colour", "blue"], "c3 train: error: ", "unrecognized arguments: --colour blue"),
    (["demo", "--steps", "3", "--minutes", "1"], "c3 demo: error: ", "not allowed with"),
    (["eval", "--cascade", "casc", "--texts", "texts.txt", "--size", "tiny"], "c3 eval: error: ", "--size"),
])
def test_argparse_errors_are_one_line(workspace, arguments, prefix, words):
    line = error_line(run_c3(*arguments, cwd=workspace), prefix)
    assert words in line and "usage:" not in line


# ---- files ------------------------------------------------------------------------------------------------------
def test_non_utf8_text_names_the_file_and_byte(workspace, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 50)
    line = error_line(run_c3("train", "--output", str(tmp_path / "never"), "--text", str(tmp_path / "latin1.txt"),
                             "--steps", "1", cwd=workspace), "c3 train: error: ")
    assert line == f"c3 train: error: --text {tmp_path / 'latin1.txt'}: not UTF-8 text (invalid continuation byte " \
                   f"at byte 3)"


# ---- C3_ISA: the package's import fails before the command's main runs ------------------------------------------
def test_unloadable_isa_is_one_line_for_every_command(workspace, tmp_path):
    for environment, words in (({"C3_ISA": "fastest"}, "c3: error: C3_ISA='fastest' is not a level of c3"),
                               ({"C3_ISA": "avx512", "C3_TEST_CPU_FLAGS": " ".join(_loader.LEVELS["avx2"])},
                                "c3: error: C3_ISA=avx512: this CPU lacks avx512bw")):
        for arguments in (["--version"], ["train", "--output", "never"], ["eval", "--help"]):
            line = error_line(run_c3(*arguments, cwd=workspace, env=environment), "c3: error: C3_ISA=")
            assert line.startswith(words), line
        # The console script `c3` (a __main__ that imports c3.cli) gives the same line.
        script = tmp_path / "c3"
        script.write_text("import sys\nfrom c3.cli import main\nsys.exit(main())\n")
        result = subprocess.run([sys.executable, str(script), "--version"], capture_output=True, text=True,
                                env=dict(os.environ, **environment), timeout=120)
        assert error_line(result, "c3: error: ").startswith(words)
        # `import c3` anywhere else still raises ImportError, and --debug shows the traceback.
        for code in ("import c3", "from c3.cli import main"):
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    env=dict(os.environ, **environment), timeout=120)
            assert result.returncode == 1 and "ImportError: C3_ISA" in result.stderr, result.stderr
        result = run_c3("--version", "--debug", cwd=workspace, env=environment)
        assert result.returncode == 1 and "Traceback" in result.stderr and "ImportError: C3_ISA" in result.stderr


# ---- plots: no library lines on stderr --------------------------------------------------------------------------
def test_demo_stderr_holds_only_c3_lines(tmp_path):
    # An unwritable matplotlib configuration folder makes matplotlib warn (and build its font cache) on import.
    result = run_c3("demo", "--output", str(tmp_path / "demo"), "--size", "tiny", "--steps", "1", "--ratios", "2",
                    "--quiet", cwd=tmp_path, env={"MPLCONFIGDIR": os.devnull + "/matplotlib"})
    assert result.returncode == 0, result.stderr
    # The demo's own lines, one per method and ratio ("mean_pool 2x: greedy token accuracy ..."), and no others.
    lines = result.stderr.splitlines()
    assert lines and all(re.match(r"[a-z_0-9]+ \d+x: greedy token accuracy", line) for line in lines), result.stderr
    assert (tmp_path / "demo" / "report.md").exists()


# ---- Ray: bounded waits, one line ---------------------------------------------------------------------------------
def test_unreachable_ray_address_is_one_line_within_seconds(workspace):
    pytest.importorskip("ray")
    for arguments in (["--ray", "127.0.0.1:1"], ["--ray", "ray://127.0.0.1:1"], ["--ray"]):
        started = time.monotonic()
        result = run_c3("eval", "--cascade", "casc", "--texts", "corpus.jsonl", "--output", "m.json", *arguments,
                        "--quiet", cwd=workspace, env={"RAY_ADDRESS": "127.0.0.1:1"}, timeout=90)
        assert time.monotonic() - started < 60
        line = error_line(result, "c3 eval: error: ")
        assert "127.0.0.1:1" in line and "cannot connect" in line, line
    assert not (workspace / "m.json").exists()


def test_ray_that_cannot_start_is_one_line(workspace, tmp_path):
    pytest.importorskip("ray")
    result = run_c3("compress", "--cascade", "casc", "--texts", "corpus.jsonl", "--output", str(tmp_path / "work"),
                    "--ray", "--quiet", cwd=workspace, env={"RAY_TMPDIR": os.devnull + "/ray"}, timeout=90)
    assert "could not start a local Ray cluster" in error_line(result, "c3 compress: error: ")


def test_more_threads_per_actor_than_cpus_stops_naming_the_cpus(workspace, tmp_path):
    pytest.importorskip("ray")
    started = time.monotonic()
    result = run_c3("eval", "--cascade", "casc", "--texts", "corpus.jsonl", "--work-dir", str(tmp_path / "work"),
                    "--ray", "--actors", "8", "--threads-per-actor", "1024", "--quiet", cwd=workspace, timeout=150)
    assert time.monotonic() - started < 120
    line = error_line(result, "c3 eval: error: ")
    assert "1024 threads per actor: the Ray cluster has" in line and "CPUs" in line, line


def test_more_actors_than_cpus_are_scaled_down_with_a_note(workspace, tmp_path):
    pytest.importorskip("ray")
    result = run_c3("eval", "--cascade", "casc", "--texts", "corpus.jsonl", "--output", str(tmp_path / "m.json"),
                    "--ray", "--actors", "4096", "--quiet", cwd=workspace, timeout=300)
    assert result.returncode == 0, result.stderr
    # One note and nothing else: no Ray INFO lines.
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("c3: note: the Ray cluster has ") and "not 4096" in lines[0], \
        result.stderr
    assert json.loads(result.stdout)["count"] == len(TEXTS)


def test_actors_that_ray_cannot_place_stop_after_the_start_wait(workspace, monkeypatch):
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        @ray.remote(num_cpus=1)
        class Holder:  # holds the cluster's only CPU
            def ready(self):
                return True

        holder = Holder.remote()
        assert ray.get(holder.ready.remote())
        monkeypatch.setattr(distributed, "START_SECONDS", 2.0)
        started = time.monotonic()
        with pytest.raises(c3.C3Error, match=r"1 of 1 Ray actors did not start within 2 s: each reserves 1 CPU, "
                                             r"and 0 of the cluster's 1 are free"):
            distributed.Pool(str(workspace / "casc"), actors=1)
        assert time.monotonic() - started < 30
    finally:
        ray.shutdown()


# ---- the Python API: c3's error types -----------------------------------------------------------------------------
def test_out_of_range_bins_are_c3_value_errors():
    values = [np.array([1.0, 2.0, 3.0])]
    for bins in (2 ** 64 - 1, 2 ** 40, 0, -1, 2.5, True):
        with pytest.raises(c3.C3ValueError, match="bins must be an integer from 1 to"):
            c3.analysis.value_profile(values, bins)
        with pytest.raises(c3.C3ValueError, match="bins must be"):
            c3.analysis.decay_curve([np.array([1, 0, 1])], bins=bins)
        with pytest.raises(c3.C3ValueError, match="bins must be"):
            c3.analysis.position_profile([("abc", "abd")], bins=bins)
    profile = c3.analysis.value_profile(values, 3)
    assert profile["mean"].tolist() == [1.0, 2.0, 3.0] and profile["count"].tolist() == [1, 1, 1]


def test_lone_surrogates_are_utf8_errors(workspace, tmp_path):
    cascade = c3.Cascade.load(str(workspace / "casc"))
    for call in (lambda: cascade.compress(["ok", "bad \ud800"]), lambda: cascade.tokenize(["\udcff"]),
                 lambda: c3.byte_tokenizer().encode("\ud800"), lambda: c3.byte_tokenizer().encode_batch(["\ud800"]),
                 lambda: c3.analysis.edit_distance("\ud800", "a")):
        with pytest.raises(c3.Utf8Error, match="lone surrogate"):
            call()
    latents = cascade.compress(["hello", "world"])
    for metadata in ({"note": "\ud800"}, {"\udcff": "x"}):
        with pytest.raises(c3.Utf8Error, match="lone surrogate"):
            c3.save_latents(str(tmp_path / "latents.safetensors"), latents, cascade, metadata=metadata)
    assert not (tmp_path / "latents.safetensors").exists()


def test_bpe_tokenizers_refuse_lone_surrogates(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    for normalise in (False, True):  # with NFC (Qwen2's), the text passes through unicodedata first
        tokenizer = tokenizers.Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        if normalise:
            tokenizer.normalizer = normalizers.NFC()
        tokenizer.train_from_iterator(["hello world"] * 4, trainers.BpeTrainer(
            vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        path = tmp_path / "tokenizer.json"
        tokenizer.save(str(path))
        ours = c3.BpeTokenizer.from_file(str(path))
        assert list(ours.encode("hello")) == tokenizer.encode("hello").ids
        for call in (lambda: ours.encode("a\ud800b"), lambda: ours.encode_batch(["fine", "\udfff"])):
            with pytest.raises(c3.Utf8Error, match="is a lone surrogate"):
                call()


def test_source_tokens_of_another_length_are_shape_errors(workspace, tmp_path):
    cascade = c3.Cascade.load(str(workspace / "casc"))
    latents = cascade.compress(["hello", "world"])
    for counts in ([1, 2, 3], [1], 5, [[1], [2]]):
        with pytest.raises(c3.ShapeError, match="source_tokens"):
            cascade.reconstruct(latents, source_tokens=counts)
        with pytest.raises(c3.ShapeError):
            c3.save_latents(str(tmp_path / "latents.safetensors"), latents, cascade, source_tokens=counts)
    for counts in ([-1, 2], [2 ** 70, 2], ["a", "b"], [1.5, 2], [float("nan"), 1]):
        with pytest.raises(c3.C3ValueError, match="source_tokens must be token counts"):
            cascade.reconstruct(latents, source_tokens=counts)
        with pytest.raises(c3.C3ValueError, match="source_tokens must be token counts"):
            c3.save_latents(str(tmp_path / "latents.safetensors"), latents, cascade, source_tokens=counts)
    assert len(cascade.reconstruct(latents, source_tokens=np.array([5, 5], np.uint8))) == 2
