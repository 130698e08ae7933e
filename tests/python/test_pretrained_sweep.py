"""The pretrained sweep (c3 sweep --pretrained): cascades of two pretrained models in their tokens, the decoder
frozen, untrained baselines whose model is the pretrained decoder, prose split by book with leakage checked in
tokens. The "pretrained" model is a tiny Llama with a byte-level BPE trained here on the train books."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3 import corpus, prose
from c3.experiments.heldout import SPLIT_FRACTIONS, prose_token_data
from c3.experiments.sweep import pretrained_source, run_sweep
from c3.leakage import WindowIndex
from conftest import make_hf_model

METHODS = ["c3", "mean_pool", "hierarchical", "truncate_last", "no_context", "c3_unfrozen"]
# Which pretrained part each method trains (the ICAE setting: the decoder frozen but in c3_unfrozen; the
# baselines train only their own parts).
TRAINS = {"c3": dict(encoder=True, decoder=False), "mean_pool": dict(encoder=False, decoder=False),
          "hierarchical": dict(encoder=False, decoder=False), "truncate_last": dict(encoder=False, decoder=False),
          "no_context": dict(encoder=False, decoder=False), "c3_unfrozen": dict(encoder=True, decoder=True)}


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """A Hugging Face directory: a tiny Llama and its tokenizer.json (a byte-level BPE of 320 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    books = corpus.document_splits(prose.ood_prose_documents(), fractions=SPLIT_FRACTIONS, seed=0)["train"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([text for _, text in books[:6]], trainers.BpeTrainer(
        vocab_size=320, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"]))
    model = make_hf_model(kind="llama", vocab=tokenizer.get_vocab_size(), hidden=32, heads=2, kv_heads=1,
                          intermediate=64, max_positions=512)
    directory = tmp_path_factory.mktemp("pretrained")
    model.save_pretrained(directory)
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    return str(directory)


@pytest.fixture(scope="module")
def sweep(pretrained_dir, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("sweep"))
    results = run_sweep(output, pretrained=pretrained_dir, methods=METHODS, ratios=[2, 4], seeds=[0, 1], steps=4,
                        eval_passages=4, progress=False)
    return output, results


def test_prose_passages_are_clean_whole_and_apart(pretrained_dir):
    tokenizer = c3.BpeTokenizer.from_file(os.path.join(pretrained_dir, "tokenizer.json"))
    data = prose_token_data(tokenizer, 48, 12, 5, "test")
    books = corpus.document_splits(prose.ood_prose_documents(), fractions=SPLIT_FRACTIONS, seed=0)
    train_text = "\n\n".join(text for _, text in books["train"]).encode("utf-8")
    np.testing.assert_array_equal(data["train_regions"][0], tokenizer.encode(train_text.decode("utf-8")))
    assert len(data["in_domain"]) == 12 and len(data["out_of_domain"]) == 5
    for passage, document, offset in zip(data["in_domain"], data["in_domain_documents"], data["in_domain_offsets"]):
        assert len(passage) == 48 and offset % 48 == 0  # consecutive cuts of one book
        ids = tokenizer.encode(books["test"][document][1])
        np.testing.assert_array_equal(passage, ids[offset:offset + 48])
        text = tokenizer.decode(passage).encode("utf-8")
        # Brute force against the index: no 32-byte stretch of a held-out passage occurs in the training text.
        assert not any(text[i:i + 32] in train_text for i in range(len(text) - 31))
    pairs = list(zip(data["in_domain_documents"], data["in_domain_offsets"]))
    assert len(set(pairs)) == len(pairs)  # no passage twice, and cuts of one book never overlap
    report = data["report"]["in_domain"]
    assert report["unit"] == "tokens" and report["leaked"] > 0 and report["clean"] + report["leaked"] == \
        report["available"]
    # The count of leaked passages agrees with a brute-force count over every cut of every test book.
    index = WindowIndex(train_text, 32)
    leaked = 0
    for _, text in books["test"]:
        ids = tokenizer.encode(text)
        for start in range(0, len(ids) // 48 * 48, 48):
            leaked += index.contains(tokenizer.decode(ids[start:start + 48]).encode("utf-8"))
    assert leaked == report["leaked"]


def test_frozen_and_trained_parts(sweep, pretrained_dir):
    output, results = sweep
    steps = results["settings"]["method_steps"]
    assert steps == {"c3": 4, "mean_pool": 4, "hierarchical": 4, "truncate_last": 0, "no_context": 0,
                     "c3_unfrozen": 4}
    pretrained = c3.Transformer.load(pretrained_dir).parameters()
    for method in METHODS:
        directory = os.path.join(output, "runs", f"{method}-seed0")
        # An untrained method keeps no checkpoint: its model is rebuilt from the pretrained directory.
        assert os.path.exists(os.path.join(directory, "checkpoint.safetensors")) == (steps[method] > 0)
        from c3.experiments.runs import load_run

        cascade = load_run(directory, method, 0, results["settings"], 4)
        for part in ("encoder", "decoder"):
            ours = getattr(cascade.model, part).parameters()
            changed = [name for name, value in pretrained.items()
                       if not np.array_equal(ours[name][:value.shape[0]], value)]
            trains = TRAINS[method][part]
            # Embeddings grew by C3's special tokens; the pretrained rows are kept. The encoder of a method that
            # does not read it is never touched either.
            assert bool(changed) == trains, (method, part, changed[:3])
    # The untrained methods' evaluations are of the pretrained decoder: every seed holds the same model but the
    # seeded rows of the special tokens.
    assert results["runs"]["no_context-seed0"]["training"]["steps"] == 0


def test_report_and_measures(sweep):
    output, results = sweep
    assert results["plan"]["size"] == "pretrained" and results["held_out"]["design"] == "prose"
    assert results["corpus"] == prose.LICENCE and results["out_of_domain_corpus"] == corpus.LICENCE
    for method in METHODS:
        for seed in (0, 1):
            entry = results["runs"][f"{method}-seed{seed}"]["in_domain"]["4"]
            positions = np.asarray(entry["first_error_positions"])
            assert len(positions) == entry["passages"] and ((0 <= positions) & (positions <= 64)).all()
            # A passage decoded without an error has its first error at its length, and accuracy agrees.
            assert (np.mean(positions == 64) > 0) == (max(entry["per_passage"]["token_accuracy"]) == 1.0)
    flops = {m: results["compute"][m]["training_flops"] for m in METHODS}
    assert flops["truncate_last"] == flops["no_context"] == 0.0
    assert flops["mean_pool"] < flops["c3"] < flops["c3_unfrozen"]
    report = open(os.path.join(output, "report.md")).read()
    for text in ("## Pretrained models", "| c3 | encoder, queries, projector | 4 |",
                 "| truncate_last | nothing (the pretrained decoder is its model) | 0 |",
                 "## Held-out design: prose split by book", "## First greedy error", "ratio x N tokens",
                 "the pretrained decoder itself"):
        assert text in report, text
    assert "ratio x N bytes" not in report


def test_continuation_bits_count_utf8_bytes(sweep, pretrained_dir):
    """Bits per byte divide by the continuations' UTF-8 bytes, not by their tokens (about 3 bytes each here)."""
    output, results = sweep
    tokenizer = c3.BpeTokenizer.from_file(os.path.join(pretrained_dir, "tokenizer.json"))
    data = prose_token_data(tokenizer, 4 * 16 + 32, 4, 4, "dev")
    cascade = c3.experiments.runs.load_run(os.path.join(output, "runs", "no_context-seed0"), "no_context", 0,
                                           results["settings"], 4)
    contexts = [p[:64] for p in data["in_domain"]]
    continuations = [p[64:] for p in data["in_domain"]]
    from c3.eval import continuation

    expected = continuation.bits_per_byte(cascade, contexts, continuations)["bits_per_byte"]
    measured = results["runs"]["no_context-seed0"]["in_domain"]["4"]["continuation_bits_per_byte"]
    assert abs(measured - expected) < 1e-4 * expected


def test_resumes_and_refuses_other_settings(sweep, pretrained_dir):
    output, results = sweep
    again = run_sweep(output, pretrained=pretrained_dir, methods=METHODS, ratios=[2, 4], seeds=[0, 1], steps=4,
                      eval_passages=4, progress=False)
    assert again["runs"] == results["runs"]  # everything was final: read back, nothing trained again
    with pytest.raises(c3.ConfigError, match="other settings"):
        run_sweep(output, pretrained=pretrained_dir, methods=METHODS, ratios=[2, 4], seeds=[0, 1], steps=5,
                  eval_passages=4, progress=False)


def test_bad_pretrained_options(tmp_path, pretrained_dir):
    with pytest.raises(c3.C3IOError, match="has no config.json"):
        pretrained_source(str(tmp_path))
    with pytest.raises(c3.C3ValueError, match="ENCODER_DIR,DECODER_DIR"):
        pretrained_source("a,b,c")
    with pytest.raises(c3.C3ValueError, match="own size"):
        run_sweep(str(tmp_path / "s"), pretrained=pretrained_dir, size="tiny")
    with pytest.raises(c3.C3ValueError, match="unknown 'c3_unfrozen'"):
        run_sweep(str(tmp_path / "s"), methods=["c3_unfrozen"], size="tiny")
    # The CLI: one line, a typed error's exit status, nothing written.
    run = subprocess.run([sys.executable, "-m", "c3.cli", "sweep", "--pretrained", str(tmp_path / "missing"),
                          "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr and "has no config.json" in run.stderr
    assert not os.path.exists(tmp_path / "out")


def test_json_round_trip(sweep):
    output, results = sweep
    assert json.load(open(os.path.join(output, "results.json")))["plan"]["pretrained"] == results["plan"]["pretrained"]


def test_weights_trained_by_torch_are_analysed_by_c3(sweep, pretrained_dir, tmp_path):
    """Two ways to train, one analysis: the c3-trained weights of a run, passed through PyTorch (c3.torch) and back
    and imported as a run of a new sweep, give exactly the same evaluation; weights that PyTorch trained further
    are evaluated as c3 evaluates any run."""
    torch = pytest.importorskip("torch")
    import c3.torch as c3_torch
    from c3.experiments.runs import import_run, load_run

    output, results = sweep
    settings = results["settings"]
    cascade = load_run(os.path.join(output, "runs", "c3-seed0"), "c3", 0, settings, 4)
    module = c3_torch.to_torch(cascade)
    same = str(tmp_path / "same-weights")
    c3_torch.from_torch(module, same)
    second = str(tmp_path / "second")
    import_run(os.path.join(second, "runs", "c3-seed0"), "c3", 0, settings, [2, 4], same)
    imported = run_sweep(second, pretrained=pretrained_dir, methods=["c3", "no_context"], ratios=[2, 4], seeds=[0],
                         steps=4, eval_passages=4, progress=False)
    theirs, ours = imported["runs"]["c3-seed0"], results["runs"]["c3-seed0"]
    assert theirs["training"]["engine"] == "torch"
    for domain in ("in_domain", "out_of_domain"):
        assert theirs[domain] == ours[domain]  # every measure, every passage, bit for bit

    # Trained further by PyTorch: the import is the torch model's weights, and c3 scores them as torch does. The
    # decoder stays frozen, as run c3 keeps it (import_run refuses a changed frozen part).
    module.set_trainable("decoder", False)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(0, 300, size=(2, 32))).long()
    mask = torch.ones_like(ids)
    for _ in range(2):
        optimizer.zero_grad()
        module(ids, mask, ids, mask).backward()
        optimizer.step()
    further = str(tmp_path / "further")
    c3_torch.from_torch(module, further)
    third = str(tmp_path / "third")
    import_run(os.path.join(third, "runs", "c3-seed0"), "c3", 0, settings, [2, 4], further)
    reloaded = load_run(os.path.join(third, "runs", "c3-seed0"), "c3", 0, settings, 4)
    latents = reloaded.model.compress(ids.numpy().astype(np.int32))
    with torch.no_grad():
        expected = module.compress(ids).numpy()
    np.testing.assert_allclose(latents, expected, atol=1e-4)
    assert not np.allclose(latents, cascade.model.compress(ids.numpy().astype(np.int32)), atol=1e-3)
    # A cascade of another shape is refused, and nothing is written.
    other = c3.Cascade.from_pretrained(pretrained_dir, pretrained_dir, n_latents=8)
    other.save(str(tmp_path / "other"))
    with pytest.raises(c3.ConfigError, match="num_latents"):
        import_run(str(tmp_path / "fourth"), "c3", 0, settings, [2, 4], str(tmp_path / "other"))
    assert not os.path.exists(tmp_path / "fourth")


def test_the_best_baseline_is_the_strongest_competitor_at_each_ratio():
    """The verdict row picks, per ratio, the baseline with the best mean (higher accuracy, lower bits per byte),
    never a training variant of C3, and shows C3 minus it seed by seed."""
    from c3.experiments.report import _best_baseline_cells

    def entry(mean):
        return dict(mean=mean, low=mean - 0.01, high=mean + 0.01, half_width=0.01, n=3)

    means = {"mean_pool": (0.5, 0.2), "truncate_last": (0.4, 0.3), "c3_unfrozen": (0.9, 0.9)}
    for metric, expected in (("token_accuracy", ["mean_pool", "truncate_last"]),
                             ("continuation_bits_per_byte", ["truncate_last", "mean_pool"])):
        summary = dict(intervals={"in_domain": {metric: {b: {str(r): entry(m[i]) for i, r in enumerate((4, 8))}
                                                         for b, m in means.items()}}},
                       paired={"in_domain": {metric: {b: {str(r): entry(0.1 * (i + 1)) for i, r in enumerate((4, 8))}
                                                      for b in means}}})
        cells = _best_baseline_cells(summary, "in_domain", metric, list(means), (4, 8))
        assert [cell.split(":")[0] for cell in cells] == expected
        assert cells[0].startswith(f"{expected[0]}: +0.100")


def test_recorded_settings_name_no_machine_paths(monkeypatch, tmp_path):
    """A results file records model folders under the model cache as $C3_CACHE/..., under the home folder as ~/...,
    and others as given; a folder that merely shares the cache's prefix is not under it."""
    from c3.experiments.recipe import recorded_settings

    monkeypatch.setenv("C3_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = dict(latents=16, pretrained=dict(name="pair", encoder=str(tmp_path / "cache" / "smollm2"),
                                                decoder=str(tmp_path / "home" / "models" / "decoder")))
    recorded = recorded_settings(settings)
    assert recorded["pretrained"] == dict(name="pair", encoder="$C3_CACHE/smollm2", decoder="~/models/decoder")
    assert settings["pretrained"]["encoder"] == str(tmp_path / "cache" / "smollm2")  # the run's own are unchanged
    elsewhere = dict(settings, pretrained=dict(name="pair", encoder=str(tmp_path / "cache2" / "m"),
                                               decoder=str(tmp_path / "cache2" / "m")))
    assert recorded_settings(elsewhere)["pretrained"]["encoder"] == str(tmp_path / "cache2" / "m")
    assert recorded_settings(dict(latents=16)) == dict(latents=16)


def test_portable_path_takes_the_nearer_root_and_never_the_filesystem_root(monkeypatch, tmp_path):
    from c3.models import portable_path

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("C3_CACHE", str(home / ".cache" / "c3"))
    assert portable_path(str(home / ".cache" / "c3" / "m")) == "$C3_CACHE/m"  # nearer than ~
    assert portable_path(str(home / "a" / ".." / "b")) == "~/b"  # normalised
    monkeypatch.setenv("C3_CACHE", str(tmp_path))  # a parent of home: home is nearer
    assert portable_path(str(home / "me")) == "~/me"
    monkeypatch.setenv("C3_CACHE", "/")
    monkeypatch.setenv("HOME", "/")
    assert portable_path("/data/models/qwen") == "/data/models/qwen"


def test_pretrained_settings_keep_their_name(pretrained_dir):
    from c3.experiments.recipe import pretrained_settings

    settings = pretrained_settings(pretrained_dir, pretrained_dir, "a pair of tiny Llamas")
    assert settings["pretrained"]["name"] == "a pair of tiny Llamas"


def test_a_directory_sweep_records_its_models_by_portable_paths(monkeypatch, pretrained_dir, tmp_path):
    """The plan's name of models given as folders, and a report's command, name no machine's own folders."""
    from c3.models import portable_path

    monkeypatch.setenv("C3_CACHE", os.path.dirname(pretrained_dir))
    assert pretrained_source(pretrained_dir)[2] == "$C3_CACHE/" + os.path.basename(pretrained_dir)
    assert pretrained_source(f"{pretrained_dir},{pretrained_dir}")[2] == ",".join(
        [portable_path(pretrained_dir)] * 2)
    # A report's command: absolute paths as portable_path writes them, other words as typed.
    from c3 import cli

    monkeypatch.setattr(sys, "argv", ["c3", "sweep", "--pretrained", pretrained_dir, "--output", "runs/x"])
    assert cli._command_line() == ("c3 sweep --pretrained '$C3_CACHE/" + os.path.basename(pretrained_dir)
                                   + "' --output runs/x")
