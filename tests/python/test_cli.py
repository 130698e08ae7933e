"""The command line as a user meets it: train -> compress -> reconstruct -> eval in subprocesses with the defaults,
one-line errors with exit status 2, help on every option, and the library's rule for the reconstruction length."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3 import cli

LATENTS, RATIO, HIDDEN = 8, 4, 32
# Texts that fit the encoder of the tiny cascade (its max_position_embeddings minus the latent block).
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Python is a programming language.",
         "Errors should never pass silently."]


def run_c3(*arguments, cwd, env=None):
    """`python3 -m c3.cli ...` with this process's environment, so that the same c3 package and _core are used."""
    return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=600)


def stdout_json(result):
    """The one JSON line a successful command prints."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny cascade trained by `c3 train` (progress bar on), and a texts file."""
    directory = tmp_path_factory.mktemp("cli")
    (directory / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = run_c3("train", "--output", "casc", "--latents", str(LATENTS), "--ratio", str(RATIO), "--steps", "60",
                    "--batch", "8", "--hidden-size", str(HIDDEN), "--layers", "1", cwd=directory)
    summary = stdout_json(result)
    assert "training" in result.stderr  # the progress bar goes to stderr, not into the JSON on stdout
    return directory, summary


def test_train_compress_reconstruct_eval_with_the_defaults(workspace):
    directory, summary = workspace
    # train: the summary and the cascade directory it wrote.
    assert summary["output"] == "casc" and summary["steps"] == 60 and summary["latents"] == LATENTS
    assert np.isfinite(summary["final_loss"]) and summary["final_loss"] < np.log(262)  # below uniform over bytes
    config = json.loads((directory / "casc" / "config.json").read_text())
    assert config["model_type"] == "C3" and config["latent_token_len"] == LATENTS
    assert config["hidden_size"] == HIDDEN and config["num_hidden_layers"] == 1
    # Positions: the passage, the latent block and SCRATCH_POSITION_ROOM.
    assert config["max_position_embeddings"] == LATENTS * RATIO + LATENTS + c3.cascade.SCRATCH_POSITION_ROOM
    tensors = {name: shape for name, _, shape in c3.safetensors_info(str(directory / "casc" / "model.safetensors"))}
    assert tensors["model.Q.weight"] == (LATENTS, HIDDEN)
    cascade = c3.Cascade.load(str(directory / "casc"))
    # The saved weights are the trained ones: their loss on the corpus is below that of uniform guessing.
    assert cascade.loss(c3.corpus.passages(LATENTS * RATIO)[:8]) < np.log(262)

    # compress: latents of every text, with the cascade's identity and the texts' token counts.
    stdout_json(run_c3("compress", "--cascade", "casc", "--texts", "texts.txt", "--output", "lat.safetensors",
                       "--quiet", cwd=directory))
    latents, metadata = c3.load_latents(str(directory / "lat.safetensors"), cascade)
    assert latents.shape == (len(TEXTS), LATENTS, HIDDEN)
    assert metadata["c3.cascade"] == cascade.identity()
    lengths = [len(text.encode("utf-8")) for text in TEXTS]  # byte-level tokenizer
    assert list(metadata["source_tokens"]) == lengths
    np.testing.assert_allclose(latents, cascade.compress(TEXTS), rtol=1e-5, atol=1e-6)

    # reconstruct with the default length, into a file and to stdout.
    run = run_c3("reconstruct", "--cascade", "casc", "--latents", "lat.safetensors", "--output", "rec.json",
                 "--quiet", cwd=directory)
    assert stdout_json(run) == {"output": "rec.json", "count": len(TEXTS)} and run.stderr == ""
    reconstructions = json.loads((directory / "rec.json").read_text(encoding="utf-8"))
    # The default: the decoder's positions after the prompt (the latent block), at most the longest text + margin.
    default = min(config["max_position_embeddings"] - (LATENTS + 2), max(lengths) + c3.cascade.RECONSTRUCTION_MARGIN)
    assert reconstructions == cascade.reconstruct(latents, max_new_tokens=default)
    assert stdout_json(run_c3("reconstruct", "--cascade", "casc", "--latents", "lat.safetensors", "--quiet",
                              cwd=directory)) == reconstructions

    # eval: the metrics file, checked against the pieces computed here.
    run = run_c3("eval", "--cascade", "casc", "--texts", "texts.txt", "--output", "metrics.json", "--quiet",
                 cwd=directory)
    printed = stdout_json(run)
    assert run.stderr == ""
    metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    for key, value in printed.items():
        assert key == "output" or metrics[key] == value, key
    assert metrics["count"] == len(TEXTS)
    assert np.isclose(metrics["compression_ratio"], np.mean(lengths) / LATENTS)
    hypotheses = cascade.reconstruct(latents, max_new_tokens=default, return_ids=True)
    references = cascade.tokenize(TEXTS)
    strict = [np.mean([i < len(h) and h[i] == r[i] for i in range(len(r))]) for r, h in zip(references, hypotheses)]
    assert np.isclose(metrics["token_accuracy"], np.mean(strict))
    scores = cascade.score(latents, TEXTS)
    assert np.isclose(metrics["teacher_forced_accuracy"], scores["correct"][scores["valid"]].mean())
    assert [pair[1] for pair in metrics["examples"]] == reconstructions
    assert len(metrics["decay"]["accuracy"]) == 20 and 0.0 <= metrics["edit_distance"] <= 1.0


def error_line(result, command):
    """The single line of a failed command: exit status 2, no traceback, nothing on stdout."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"c3 {command}: error: "), lines[0]
    return lines[0]


def test_missing_cascade(workspace):
    directory, _ = workspace
    line = error_line(run_c3("compress", "--cascade", "nonexistent", "--texts", "texts.txt", "--output", "x",
                             cwd=directory), "compress")
    assert "--cascade nonexistent" in line and "no such directory" in line
    assert not (directory / "x").exists()


def test_corrupt_latents(workspace):
    directory, _ = workspace
    stdout_json(run_c3("compress", "--cascade", "casc", "--texts", "texts.txt", "--output", "whole.safetensors",
                       "--quiet", cwd=directory))
    data = (directory / "whole.safetensors").read_bytes()
    (directory / "cut.safetensors").write_bytes(data[:len(data) // 2])
    line = error_line(run_c3("reconstruct", "--cascade", "casc", "--latents", "cut.safetensors", "--output",
                             "out.json", cwd=directory), "reconstruct")
    assert "cut.safetensors" in line
    assert not (directory / "out.json").exists()
    (directory / "text.safetensors").write_text("not a safetensors file")
    error_line(run_c3("reconstruct", "--cascade", "casc", "--latents", "text.safetensors", cwd=directory),
               "reconstruct")


def test_too_many_new_tokens(workspace):
    directory, _ = workspace
    stdout_json(run_c3("compress", "--cascade", "casc", "--texts", "texts.txt", "--output", "lat2.safetensors",
                       "--quiet", cwd=directory))
    limit = LATENTS * RATIO + LATENTS + c3.cascade.SCRATCH_POSITION_ROOM - (LATENTS + 2)
    for command, source in (("reconstruct", ["--latents", "lat2.safetensors"]), ("eval", ["--texts", "texts.txt"])):
        line = error_line(run_c3(command, "--cascade", "casc", *source, "--max-new-tokens", str(limit + 1),
                                 cwd=directory), command)
        assert f"at most {limit}" in line
    # Exactly the limit fits.
    texts = stdout_json(run_c3("reconstruct", "--cascade", "casc", "--latents", "lat2.safetensors", "--quiet",
                               "--max-new-tokens", str(limit), cwd=directory))
    assert len(texts) == len(TEXTS)


def test_paths_are_checked_before_any_work(workspace, tmp_path):
    directory, _ = workspace
    # A training run of a million steps that must stop at its paths, not train.
    long_run = ["--steps", "1000000", "--hidden-size", "16", "--layers", "1"]
    error_line(run_c3("train", "--output", "never", "--text", "missing.txt", *long_run, cwd=directory), "train")
    (tmp_path / "file").write_text("x")
    error_line(run_c3("train", "--output", str(tmp_path / "file"), *long_run, cwd=directory), "train")
    line = error_line(run_c3("compress", "--cascade", "casc", "--texts", "texts.txt", "--output",
                             "no/such/dir/lat.safetensors", cwd=directory), "compress")
    assert "does not exist" in line
    line = error_line(run_c3("eval", "--cascade", "casc", "--texts", "missing.txt", cwd=directory), "eval")
    assert "--texts missing.txt: no such file" in line
    line = error_line(run_c3("compress", "--cascade", "texts.txt", "--texts", "texts.txt", "--output", "y",
                             cwd=directory), "compress")
    assert "no such directory" in line


def test_bad_content_is_one_line(workspace):
    directory, _ = workspace
    (directory / "bad.json").write_text('{"not": "a list"}')
    error_line(run_c3("eval", "--cascade", "casc", "--texts", "bad.json", cwd=directory), "eval")
    (directory / "binary.txt").write_bytes(b"\xff\xfe\x00text\n")
    line = error_line(run_c3("compress", "--cascade", "casc", "--texts", "binary.txt", "--output", "z",
                             cwd=directory), "compress")
    assert "not UTF-8" in line
    (directory / "long.txt").write_text("short\n" + "x" * 500 + "\n")
    for command, output in (("compress", ["--output", "z"]), ("eval", [])):
        line = error_line(run_c3(command, "--cascade", "casc", "--texts", "long.txt", *output, cwd=directory),
                          command)
        assert "text 2 has 500 tokens" in line and "--truncate" in line
    (directory / "config.json").write_text('{"steps": 5, "colour": "blue"}')
    line = error_line(run_c3("train", "--output", "never", "--config", "config.json", cwd=directory), "train")
    assert "colour" in line


def test_truncate_keeps_what_the_encoder_reads(workspace):
    directory, _ = workspace
    cascade = c3.Cascade.load(str(directory / "casc"))
    limit = cascade.max_context_tokens
    (directory / "long.json").write_text(json.dumps(["y" * (limit + 30), "short"]))
    summary = stdout_json(run_c3("compress", "--cascade", "casc", "--texts", "long.json", "--output",
                                 "long.safetensors", "--truncate", "--quiet", cwd=directory))
    assert summary["truncated"] == 1
    latents, metadata = c3.load_latents(str(directory / "long.safetensors"))
    assert list(metadata["source_tokens"]) == [limit, 5]
    np.testing.assert_allclose(latents, cascade.compress(["y" * limit, "short"]), rtol=1e-5, atol=1e-6)
    metrics = stdout_json(run_c3("eval", "--cascade", "casc", "--texts", "long.json", "--truncate", "--quiet",
                                 cwd=directory))
    assert metrics["examples"][0][0] == "y" * limit  # scored against what the encoder read
    assert np.isclose(metrics["compression_ratio"], (limit + 5) / 2 / LATENTS)


def test_debug_shows_the_traceback(workspace):
    directory, _ = workspace
    arguments = ["compress", "--cascade", "nonexistent", "--texts", "texts.txt", "--output", "x"]
    for result in (run_c3(*arguments, "--debug", cwd=directory), run_c3(*arguments, cwd=directory,
                                                                          env={"C3_DEBUG": "1"})):
        assert result.returncode != 0 and "Traceback" in result.stderr and "C3IOError" in result.stderr


def test_every_option_has_help_and_every_command_an_example(capsys):
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert set(commands.choices) == {"demo", "train", "compress", "reconstruct", "eval", "sweep", "documents", "models"}
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help and action.help.strip(), (name, action.dest)
        with pytest.raises(SystemExit) as stop:
            cli.main([name, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert f"example:\n  c3 {name}" in text, name


def test_config_file_sits_between_the_defaults_and_the_command_line(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"steps": 2, "latents": 2, "ratio": 2, "batch": 2, "hidden_size": 16, "layers": 1}))
    output = str(tmp_path / "casc")
    assert cli.main(["train", "--output", output, "--config", str(config), "--latents", "4", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["latents"] == 4 and summary["passage_bytes"] == 8
    assert c3.Cascade.load(output).num_latents == 4


def test_demo_prints_json_and_sends_messages_to_stderr(tmp_path, capsys):
    output = tmp_path / "nested" / "demo"  # made on the way
    assert cli.main(["demo", "--output", str(output), "--size", "tiny", "--minutes", "0.02", "--ratios", "2",
                     "--quiet"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    results = json.loads((output / "results.json").read_text())
    assert summary["report"] == str(output / "report.md") and os.path.getsize(summary["report"]) > 0
    assert summary["token_accuracy"] == {"2x": results["2"]["token_accuracy"]}
    assert captured.err.startswith("c3 2x: greedy token accuracy")


def test_demo_trains_the_steps_it_is_given_and_refuses_steps_with_minutes(tmp_path, capsys):
    output = tmp_path / "demo"
    assert cli.main(["demo", "--output", str(output), "--size", "tiny", "--steps", "3", "--ratios", "2",
                     "--quiet"]) == 0
    assert json.loads((output / "results.json").read_text())["2"]["steps"] == 3
    assert "3 steps each" in (output / "report.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["demo", "--output", str(tmp_path / "other"), "--steps", "3", "--minutes", "1"])
    assert stopped.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_reconstruction_length_rule_matches_the_decoder():
    """max_new_tokens_limit against the C++ position check, with a prompt around the latent block."""
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    latents_count, context = 4, 20
    config = c3.cascade.scratch_model_config(shape, context, latents_count)
    cascade = c3.Cascade.new(config, config, latents_count, prompt="ab{latents}cde", seed=0)
    # Byte-level prompt: 2 tokens before the block, 3 after, the block is <img> + N + </img>.
    limit = config["max_position_embeddings"] - (2 + latents_count + 2 + 3)
    assert cascade.max_new_tokens_limit == limit
    latents = cascade.compress(["hello", "a longer text here"])
    cascade.model.reconstruct(latents, max_new_tokens=limit)  # the decoder accepts the limit...
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.model.reconstruct(latents, max_new_tokens=limit + 1)  # ...and refuses one more
    with pytest.raises(c3.C3ValueError, match=f"at most {limit}"):
        cascade.reconstruct(latents, max_new_tokens=limit + 1)
    margin = c3.cascade.RECONSTRUCTION_MARGIN
    assert cascade.default_max_new_tokens([5, 18]) == min(limit, 18 + margin)
    assert cascade.default_max_new_tokens([5, 10_000]) == limit
    assert cascade.default_max_new_tokens() == min(limit, cascade.max_context_tokens + margin)
    assert cascade.reconstruct(latents, source_tokens=[5, 18]) == cascade.reconstruct(
        latents, max_new_tokens=min(limit, 18 + margin))


@pytest.mark.parametrize("method", ["no_context", "full_context"])
def test_reconstruction_length_rule_follows_the_block_width(method):
    """For blocks other than N rows wide (no_context: 0, full_context: the context's width) the limit comes from
    the block actually given, with the C++ position check as the oracle."""
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    latents_count, context = 4, 20
    config = c3.cascade.scratch_model_config(shape, context, latents_count)
    cascade = c3.Cascade.new(config, config, latents_count, prompt="ab{latents}cde", seed=0, method=method)
    latents, mask = cascade.encode(["hello", "a longer text"])
    width = latents.shape[1]
    assert width == (0 if method == "no_context" else len("a longer text"))
    limit = config["max_position_embeddings"] - (2 + width + 2 + 3)
    cascade.model.reconstruct(latents, max_new_tokens=limit, latent_mask=mask)  # the decoder accepts the limit...
    with pytest.raises(c3.C3ValueError, match="max_position_embeddings"):
        cascade.model.reconstruct(latents, max_new_tokens=limit + 1, latent_mask=mask)  # ...and refuses one more
    cascade.reconstruct(latents, max_new_tokens=limit, latent_mask=mask)
    with pytest.raises(c3.C3ValueError, match=f"at most {limit}"):
        cascade.reconstruct(latents, max_new_tokens=limit + 1, latent_mask=mask)
    if method == "no_context":
        assert cascade.max_new_tokens_limit == limit
