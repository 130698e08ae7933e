"""The benchmark scripts run end to end (their figures are measured in benchmarks/, never here)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BEFORE_AFTER = os.path.join(ROOT, "benchmarks", "before_after.sh")


def in_git_checkout():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode == 0


@pytest.mark.skipif(not in_git_checkout(), reason="before_after.sh exports git revisions")
def test_before_after_plans_two_builds_and_interleaved_runs():
    result = subprocess.run(["bash", BEFORE_AFTER, "--dry-run", "--runs", "3", "HEAD", "HEAD"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    commands = [line[2:] for line in result.stderr.splitlines() if line.startswith("+ ")]
    builds = [c for c in commands if c.startswith("cmake --build")]
    assert len(builds) == 2 and all(c.endswith("--target bench_model") for c in builds)
    runs = [c.split()[0] for c in commands if "--benchmark_filter=" in c]
    # a, b, a, b, a, b: each revision's binary in turn.
    assert len(runs) == 6 and runs[0::2] == [runs[0]] * 3 and runs[1::2] == [runs[1]] * 3
    assert runs[0].endswith("/a/build/benchmarks/bench_model") and runs[1].endswith("/b/build/benchmarks/bench_model")


def test_before_after_rejects_a_missing_revision():
    result = subprocess.run(["bash", BEFORE_AFTER, "--dry-run", "HEAD", "no-such-revision-x"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and "not a revision: no-such-revision-x" in result.stderr


@pytest.mark.slow
def test_scaling_prints_a_row_per_thread_count_without_pytorch(tmp_path):
    # The scaling benchmark builds its models with c3 alone, so it runs where PyTorch cannot be imported.
    record = tmp_path / "scaling.json"
    arguments = ["scaling.py", "--threads", "1,2", "--models", "d128", "--repeats", "1", "--json", str(record)]
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "
            f"sys.argv = {arguments!r}; runpy.run_path('scaling.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            cwd=os.path.join(ROOT, "benchmarks"))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("lm ", "cascade "))]
    assert [(row[0], row[1], row[2]) for row in rows] == [("lm", "d128", "1"), ("lm", "d128", "2"),
                                                          ("cascade", "d128", "1"), ("cascade", "d128", "2")]
    assert all(float(row[3]) > 0 for row in rows)
    points = json.loads(record.read_text())["points"]
    assert [(p["task"], p["threads"]) for p in points] == [("lm", 1), ("lm", 2), ("cascade", 1), ("cascade", 2)]
    assert [round(p["tokens_per_s"]) for p in points] == [round(float(row[3])) for row in rows]


def run_long_documents(tmp_path, *arguments, timeout=600):
    """benchmarks/long_documents.py with these arguments on one thread: (its stdout, the figures of its --json)."""
    record = tmp_path / "long.json"
    result = subprocess.run([sys.executable, "long_documents.py", *arguments, "--threads", "1", "--json", str(record)],
                            capture_output=True, text=True, timeout=timeout, cwd=os.path.join(ROOT, "benchmarks"))
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(record.read_text())


def test_long_documents_reports_compression_against_prefill_and_a_long_cache(tmp_path):
    stdout, figures = run_long_documents(tmp_path, "--megabytes", "0.004", "--chunk-tokens", "64", "--batch-chunks",
                                         "4", "--blocks", "3", "--pretrained-tokens", "0")
    assert figures["compression"]["chunks"] == 63  # 4,000 bytes in chunks of 64
    assert figures["compression"]["fraction_of_prefill_rate"] > 0
    assert [row["latent_positions"] for row in figures["decoding"].values()] == [16, 48]
    assert "compress_long: 4,000 bytes in 63 chunks" in stdout
    assert figures["pretrained"] is None


def test_long_documents_on_a_smollm2_cascade(tmp_path):
    """The pretrained part: a SmolLM2 cascade's document of 256 tokens is two blocks of 16 latents."""
    from c3.models import smollm2

    try:
        smollm2()  # converted once into the cache, outside the timed script
    except FileNotFoundError as error:
        pytest.skip(str(error))
    stdout, figures = run_long_documents(tmp_path, "--megabytes", "0.001", "--chunk-tokens", "64", "--batch-chunks",
                                         "2", "--blocks", "1", "--pretrained-tokens", "256", timeout=900)
    row = figures["pretrained"]
    assert (row["tokens"], row["blocks"], row["latent_positions"]) == (256, 2, 32)
    assert row["fraction_of_prefill_rate"] > 0 and row["decode_tokens_per_second"] > 0
    assert "SmolLM2 cascade: compress_long of 256 tokens in 2 chunks of 128" in stdout
