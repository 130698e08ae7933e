"""c3.distributed on a local Ray cluster (two CPUs, two actors): compressing and evaluating a JSONL corpus shard by
shard gives exactly the single-process results, the reduce step equals the analysis of the whole corpus at once, a
restarted run skips finished shards, and a run that loses an actor mid-way still ends with the identical result."""
import json
import os
import signal

import numpy as np
import pytest

import c3
from c3 import analysis, distributed
from c3.cli import main as cli_main
from c3.demo import model_config

ray = pytest.importorskip("ray")

SHAPE = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
SHARD_SIZE, BATCH_SIZE = 4, 3


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(cascade directory, corpus.jsonl, texts): 30 documents of 12 to 70 bytes, as strings and {"text": ...}."""
    folder = tmp_path_factory.mktemp("distributed")
    cascade = c3.Cascade.new(model_config(SHAPE, 128), model_config(SHAPE, 128), 4, seed=0)
    cascade.save(str(folder / "cascade"))
    texts = [passage[:12 + (index * 7) % 59] for index, passage in enumerate(c3.corpus.passages(80)[:30])]
    with open(folder / "corpus.jsonl", "w") as handle:
        for index, text in enumerate(texts):
            handle.write(json.dumps({"text": text} if index % 2 else text) + "\n")
            if index == 5:
                handle.write("\n")  # blank lines are not documents
    return str(folder / "cascade"), str(folder / "corpus.jsonl"), texts


def run(corpus, output, **options):
    cascade, source, _ = corpus
    return distributed.evaluate(source, cascade, output, shard_size=SHARD_SIZE, batch_size=BATCH_SIZE,
                                threads=1, progress=False, **options)


@pytest.fixture(scope="module")
def single_process(corpus, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("single") / "metrics.json")
    return output, run(corpus, output, use_ray=False)


def shard_files(work, folder):
    return sorted(os.listdir(os.path.join(work, folder)))


def test_shards_cover_the_corpus_in_order(corpus):
    _, source, texts = corpus
    shards = distributed.plan_shards(source, SHARD_SIZE)
    assert len(shards) == 8 and [len(shard.texts()) for shard in shards] == [4] * 7 + [2]
    assert [text for shard in shards for text in shard.texts()] == texts


def test_reduce_equals_the_whole_corpus_analysis(corpus, single_process):
    cascade_path, source, texts = corpus
    output, metrics = single_process
    work = output + ".work"
    results = [json.load(open(os.path.join(work, "results", name))) for name in shard_files(work, "results")]
    hypotheses = [h for result in results for h in result["hypotheses"]]
    assert len(hypotheses) == len(texts) and any(hypotheses)
    fox = analysis.fox_metrics(texts, hypotheses)
    assert {key: metrics[key] for key in fox} == fox
    cascade = c3.Cascade.load(cascade_path)
    pairs = list(zip(cascade.tokenize(texts), [np.asarray(cascade.tokenizer.encode(h), np.int32) for h in hypotheses]))
    curve = analysis.decay_curve(pairs)
    for key, value in curve.items():
        np.testing.assert_array_equal(np.asarray(metrics["decay"][key], np.float64), value, err_msg=key)
    assert metrics["compression_ratio"] == float(np.mean([len(r) for r in cascade.tokenize(texts)]) / 4)
    # Reconstructions ran to the longest text + 8, as `c3 eval` does, on latents made batch by batch.
    assert results[0]["max_new_tokens"] == max(len(r) for r in cascade.tokenize(texts)) + 8
    latents = np.concatenate([cascade.compress(texts[i:min(i + BATCH_SIZE, SHARD_SIZE)], truncate=True)
                              for i in range(0, SHARD_SIZE, BATCH_SIZE)])
    stored, metadata = c3.load_latents(os.path.join(work, "latents", "corpus-00000.safetensors"), cascade)
    np.testing.assert_array_equal(stored, latents)
    assert metadata["user.shard"] == "corpus-00000" and list(metadata["source_tokens"]) == \
        [len(r) for r in cascade.tokenize(texts[:SHARD_SIZE])]


def test_ray_gives_the_single_process_result(cluster, corpus, single_process, tmp_path):
    output, expected = single_process
    seen = []
    metrics = run(corpus, str(tmp_path / "metrics.json"), actors=2, callback=seen.append)
    assert json.dumps(metrics) == json.dumps(expected)
    assert sorted(report["shard"] for report in seen) == [f"corpus-{i:05d}" for i in range(8)]
    for folder in ("results", "latents"):
        names = shard_files(output + ".work", folder)
        assert names == shard_files(str(tmp_path / "metrics.json.work"), folder)
        for name in names:
            with open(os.path.join(output + ".work", folder, name), "rb") as one, \
                    open(os.path.join(tmp_path, "metrics.json.work", folder, name), "rb") as two:
                assert one.read() == two.read(), name


def test_cli_compress_then_eval_resumes_finished_shards(cluster, corpus, single_process, tmp_path, capsys):
    cascade_path, source, _ = corpus
    _, expected = single_process
    work = str(tmp_path / "work")
    options = ["--ray", "--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH_SIZE), "--no-progress",
               "--actors", "2"]
    assert cli_main(["compress", "--cascade", cascade_path, "--texts", source, "--output", work, *options]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"output": work, "shards": 8}
    assert len(shard_files(work, "latents")) == 8
    output = str(tmp_path / "metrics.json")
    assert cli_main(["eval", "--cascade", cascade_path, "--texts", source, "--output", output, "--work-dir", work,
                     *options]) == 0
    assert json.load(open(output)) == json.loads(json.dumps(expected))
    # A run stopped after some shards: finished ones are skipped, the rest are done, the result is the same.
    os.remove(os.path.join(work, "results", "corpus-00003.json"))
    os.remove(os.path.join(work, "results", "corpus-00006.json"))
    seen = []
    metrics = run(corpus, output, work=work, actors=2, callback=seen.append)
    assert sorted(report["shard"] for report in seen) == ["corpus-00003", "corpus-00006"]
    assert json.dumps(metrics) == json.dumps(expected)
    # Another cascade cannot resume this work directory.
    other = c3.Cascade.new(model_config(SHAPE, 128), model_config(SHAPE, 128), 4, seed=1)
    other.save(str(tmp_path / "other"))
    with pytest.raises(c3.C3ValueError, match="cascade"):
        distributed.evaluate(source, str(tmp_path / "other"), output, work=work, shard_size=SHARD_SIZE,
                             batch_size=BATCH_SIZE, use_ray=False, progress=False)


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
    metrics = run(corpus, str(tmp_path / "metrics.json"), pool=pool, callback=kill_after_the_first_shard)
    assert json.dumps(metrics) == json.dumps(expected)
    assert sorted(seen) == [f"corpus-{i:05d}" for i in range(8)]  # every shard once, none lost or doubled
    assert pool.retried  # the victim held work when it died: that shard was done again
    assert victim not in pool.pids()  # Ray restarted the actor


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
