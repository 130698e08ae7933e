"""Regression tests from a review of the pretrained sweep (c3 sweep --pretrained) and import_run: hostile options
give typed errors before anything is written, and an import never makes a run's record false."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3 import corpus, prose
from c3.experiments.heldout import SPLIT_FRACTIONS
from c3.experiments.recipe import build_cascade, pretrained_settings
from c3.experiments.runs import import_run, load_run
from c3.experiments.sweep import run_sweep
from conftest import make_hf_model


def _pretrained(directory, vocab=320, books=6, seed=0):
    """A Hugging Face directory: a tiny Llama and a byte-level BPE trained on the first `books` train books (as
    test_pretrained_sweep's fixture)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    train = corpus.document_splits(prose.ood_prose_documents(), fractions=SPLIT_FRACTIONS, seed=0)["train"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([text for _, text in train[:books]], trainers.BpeTrainer(
        vocab_size=vocab, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"]))
    model = make_hf_model(kind="llama", vocab=tokenizer.get_vocab_size(), hidden=32, heads=2, kv_heads=1,
                          intermediate=64, max_positions=512, seed=seed)
    model.save_pretrained(directory)
    tokenizer.save(os.path.join(str(directory), "tokenizer.json"))
    return str(directory)


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    return _pretrained(tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def settings(pretrained_dir):
    """The settings a pretrained sweep of c3, mean_pool and no_context at 4 steps gives its runs."""
    return dict(pretrained_settings(pretrained_dir, pretrained_dir, "tiny"), steps=4, shares=0, balance="bytes",
                method_steps={"c3": 4, "mean_pool": 4, "no_context": 0})


def _sweep_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "c3.cli", "sweep", *arguments], capture_output=True, text=True)


def _one_error_line(run):
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("c3 sweep: error: "), lines
    return lines[0]


def test_an_encoder_with_another_tokenizer_is_refused(pretrained_dir, tmp_path):
    """The encoder reads the decoder's token ids: an encoder of another vocabulary used to train and report
    silently on ids that mean other tokens to it."""
    other = _pretrained(tmp_path / "other", vocab=300, books=3, seed=1)
    run = _sweep_cli("--pretrained", f"{other},{pretrained_dir}", "--output", str(tmp_path / "out"), "--steps", "1",
                     "--eval-passages", "2", "--seeds", "0", "--methods", "c3,no_context", "--ratios", "2", "--quiet")
    assert "tokenizer" in _one_error_line(run)
    assert not os.path.exists(tmp_path / "out")
    # The same tokenizer in two directories is still a valid pair.
    copy = tmp_path / "copy"
    shutil.copytree(pretrained_dir, copy)
    from c3.experiments.sweep import pretrained_source

    assert pretrained_source(f"{copy},{pretrained_dir}")[:2] == (str(copy), pretrained_dir)


def test_a_config_without_a_shape_is_a_typed_error(pretrained_dir, tmp_path):
    """config.json without intermediate_size used to end in a KeyError traceback."""
    broken = tmp_path / "broken"
    shutil.copytree(pretrained_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    del config["intermediate_size"]
    (broken / "config.json").write_text(json.dumps(config))
    run = _sweep_cli("--pretrained", str(broken), "--output", str(tmp_path / "out"), "--quiet")
    assert "intermediate_size" in _one_error_line(run)
    assert not os.path.exists(tmp_path / "out")


class _Trained(Exception):
    pass


@pytest.mark.parametrize("steps", [0, -1])
def test_steps_below_one_are_refused(pretrained_dir, tmp_path, steps):
    """steps=0 used to mean the size's steps (1,000 for a pretrained sweep), silently; -1 a TypeError."""
    def stop(method, seed, step):
        raise _Trained(f"{method} trained a step")

    with pytest.raises(c3.C3ValueError, match="steps must be at least 1"):
        run_sweep(str(tmp_path / "out"), pretrained=pretrained_dir, methods=["c3"], ratios=[2], seeds=[0],
                  steps=steps, eval_passages=2, progress=False, on_step=stop)
    assert not os.path.exists(tmp_path / "out")


def _changed(cascade, part, name):
    values = getattr(cascade.model, part).parameters()
    values[name] = values[name] + 0.5
    getattr(cascade.model, part).set_parameters(values, strict=True)


def test_import_refuses_a_changed_frozen_part(settings, tmp_path):
    """A decoder trained elsewhere imported as run c3 (decoder frozen) used to be evaluated and reported as C3 with
    a frozen decoder; likewise mean_pool's frozen encoder."""
    name = "model.layers.0.mlp.up_proj.weight"
    for method, part in (("c3", "decoder"), ("mean_pool", "encoder")):
        cascade = build_cascade(method, settings, 2, 0)
        _changed(cascade, part, name)
        source = str(tmp_path / f"{method}-changed")
        cascade.save(source)
        target = tmp_path / method / "runs" / f"{method}-seed0"
        with pytest.raises(c3.ConfigError, match=f"keeps the {part} frozen"):
            import_run(str(target), method, 0, settings, [2], source)
        assert not os.path.exists(target)
    # A part the run trains may differ: C3's encoder is imported, and load_run gives it back.
    cascade = build_cascade("c3", settings, 2, 0)
    _changed(cascade, "encoder", name)
    cascade.save(str(tmp_path / "encoder-changed"))
    target = str(tmp_path / "ok" / "runs" / "c3-seed0")
    import_run(target, "c3", 0, settings, [2], str(tmp_path / "encoder-changed"))
    np.testing.assert_array_equal(load_run(target, "c3", 0, settings, 2).model.encoder.parameters()[name],
                                  cascade.model.encoder.parameters()[name])


def test_import_into_an_untrained_run_is_refused(settings, tmp_path):
    """A zero-step run is rebuilt from the pretrained directory (load_run): an import used to be written, recorded
    as trained by torch, and silently never read."""
    cascade = build_cascade("no_context", settings, 2, 0)
    _changed(cascade, "decoder", "model.layers.0.mlp.up_proj.weight")
    cascade.save(str(tmp_path / "no_context"))
    target = tmp_path / "runs" / "no_context-seed0"
    with pytest.raises(c3.ConfigError, match="zero steps"):
        import_run(str(target), "no_context", 0, settings, [2], str(tmp_path / "no_context"))
    assert not os.path.exists(target)
