"""Results that used to be silently wrong, each now refused or redone: a sweep run that is finished only when its
checkpoint loads (one resume path for every job count); sweep files of the wrong shape or damaged; a resumed
distributed evaluation whose input changed; a cascade identity that covers every weight; NaN weights never saved
or compressed; one reader of texts files; sweep workers that die with their parent; latents files with a checksum.
Where the command line misbehaved, the test runs it in a subprocess."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import c3
from c3 import _core, text_files
from c3.eval import distributed, scoring
from c3.experiments import recipe, runs, sweep
from c3.cascade import scratch_model_config
from c3.jsonfiles import jsonable as _jsonable

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
TINY = dict(methods=("c3",), ratios=(2,), seeds=(0,), size="tiny", steps=3, eval_passages=2, progress=False)
SWEEP_OPTIONS = ["--size", "tiny", "--methods", "c3", "--ratios", "2", "--seeds", "0", "--steps", "3",
                 "--eval-passages", "2", "--quiet"]


def run_c3(*arguments, cwd, timeout=600, **options):
    return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **options)


def one_error_line(result, *fragments):
    """The command failed the CLI's way: exit status 2 and one stderr line naming each fragment."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def small_cascade(seed=0, positions=80):
    return c3.Cascade.new(scratch_model_config(SHAPE, positions, 4), scratch_model_config(SHAPE, positions, 4), 4,
                          seed=seed)


def run_files(output, name="c3-seed0"):
    folder = os.path.join(output, "runs", name)
    return (os.path.join(folder, "checkpoint.safetensors"), os.path.join(folder, "trained.json"),
            os.path.join(folder, "evaluation.json"))


def measures(results):
    return {domain: results["runs"]["c3-seed0"][domain] for domain in ("in_domain", "out_of_domain")}


# ---- 1. one resume path: a run is trained only when its checkpoint loads ----------------------------------------
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sweep_trains_again_a_run_whose_checkpoint_is_gone(tmp_path, jobs):
    """trained.json without its checkpoint used to be evaluated untrained with --jobs 1 (exit 0, accuracy of a
    random model) and refused with --jobs 2. Both now train the run again, say so, and end where the first sweep
    did, bit for bit."""
    first = run_c3("sweep", "--output", "out", "--jobs", jobs, *SWEEP_OPTIONS, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    checkpoint, trained, evaluated = run_files(str(tmp_path / "out"))
    expected = _core.read_safetensors(checkpoint)
    results = json.load(open(tmp_path / "out" / "results.json"))
    os.remove(checkpoint)
    os.remove(evaluated)
    again = run_c3("sweep", "--output", "out", "--jobs", jobs, *SWEEP_OPTIONS, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "checkpoint is missing; training it again" in again.stderr
    retrained = _core.read_safetensors(checkpoint)  # the run was trained, not evaluated at random
    assert sorted(retrained) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(retrained[name], expected[name], err_msg=name)
    assert measures(json.load(open(tmp_path / "out" / "results.json"))) == measures(results)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_evaluated_run_needs_no_checkpoint_but_the_prior_of_an_unevaluated_one_does(tmp_path, jobs, monkeypatch):
    """A recorded sweep keeps only the checkpoints of runs in progress. Oracle: the first sweep's results.
    Every run evaluated and every checkpoint gone: the sweep trains nothing and reports the same measures. Then
    c3's evaluation removed too: c3 trains again from the start (bit for bit), and so does no_context, its
    surprisal prior, although its own evaluation stood; the measures are the first sweep's."""
    output = str(tmp_path / "out")
    options = dict(TINY, methods=("c3", "no_context"), jobs=jobs)
    first = sweep.run_sweep(output, **options)
    files = {name: run_files(output, name) for name in ("c3-seed0", "no_context-seed0")}
    expected = {name: _core.read_safetensors(paths[0]) for name, paths in files.items()}
    for checkpoint, _, _ in files.values():
        os.remove(checkpoint)

    def not_now(*args, **kwargs):
        raise AssertionError("a finished, evaluated run was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(sweep, "train_run", not_now)
        patch.setattr(sweep, "_in_workers", lambda job, work, *rest: work and not_now())
        again = sweep.run_sweep(output, **options)
    assert again["runs"] == first["runs"] and _jsonable(again["summary"]) == _jsonable(first["summary"])
    assert all(not os.path.exists(paths[0]) for paths in files.values())
    os.remove(files["c3-seed0"][2])
    third = sweep.run_sweep(output, **options)
    for name in files:
        for domain in ("in_domain", "out_of_domain"):
            assert third["runs"][name][domain] == first["runs"][name][domain]
    for name, paths in files.items():
        retrained = _core.read_safetensors(paths[0])
        for key in expected[name]:
            np.testing.assert_array_equal(retrained[key], expected[name][key], err_msg=f"{name} {key}")


def test_sweep_trains_again_a_run_whose_checkpoint_does_not_load(tmp_path):
    output = str(tmp_path / "out")
    results = sweep.run_sweep(output, **TINY)
    checkpoint, _, evaluated = run_files(output)
    expected = _core.read_safetensors(checkpoint)
    with open(checkpoint, "r+b") as handle:  # the header damaged: not a safetensors file any more
        handle.write(b"\xff" * 16)
    os.remove(evaluated)  # an evaluated run is final and would not read its checkpoint again
    again = sweep.run_sweep(output, **TINY)
    retrained = _core.read_safetensors(checkpoint)
    for name in expected:
        np.testing.assert_array_equal(retrained[name], expected[name], err_msg=name)
    assert measures(again) == measures(results)


# ---- 2. sweep files of the wrong shape: one checked reader -------------------------------------------------------
def test_sweep_plan_of_the_wrong_shape_or_damaged_is_one_line_naming_the_file(tmp_path):
    first = run_c3("sweep", "--output", "out", *SWEEP_OPTIONS, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    plan = tmp_path / "out" / "sweep.json"
    for content, words in ((b"[1, 2]", "expected a JSON object"), (b'{"methods": [', "not valid JSON"),
                           (b"\xff\xfe{}", "not UTF-8")):
        plan.write_bytes(content)
        one_error_line(run_c3("sweep", "--output", "out", *SWEEP_OPTIONS, cwd=tmp_path), "sweep.json", words)


@pytest.mark.parametrize("content", [b"[]", b'{"method": "c3", "seed": 0, "steps": "three"}', b"{\"steps\": 3",
                                     b'{"method": "mean_pool", "seed": 0, "steps": 3, "planned_steps": 3, "log": [],'
                                     b' "track": [], "track_ratios": []}'])
def test_damaged_trained_record_is_written_again_from_the_checkpoint(tmp_path, capsys, content):
    output = str(tmp_path / "out")
    results = sweep.run_sweep(output, **TINY)
    checkpoint, trained, evaluated = run_files(output)
    record = json.load(open(trained))
    before = os.stat(checkpoint).st_mtime_ns
    with open(trained, "wb") as handle:
        handle.write(content)
    capsys.readouterr()
    again = sweep.run_sweep(output, **TINY)
    assert "trained.json" in capsys.readouterr().err
    rewritten = json.load(open(trained))
    assert {key: rewritten[key] for key in ("method", "seed", "steps", "log", "track")} == \
        {key: record[key] for key in ("method", "seed", "steps", "log", "track")}
    assert measures(again) == measures(results)
    assert again["runs"]["c3-seed0"]["training"] == rewritten  # evaluated again, from the rewritten record
    assert os.stat(checkpoint).st_mtime_ns >= before


@pytest.mark.parametrize("damage", ["not json", "wrong shape", "missing ratio", "metric not a number", "stale"])
def test_damaged_evaluation_is_evaluated_again_never_reported(tmp_path, capsys, damage):
    output = str(tmp_path / "out")
    results = sweep.run_sweep(output, **TINY)
    _, trained, evaluated = run_files(output)
    value = json.load(open(evaluated))
    if damage == "not json":
        content = b'{"training": '
    else:
        if damage == "wrong shape":
            value = {"training": 5}
        elif damage == "missing ratio":
            value["in_domain"] = {}
        elif damage == "metric not a number":
            value["in_domain"]["2"]["token_accuracy"] = "high"
        else:  # made by an earlier training of the run, with other numbers
            value["training"]["train_seconds"] += 1.0
            value["in_domain"]["2"]["token_accuracy"] = 0.999
        content = json.dumps(value).encode()
    with open(evaluated, "wb") as handle:
        handle.write(content)
    capsys.readouterr()
    again = sweep.run_sweep(output, **TINY)
    assert "evaluat" in capsys.readouterr().err
    assert measures(again) == measures(results)
    assert json.load(open(evaluated))["in_domain"] == results["runs"]["c3-seed0"]["in_domain"]


@pytest.mark.parametrize("extra", ["[]", '{"step": -1, "data": {}}', '{"step": 3, "data": 7}', "{"])
def test_checkpoint_extra_of_the_wrong_shape_trains_the_run_again(tmp_path, capsys, extra):
    output = str(tmp_path / "out")
    results = sweep.run_sweep(output, **TINY)
    checkpoint, trained, evaluated = run_files(output)
    os.remove(evaluated)  # an evaluated run is final and would not read its checkpoint again
    expected = _core.read_safetensors(checkpoint)
    metadata = _core.safetensors_metadata(checkpoint)
    metadata["c3.extra"] = extra
    _core.write_safetensors(checkpoint, expected, "F32", metadata)
    with pytest.raises(c3.FormatError, match="checkpoint.safetensors"):
        c3.load_checkpoint(checkpoint, *(lambda cascade: (cascade.model, cascade.trainer(learning_rate=0.0)))(
            recipe.build_cascade("c3", recipe.SIZES["tiny"], 2, 0)), check=runs.check_extra)
    capsys.readouterr()
    again = sweep.run_sweep(output, **TINY)
    assert "does not load" in capsys.readouterr().err
    retrained = _core.read_safetensors(checkpoint)
    for name in expected:
        np.testing.assert_array_equal(retrained[name], expected[name], err_msg=name)
    assert measures(again) == measures(results)


def test_read_sweep_file_names_the_file(tmp_path):
    path = tmp_path / "trained.json"
    for content, words in ((b"\xc3\x28", "not UTF-8"), (b"{", "not valid JSON"), (b"3", "expected a JSON object")):
        path.write_bytes(content)
        with pytest.raises(c3.FormatError, match="trained.json.*" + words):
            runs.read_sweep_file(str(path), runs.check_plan)
    with pytest.raises(c3.C3IOError, match="missing.json"):
        runs.read_sweep_file(str(tmp_path / "missing.json"), runs.check_plan)


# ---- 3. a resumed distributed evaluation redoes the shards whose input changed ----------------------------------
def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}) + "\n")


@pytest.fixture(scope="module")
def saved_cascade(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    small_cascade().save(str(folder / "cascade"))
    return str(folder / "cascade")


CORPUS = [passage[:14 + 5 * index] for index, passage in enumerate(c3.corpus.passages(80)[:8])]


def test_resumed_distributed_evaluation_redoes_shards_whose_text_changed(tmp_path, saved_cascade):
    """The manifest records each shard's SHA-256: a corpus changed in place (same number of documents) is
    evaluated afresh where it changed, never answered with the old metrics. In-process first, then `c3 eval
    --ray` resuming the same work directory in a subprocess on a local Ray cluster."""
    source, work = str(tmp_path / "corpus.jsonl"), str(tmp_path / "work")
    write_jsonl(source, CORPUS)
    options = dict(shard_size=4, batch_size=2, threads=1, progress=False)
    old = distributed.evaluate(source, saved_cascade, work, use_ray=False, **options)
    manifest = json.load(open(os.path.join(work, "manifest.json")))
    assert manifest["shard_sha256"] == {shard.name: shard.sha256 for shard in distributed.plan_shards(source, 4)}
    changed = CORPUS[:5] + [text[::-1] for text in CORPUS[5:]]  # the second shard's texts, same count
    write_jsonl(source, changed)
    c3.set_num_threads(1)
    expected = scoring.evaluate(c3.Cascade.load(saved_cascade), changed, batch_size=2)
    assert scoring.evaluate(c3.Cascade.load(saved_cascade), CORPUS, batch_size=2)["count"] == old["count"]
    first_result = os.path.join(work, "results", "corpus-00000.json")
    untouched = os.stat(first_result).st_mtime_ns
    pytest.importorskip("ray")
    output = str(tmp_path / "metrics.json")
    result = run_c3("eval", "--cascade", saved_cascade, "--texts", source, "--output", output, "--work-dir", work,
                    "--ray", "--actors", "1", "--shard-size", "4", "--batch-size", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.load(open(output)) == json.loads(json.dumps(_jsonable(expected)))
    assert os.stat(first_result).st_mtime_ns == untouched  # the unchanged shard was not redone


def test_manifest_of_an_older_work_directory_redoes_every_shard(tmp_path, saved_cascade):
    source, work = str(tmp_path / "corpus.jsonl"), str(tmp_path / "work")
    write_jsonl(source, CORPUS)
    options = dict(shard_size=4, batch_size=2, threads=1, progress=False, use_ray=False)
    distributed.evaluate(source, saved_cascade, work, **options)
    path = os.path.join(work, "manifest.json")
    manifest = json.load(open(path))
    del manifest["shard_sha256"]  # written before content hashes
    json.dump(manifest, open(path, "w"))
    seen = []
    distributed.evaluate(source, saved_cascade, work, callback=seen.append, **options)
    assert sorted(report["shard"] for report in seen) == ["corpus-00000", "corpus-00001"]
    seen.clear()
    distributed.evaluate(source, saved_cascade, work, callback=seen.append, **options)
    assert seen == []  # now recorded: nothing to redo
    with open(path, "w") as handle:
        handle.write("[")
    with pytest.raises(c3.FormatError, match="manifest.json"):
        distributed.evaluate(source, saved_cascade, work, **options)


# ---- 4. the identity covers every parameter ---------------------------------------------------------------------
def test_freeze_queries_cascades_differ_in_identity_and_refuse_each_others_latents(tmp_path):
    """Two `c3 train --freeze queries` runs share config and Q; they used to share one identity, and each
    reconstructed the other's latents without a word."""
    (tmp_path / "texts.txt").write_text("a short text to compress\nanother one\n", encoding="utf-8")
    common = ["--latents", "4", "--ratio", "4", "--batch", "2", "--hidden-size", "32", "--layers", "1",
              "--freeze", "queries", "--quiet"]
    for name, steps in (("short", "3"), ("long", "30")):
        result = run_c3("train", "--output", name, "--steps", steps, *common, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    short, long = c3.Cascade.load(str(tmp_path / "short")), c3.Cascade.load(str(tmp_path / "long"))
    np.testing.assert_array_equal(short.model.bridge_parameters()["model.Q.weight"],
                                  long.model.bridge_parameters()["model.Q.weight"])
    assert short.identity() != long.identity()
    for name, cascade in (("short", short), ("long", long)):  # recorded at save, equal to the loaded one's
        assert json.load(open(tmp_path / name / "config.json"))["c3"]["identity"] == cascade.identity()
    result = run_c3("compress", "--cascade", "short", "--texts", "texts.txt", "--output", "short.safetensors",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    one_error_line(run_c3("reconstruct", "--cascade", "long", "--latents", "short.safetensors", cwd=tmp_path),
                   "made by cascade " + short.identity(), long.identity())
    assert run_c3("reconstruct", "--cascade", "short", "--latents", "short.safetensors", "--quiet",
                  cwd=tmp_path).returncode == 0


def test_identity_changes_with_any_weight_and_follows_the_weights_in_memory(tmp_path):
    cascade = small_cascade()
    before = cascade.identity()
    assert small_cascade().identity() == before  # the same weights: the same identity
    threads = c3.num_threads()
    try:
        c3.set_num_threads(1)
        assert cascade.identity() == before  # whatever the thread count
    finally:
        c3.set_num_threads(threads)
    views = [("encoder", cascade.model.encoder.parameters()), ("decoder", cascade.model.decoder.parameters()),
             ("bridge", cascade.model.bridge_parameters())]
    seen = {before}
    for part, parameters in views:
        for name in sorted(parameters)[:2] + sorted(parameters)[-1:]:
            value = parameters[name].reshape(-1)
            old = float(value[0])
            value[0] = np.nextafter(np.float32(old), np.float32(np.inf))  # one ulp of one weight
            changed = cascade.identity()
            assert changed not in seen, (part, name)
            seen.add(changed)
            value[0] = old
            assert cascade.identity() == before, (part, name)
    # Saved in bf16, the directory records the identity of what it holds, which its load gives back.
    cascade.save(str(tmp_path / "bf16"), dtype="BF16")
    reloaded = c3.Cascade.load(str(tmp_path / "bf16"))
    assert json.load(open(tmp_path / "bf16" / "config.json"))["c3"]["identity"] == reloaded.identity() != before
    assert c3.Cascade.load(str(tmp_path / "bf16"), storage="bf16").identity() == reloaded.identity()


# ---- 5. no NaN is ever saved or compressed ----------------------------------------------------------------------
def test_train_with_a_huge_learning_rate_fails_in_one_line_and_saves_nothing(tmp_path):
    """--learning-rate 1e300 used to save all-NaN weights, exit 0 and print a finite final loss."""
    for steps in ("2", "3"):  # step 1 is warmup at learning rate 0; step 2 takes weights past the float range
        result = run_c3("train", "--output", f"nan{steps}", "--latents", "4", "--ratio", "2", "--steps", steps,
                        "--batch", "2", "--hidden-size", "32", "--layers", "1", "--learning-rate", "1e300",
                        "--quiet", cwd=tmp_path)
        # Refused by the parser (a learning rate above 1) or, past it, by the trainer's NaN guard.
        line = one_error_line(result, "learning")
        assert "NaN guard" in line or "--learning-rate" in line
        assert result.stdout == ""
        assert not os.path.exists(tmp_path / f"nan{steps}" / "config.json")


def test_non_finite_weights_are_refused_at_save_and_compress(tmp_path):
    cascade = small_cascade()
    cascade.save(str(tmp_path / "good"))
    bias = cascade.model.decoder.parameters()["model.norm.weight"]
    bias[3] = np.nan
    with pytest.raises(c3.C3ValueError, match="model.norm.weight.*non-finite"):
        cascade.save(str(tmp_path / "good"))
    assert c3.Cascade.load(str(tmp_path / "good")).identity() == small_cascade().identity()  # old one kept
    with pytest.raises(c3.C3ValueError, match="model.norm.weight"):
        cascade.model.decoder.save(str(tmp_path / "decoder"))
    # compress: latents made from a non-finite weight of encoder or projector name it.
    encoder_norm = cascade.model.encoder.parameters()["model.norm.weight"]
    encoder_norm[0] = np.inf
    with pytest.raises(c3.C3ValueError, match=r"encoder\).*model.norm.weight"):
        cascade.compress(["some text"])
    with pytest.raises(c3.C3ValueError, match=r"encoder\).*model.norm.weight"):
        cascade.encode(["some text"])
    encoder_norm[0] = 1.0
    trainer = cascade.trainer(learning_rate=1e-3)
    with pytest.raises(c3.C3ValueError, match="model.norm.weight"):
        c3.save_checkpoint(str(tmp_path / "checkpoint.safetensors"), cascade.model, trainer)
    assert not os.path.exists(tmp_path / "checkpoint.safetensors")
    bias[3] = np.inf
    with pytest.raises(c3.C3ValueError, match="model.norm.weight"):
        cascade.save(str(tmp_path / "other"))
    with pytest.raises(c3.C3ValueError, match="not finite"):
        c3.save_latents(str(tmp_path / "latents.safetensors"), np.full((1, 4, 32), np.nan, np.float32))


def test_compress_of_a_cascade_with_nan_weights_fails_in_one_line(tmp_path):
    """A cascade directory whose weights hold NaN (written by another tool) used to compress into NaN latents."""
    small_cascade().save(str(tmp_path / "casc"))
    weights = str(tmp_path / "casc" / "model.safetensors")
    tensors = _core.read_safetensors(weights)
    tensors["model.mm_projector.weight"][0, 0] = np.nan
    _core.write_safetensors(weights, tensors, "F32", _core.safetensors_metadata(weights))
    (tmp_path / "texts.txt").write_text("one text\n", encoding="utf-8")
    result = run_c3("compress", "--cascade", "casc", "--texts", "texts.txt", "--output", "out.safetensors",
                    cwd=tmp_path)
    one_error_line(result, "model.mm_projector.weight")
    assert not os.path.exists(tmp_path / "out.safetensors")


def test_trainer_nan_guard_names_the_tensor_a_step_made_non_finite(tmp_path):
    """A step whose update carries a weight past the float range used to pass: the loss of that step is finite
    (it was computed before the update), so training ended with NaN weights and a finite final loss."""
    cascade = small_cascade()
    trainer = cascade.trainer(learning_rate=1e300, warmup_steps=0, total_steps=2)
    with pytest.raises(c3.C3ValueError, match=r"NaN guard: step 1 .* made parameter '[\w.]+' of group '\w+' "
                                              "non-finite"):
        cascade.train_step(trainer, ["a text to train on"])
    cascade = small_cascade()
    trainer = cascade.trainer(learning_rate=1e300, warmup_steps=1, total_steps=3)  # step 1 at rate 0
    batches = iter([["a text to train on"]] * 3)
    with pytest.raises(c3.C3ValueError, match="NaN guard: step 2"):
        c3.fit(trainer, batches, 3, step_fn=lambda t, batch: cascade.train_step(t, batch), progress=False)
    with pytest.raises(c3.C3ValueError, match="non-finite"):
        cascade.save(str(tmp_path / "never"))
    assert not os.path.exists(tmp_path / "never")


def test_from_torch_refuses_an_infinite_weight_before_writing(tmp_path):
    torch = pytest.importorskip("torch")
    c3_torch = pytest.importorskip("c3.torch")
    if not hasattr(c3_torch, "from_torch"):
        pytest.skip("no c3.torch.from_torch")
    module = c3_torch.to_torch(small_cascade())
    with torch.no_grad():
        dict(module.named_parameters())["encoder.model.norm.weight"][0] = float("inf")
    path = str(tmp_path / "from_torch")
    with pytest.raises(c3.C3ValueError, match=r"encoder.model.norm.weight' holds a non-finite value"):
        c3_torch.from_torch(module, path)
    assert not os.path.exists(path)  # nothing written, not even a staging folder
    assert os.listdir(tmp_path) == []


# ---- 6. one reader of texts files -------------------------------------------------------------------------------
def test_plain_and_ray_commands_read_a_jsonl_file_the_same_way(tmp_path, saved_cascade):
    """Plain `c3 compress` and `c3 eval` read a .jsonl file as raw lines (JSON syntax and all) while --ray read its
    "text" fields."""
    texts = ["first text", "a second, longer text", "third"]
    write_jsonl(tmp_path / "corpus.jsonl", texts)
    result = run_c3("compress", "--cascade", saved_cascade, "--texts", "corpus.jsonl", "--output", "l.safetensors",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, metadata = c3.load_latents(str(tmp_path / "l.safetensors"))
    assert list(metadata["source_tokens"]) == [len(text.encode()) for text in texts]  # byte-level tokens
    result = run_c3("eval", "--cascade", saved_cascade, "--texts", "corpus.jsonl", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["count"] == 3 and [pair[0] for pair in metrics["examples"]] == texts
    shards = distributed.plan_shards(str(tmp_path / "corpus.jsonl"), 2)
    assert [text for shard in shards for text in shard.texts()] == texts == \
        text_files.read_texts_file(str(tmp_path / "corpus.jsonl"))
    # Errors name the file and the line, for every command.
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n\n{"title": "no text"}\n', encoding="utf-8")
    one_error_line(run_c3("eval", "--cascade", saved_cascade, "--texts", "bad.jsonl", cwd=tmp_path),
                   "bad.jsonl", "line 3", "'text'")
    with pytest.raises(c3.FormatError, match="bad.jsonl: line 3"):
        distributed.plan_shards(str(tmp_path / "bad.jsonl"), 1)[1].texts()


def test_every_format_reads_alike_in_every_reader(tmp_path):
    texts = ["one", "two words", "  three  "]
    (tmp_path / "plain.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    (tmp_path / "list.json").write_text(json.dumps(texts), encoding="utf-8")
    write_jsonl(tmp_path / "lines.jsonl", texts)
    for name in ("plain.txt", "list.json", "lines.jsonl"):
        path = str(tmp_path / name)
        assert text_files.read_texts_file(path) == texts, name
        shards = distributed.plan_shards(path, 2)
        assert [len(shard.texts()) for shard in shards] == [2, 1], name
        assert [text for shard in shards for text in shard.texts()] == texts, name
        assert len({shard.sha256 for shard in shards}) == 2
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfe\n")
    with pytest.raises(c3.FormatError, match="bad.txt: line 2: not UTF-8"):
        text_files.read_texts_file(str(tmp_path / "bad.txt"))


# ---- 7. sweep workers die with their parent ---------------------------------------------------------------------
def children_of(pid: int) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_workers_exit_when_the_sweep_is_killed(tmp_path):
    """`c3 sweep --jobs 2` killed with SIGKILL used to leave its workers training to the end."""
    process = subprocess.Popen([sys.executable, "-m", "c3.cli", "sweep", "--output", "out", "--jobs", "2",
                                "--size", "tiny", "--methods", "c3,no_context", "--ratios", "2", "--seeds", "0",
                                "--steps", "200000", "--quiet"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        workers = []
        while time.monotonic() < deadline:
            # The two pool workers (the resource tracker is the third child): training once checkpoints appear.
            workers = [pid for pid in children_of(process.pid)
                       if "resource_tracker" not in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")]
            started = [name for name in ("c3-seed0", "no_context-seed0")
                       if os.path.exists(tmp_path / "out" / "runs" / name / "checkpoint.safetensors")]
            if len(workers) == 2 and len(started) == 2:
                break
            assert process.poll() is None, "the sweep ended early"
            time.sleep(0.2)
        assert len(workers) == 2, workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not [pid for pid in workers if alive(pid)], "workers outlived their parent"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of this test's own process group
        except ProcessLookupError:
            pass


def test_worker_initializer_ends_a_worker_whose_parent_is_already_gone():
    code = ("import os, sys; from c3.experiments import sweep; sweep._die_with_parent(os.getppid() + 100000); "
            "print('survived')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "survived" not in result.stdout


# ---- 8. latents files carry a checksum --------------------------------------------------------------------------
def test_sha256_is_hashlibs():
    for data in [b"", b"abc", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", b"a" * 1_000_000]:
        assert _core.sha256(data) == hashlib.sha256(data).hexdigest()
    assert _core.sha256(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    rng = np.random.default_rng(0)
    for size in list(range(0, 140)) + [1000, 4095, 4096, 4097, 65537]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert _core.sha256(data) == hashlib.sha256(data).hexdigest(), size


def data_region(path):
    """(start, end) of the tensors' bytes in a safetensors file."""
    with open(path, "rb") as handle:
        header = int.from_bytes(handle.read(8), "little")
    return 8 + header, os.path.getsize(path)


def test_bit_flips_in_latents_are_refused(tmp_path):
    """171 bit flips in a latents file's floats used to load as changed values."""
    cascade = small_cascade()
    texts = ["first text", "a second, longer text"]
    latents = cascade.compress(texts)
    path = str(tmp_path / "latents.safetensors")
    c3.save_latents(path, latents, cascade, source_tokens=[10, 21])
    metadata = _core.safetensors_metadata(path)
    stored = _core.read_safetensors(path)
    digest = hashlib.sha256(stored["latents"].astype("<f4").tobytes() +
                            stored["source_tokens"].astype("<f4").tobytes()).hexdigest()
    assert metadata["c3.checksum"] == digest
    loaded, _ = c3.load_latents(path, cascade)
    np.testing.assert_array_equal(loaded, latents)
    start, end = data_region(path)
    original = open(path, "rb").read()
    rng = np.random.default_rng(1)
    damaged = bytearray(original)
    for offset in rng.choice(np.arange(start, end, 4), size=171, replace=False):  # the lowest mantissa bit
        damaged[int(offset)] ^= 1
    open(path, "wb").write(bytes(damaged))
    assert np.isfinite(_core.read_safetensors(path)["latents"]).all()  # still plausible numbers
    with pytest.raises(c3.FormatError, match="checksum"):
        c3.load_latents(path)
    (tmp_path / "dummy").mkdir()
    small_cascade().save(str(tmp_path / "casc"))
    one_error_line(run_c3("reconstruct", "--cascade", "casc", "--latents", path, cwd=tmp_path),
                   "latents.safetensors", "checksum")
    # One flip in the token counts, too.
    damaged = bytearray(original)
    damaged[end - 1] ^= 0x01
    open(path, "wb").write(bytes(damaged))
    with pytest.raises(c3.FormatError, match="checksum"):
        c3.load_latents(path)


def test_latents_without_a_checksum_still_load(tmp_path):
    """Files written before checksums existed (no c3.checksum) load as before, without that check."""
    latents = small_cascade().compress(["some text"])
    path = str(tmp_path / "old.safetensors")
    _core.write_safetensors(path, {"latents": latents}, "F32", {"c3.kind": "latents", "c3.num_latents": "4"})
    loaded, metadata = c3.load_latents(path)
    np.testing.assert_array_equal(loaded, latents)
    assert "c3.checksum" not in metadata
    _core.write_safetensors(path, {"latents": latents}, "F32", {"c3.kind": "latents", "c3.num_latents": "4",
                                                                 "c3.checksum": "not a digest"})
    with pytest.raises(c3.FormatError, match="c3.checksum"):
        c3.load_latents(path)


def test_write_latents_is_the_cpp_writer_that_read_latents_reads(tmp_path):
    latents = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    path = str(tmp_path / "cpp.safetensors")
    _core.write_latents(path, latents, [4, 7], {"user.note": "made in C++"})
    read, metadata, tokens = _core.read_latents(path)
    np.testing.assert_array_equal(read, latents)
    assert list(tokens) == [4, 7] and metadata["user.note"] == "made in C++"
    assert metadata["c3.kind"] == "latents" and metadata["c3.num_latents"] == "3" and len(metadata["c3.checksum"]) == 64
    with pytest.raises(c3.ShapeError):
        _core.write_latents(path, latents, [4])
    with pytest.raises(c3.C3ValueError):
        _core.write_latents(path, latents, [4, -1])
    with pytest.raises(c3.ShapeError):
        _core.write_latents(path, latents[0])
