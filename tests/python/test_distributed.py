"""c3.distributed on a local Ray cluster (two CPUs, two actors): compressing and evaluating a JSONL corpus shard by
shard gives exactly the single-process results, the reduce step gives scoring.evaluate's metrics on the whole
corpus at once (and `c3 eval --ray` the output and summary of `c3 eval`), a restarted run skips finished shards, and
a run that loses an actor mid-way still ends with the identical result."""
import json
import os
import signal

import numpy as np
import pytest

import c3
from c3.cli import main as cli_main
from c3.eval import distributed, scoring
from c3.jsonfiles import jsonable as _jsonable
from c3.cascade import scratch_model_config

ray = pytest.importorskip("ray")

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
SHARD_SIZE, BATCH_SIZE = 6, 3  # shards cut at a multiple of the batch size: the batches of one process


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(cascade directory, corpus.jsonl, texts): 32 documents of 12 to 70 bytes, as strings and {"text": ...}."""
    folder = tmp_path_factory.mktemp("distributed")
    cascade = c3.Cascade.new(scratch_model_config(SHAPE, 80, 4), scratch_model_config(SHAPE, 80, 4), 4, seed=0)
    cascade.save(str(folder / "cascade"))
    texts = [passage[:12 + (index * 7) % 59] for index, passage in enumerate(c3.corpus.passages(80)[:32])]
    with open(folder / "corpus.jsonl", "w") as handle:
        for index, text in enumerate(texts):
            handle.write(json.dumps({"text": text} if index % 2 else text) + "\n")
            if index == 5:
                handle.write("\n")  # blank lines are not documents
    return str(folder / "cascade"), str(folder / "corpus.jsonl"), texts


def run(corpus, work, **options):
    cascade, source, _ = corpus
    return distributed.evaluate(source, cascade, work, shard_size=SHARD_SIZE, batch_size=BATCH_SIZE,
                                threads=1, progress=False, **options)


def canonical(metrics) -> str:
    """The metrics as `c3 eval` writes them: equal strings are equal keys and equal values, bit for bit."""
    return json.dumps(_jsonable(metrics), sort_keys=True)


@pytest.fixture(scope="module")
def single_process(corpus, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("single") / "work")
    return work, run(corpus, work, use_ray=False)


def shard_files(work, folder):
    return sorted(os.listdir(os.path.join(work, folder)))


def test_shards_cover_the_corpus_in_order(corpus):
    _, source, texts = corpus
    shards = distributed.plan_shards(source, SHARD_SIZE)
    assert len(shards) == 6 and [len(shard.texts()) for shard in shards] == [6] * 5 + [2]
    assert [text for shard in shards for text in shard.texts()] == texts


def test_reduce_equals_evaluation_evaluate(corpus, single_process):
    """One pipeline: the shards' evaluate_part results, merged, are scoring.evaluate of the whole corpus with
    the same batches and threads (so latents, reconstructions and every metric agree bit for bit)."""
    cascade_path, _, texts = corpus
    _, metrics = single_process
    c3.set_num_threads(1)
    expected = scoring.evaluate(c3.Cascade.load(cascade_path), texts, batch_size=BATCH_SIZE)
    assert list(metrics) == list(expected)
    assert canonical(metrics) == canonical(expected)
    assert metrics["count"] == len(texts) and 0 < metrics["teacher_forced_accuracy"] < 1


def test_ray_gives_the_single_process_result(cluster, corpus, single_process, tmp_path):
    work, expected = single_process
    seen = []
    metrics = run(corpus, str(tmp_path / "work"), actors=2, callback=seen.append)
    assert canonical(metrics) == canonical(expected)
    assert sorted(report["shard"] for report in seen) == [f"corpus-{i:05d}" for i in range(6)]
    names = shard_files(work, "results")
    assert names == shard_files(str(tmp_path / "work"), "results") and len(names) == 6
    for name in names:
        with open(os.path.join(work, "results", name), "rb") as one, \
                open(os.path.join(tmp_path, "work", "results", name), "rb") as two:
            assert one.read() == two.read(), name


def test_cli_compress_and_eval_on_ray_match_the_plain_commands(cluster, corpus, single_process, tmp_path, capsys):
    cascade_path, source, texts = corpus
    _, expected = single_process
    c3.set_num_threads(1)
    plain_texts = tmp_path / "texts.json"
    plain_texts.write_text(json.dumps(texts))
    work = str(tmp_path / "work")
    options = ["--ray", "--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH_SIZE), "--quiet", "--actors", "2"]
    assert cli_main(["compress", "--cascade", cascade_path, "--texts", source, "--output", work, *options]) == 0
    assert json.loads(capsys.readouterr().out) == {"output": work, "shards": 6}
    assert len(shard_files(work, "latents")) == 6
    cascade = c3.Cascade.load(cascade_path)
    latents = np.concatenate([cascade.compress(texts[start:start + BATCH_SIZE])
                              for start in range(0, SHARD_SIZE, BATCH_SIZE)])
    stored, metadata = c3.load_latents(os.path.join(work, "latents", "corpus-00000.safetensors"), cascade)
    np.testing.assert_array_equal(stored, latents)
    assert metadata["user.shard"] == "corpus-00000" and list(metadata["source_tokens"]) == \
        [len(row) for row in cascade.tokenize(texts[:SHARD_SIZE])]

    # c3 eval --ray writes the file and prints the summary that plain c3 eval does.
    output, plain_output = str(tmp_path / "metrics.json"), str(tmp_path / "plain.json")
    assert cli_main(["eval", "--cascade", cascade_path, "--texts", source, "--output", output, "--work-dir", work,
                     *options]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert cli_main(["eval", "--cascade", cascade_path, "--texts", str(plain_texts), "--output", plain_output,
                     "--batch-size", str(BATCH_SIZE), "--quiet"]) == 0
    plain_summary = json.loads(capsys.readouterr().out)
    assert summary == dict(plain_summary, output=output)
    assert list(summary) == list(plain_summary)
    with open(output) as one, open(plain_output) as two:
        assert one.read() == two.read()
    assert json.load(open(output)) == json.loads(canonical(expected))

    # A run stopped after some shards: finished ones are skipped, the rest are done, the result is the same.
    os.remove(os.path.join(work, "results", "corpus-00003.json"))
    os.remove(os.path.join(work, "results", "corpus-00005.json"))
    seen = []
    metrics = run(corpus, work, actors=2, callback=seen.append)
    assert sorted(report["shard"] for report in seen) == ["corpus-00003", "corpus-00005"]
    assert canonical(metrics) == canonical(expected)
    # Another cascade cannot resume this work directory.
    other = c3.Cascade.new(scratch_model_config(SHAPE, 80, 4), scratch_model_config(SHAPE, 80, 4), 4, seed=1)
    other.save(str(tmp_path / "other"))
    with pytest.raises(c3.C3ValueError, match="cascade"):
        distributed.evaluate(source, str(tmp_path / "other"), work, shard_size=SHARD_SIZE,
                             batch_size=BATCH_SIZE, use_ray=False, progress=False)


def test_cli_ray_checks_paths_and_options_first(corpus, tmp_path, capsys):
    """Bad paths and numbers under --ray are one-line errors (exit 2) before any Ray work starts."""
    cascade_path, source, _ = corpus
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in [
            (["eval", "--texts", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "m.json")], "no such file"),
            (["eval", "--texts", str(empty), "--output", str(tmp_path / "m.json")], "no .jsonl shards"),
            (["eval", "--texts", source], "needs --work-dir or --output"),
            (["compress", "--texts", source, "--output", source], "not a directory")]:
        assert cli_main([argv[0], "--cascade", cascade_path, *argv[1:], "--ray", "--quiet"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, error
        assert not os.path.exists(str(tmp_path / "m.json.work"))
    for option in (["--actors", "2"], ["--work-dir", str(tmp_path)], ["--shard-size", "7"]):
        assert cli_main(["eval", "--cascade", cascade_path, "--texts", source, "--quiet", *option]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"{option[0]} needs --ray" in error, error
    with pytest.raises(SystemExit) as exit:
        cli_main(["eval", "--cascade", cascade_path, "--texts", source, "--ray", "--shard-size", "0"])
    assert exit.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_a_killed_actor_loses_nothing(cluster, corpus, single_process, tmp_path):
    cascade_path, _, _ = corpus
    _, expected = single_process
    pool = distributed.Pool(cascade_path, actors=2, threads=1)
    victim = pool.pids()[0]
    seen = []

    def kill_after_the_first_shard(report):
        if not seen:
            os.kill(victim, signal.SIGKILL)
        seen.append(report["shard"])
    metrics = run(corpus, str(tmp_path / "work"), pool=pool, callback=kill_after_the_first_shard)
    assert canonical(metrics) == canonical(expected)
    assert sorted(seen) == [f"corpus-{i:05d}" for i in range(6)]  # every shard once, none lost or doubled
    # Whether the victim still held a shard when the signal landed depends on timing (a loaded machine may let it
    # finish first); the next test kills an actor that certainly holds work.
    assert victim not in pool.pids()  # Ray restarted the actor


def test_a_dead_actors_shards_are_retried(cluster, corpus, single_process, tmp_path):
    import ray

    cascade_path, _, _ = corpus
    _, expected = single_process
    pool = distributed.Pool(cascade_path, actors=2, threads=1)
    ray.kill(pool.workers[0], no_restart=True)  # every task sent to it now fails: each of its shards must move
    metrics = run(corpus, str(tmp_path / "work"), pool=pool)
    assert canonical(metrics) == canonical(expected)
    assert pool.retried


def test_bad_corpus_lines_raise_typed_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('"fine"\n{"title": "no text"}\n')
    with pytest.raises(c3.FormatError, match="line 2"):
        distributed.plan_shards(str(path), 10)[0].texts()
    path.write_text('"fine"\nnot json\n')
    with pytest.raises(c3.FormatError, match="not JSON"):
        distributed.plan_shards(str(path), 10)[0].texts()
    with pytest.raises(c3.C3IOError):
        distributed.plan_shards(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(c3.C3IOError, match="no .jsonl"):
        distributed.plan_shards(str(empty))
