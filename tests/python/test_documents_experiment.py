"""c3 documents in its tiny configuration: windows of train books with a doubling chunk curriculum, training that
resumes, evaluation windows that do not overlap, measures by position, and the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3.experiments import documents
from test_long_documents import one_thread  # noqa: F401 - the fixture, autouse here too


def test_chunk_counts_double_up_to_the_longest():
    assert documents.chunk_counts(1) == [1]
    assert documents.chunk_counts(4) == [1, 2, 4]
    assert documents.chunk_counts(6) == [1, 2, 4, 6]


def test_batches_unlock_longer_documents_and_hold_about_the_same_bytes():
    settings = dict(documents.SIZES["tiny"], max_chunks=4, batch_tokens=64, curriculum=0.5)
    books = [np.arange(500, dtype=np.int32) % 256]
    data = documents.DocumentBatches(books, settings, seed=0, steps=12)
    assert data.unlocked(0) == [1] and data.unlocked(2) == [1, 2] and data.unlocked(6) == [1, 2, 4]
    for step in range(12):
        chunks, follow, addressed = data.draw(step)
        B, K, C = chunks.shape
        assert C == 16 and K in data.unlocked(step) and B == max(1, 64 // (K * 16))
        assert follow.shape == (B, 8) and ((0 <= addressed) & (addressed < K)).all()
        for b in range(B):  # a window is consecutive text of one book
            window = np.concatenate([chunks[b].reshape(-1), follow[b]])
            assert ((np.diff(window) % 256) == 1).all()
    state = data.state()
    first = data.draw(11)
    data.restore(state)
    assert all(np.array_equal(a, b) for a, b in zip(first, data.draw(11)))


def test_evaluation_windows_do_not_overlap_and_report_their_leaked_share():
    settings = documents.SIZES["tiny"]
    train = [np.frombuffer(b"the same words again and again " * 10, np.uint8).astype(np.int32)]
    book = np.frombuffer((b"the same words again and again " * 4) + bytes(range(100, 200)), np.uint8).astype(np.int32)
    windows, leaked = documents.evaluation_windows([book], train, settings, 10)
    length = 4 * 16 + 8
    assert all(len(w) == length for w in windows) and len(windows) == len(book) // length
    assert np.array_equal(np.concatenate(windows), book[:len(windows) * length])
    assert leaked[0] > 0.5 and leaked[-1] == 0.0


def test_a_tiny_run_trains_measures_and_resumes_without_training_again(tmp_path, monkeypatch):
    output = str(tmp_path / "documents")
    results = documents.run_documents(output, size="tiny", progress=False)
    assert sorted(results["runs"]) == ["c3-seed0", "mean_pool-seed0", "truncate_window-seed0"]
    run = results["runs"]["c3-seed0"]
    assert run["by_chunk_index"]["chunks"] == [results["windows"]] * 4
    assert set(run["by_distance_from_end"]) >= {"teacher_forced", "strict", "aligned", "supplied_bits"}
    assert os.path.exists(os.path.join(output, "positions-c3-seed0.png"))
    report = open(os.path.join(output, "report.md")).read()
    assert "run_documents(" in report and "| truncate_window |" in report
    assert all(0.0 <= share <= 1.0 for share in results["leaked_share"])
    trained = json.load(open(os.path.join(output, "runs", "c3-seed0", "trained.json")))
    assert trained["steps"] == 6 and len(trained["log"]) == 6
    # The bits supplied are against the seed's language-model prior, a no_context run on the training books.
    settings, books = results["settings"], documents.book_splits()
    prior = documents.train_prior(os.path.join(output, "runs", "prior-seed0"), 0, settings, books["train"], False)
    assert prior.method == "no_context"
    cascade = documents.train_document_run(os.path.join(output, "runs", "c3-seed0"), "c3", 0, settings,
                                           books["train"], 6, progress=False)  # finished: loaded, not trained
    windows, _ = documents.evaluation_windows(books["dev"], books["train"], settings, settings["eval_windows"])
    from c3.eval.documents import document_measures
    from c3.eval.surprisal import prior_surprisal

    again = document_measures(cascade, windows, settings["chunk_tokens"], settings["continuation"],
                              prior=lambda rows: prior_surprisal(prior, rows))
    assert again["by_chunk_index"]["supplied_bits"] == run["by_chunk_index"]["supplied_bits"]
    own = document_measures(cascade, windows, settings["chunk_tokens"], settings["continuation"])
    assert own["by_chunk_index"]["supplied_bits"] != run["by_chunk_index"]["supplied_bits"]

    def must_not_train(*args, **kwargs):
        raise AssertionError("a measured run trained again")

    monkeypatch.setattr(documents, "train_document_run", must_not_train)
    again = documents.run_documents(output, size="tiny", progress=False)
    assert again["runs"]["c3-seed0"]["continuation_bits_per_byte"] == run["continuation_bits_per_byte"]
    with pytest.raises(c3.ConfigError, match="other settings"):
        documents.run_documents(output, size="tiny", steps=7, progress=False)
    with pytest.raises(c3.C3ValueError, match="unknown method"):
        documents.run_documents(str(tmp_path / "other"), methods=("gist",), size="tiny")


def test_text_baselines_read_the_last_k_n_bytes_or_the_whole_window(tmp_path):
    settings = documents.SIZES["tiny"]  # 16-byte chunks, N = 4
    context = np.arange(40, dtype=np.int32)  # 3 chunks, the last one of 8 bytes
    np.testing.assert_array_equal(documents.kept_text("truncate_window", settings, context), context[-12:])
    np.testing.assert_array_equal(documents.kept_text("full_window", settings, context), context)
    results = documents.run_documents(str(tmp_path / "text"), methods=("truncate_window", "full_window"),
                                      size="tiny", progress=False)
    books = documents.book_splits()
    windows, _ = documents.evaluation_windows(books["dev"], books["train"], results["settings"], 3)
    for method in ("truncate_window", "full_window"):
        run = results["runs"][f"{method}-seed0"]
        cascade = documents.train_document_run(str(tmp_path / "text" / "runs" / f"{method}-seed0"), method, 0,
                                               results["settings"], books["train"], 6, progress=False)
        window = windows[1]
        kept = documents.kept_text(method, results["settings"], window[:-8])
        latents, mask = cascade.encode([kept])
        assert latents.shape[1] == len(kept)  # the block is the kept text itself
        scores = cascade.score(latents, [window[-8:]], latent_mask=mask, task="continue")
        bits = -scores["log_probability"][0].astype(np.float64).sum() / np.log(2)
        assert abs(run["per_document"][1]["continuation_bits"] - bits) < 1e-6
    assert not os.path.exists(str(tmp_path / "text" / "runs" / "prior-seed0"))  # text baselines need no prior
    with pytest.raises(c3.C3ValueError, match="full_window reads contexts of at most 4096 bytes"):
        documents.run_documents(str(tmp_path / "big"), methods=("full_window",), size="small")


def test_an_interrupted_run_resumes_to_the_same_parameters(tmp_path):
    settings = dict(documents.SIZES["tiny"])  # checkpoints every 3 steps
    books = documents.book_splits()["train"][:3]
    whole = documents.train_document_run(str(tmp_path / "whole"), "c3", 0, settings, books, 6, progress=False)

    def interrupt(step):
        if step == 4:
            raise KeyboardInterrupt

    broken = str(tmp_path / "broken")
    with pytest.raises(KeyboardInterrupt):
        documents.train_document_run(broken, "c3", 0, settings, books, 6, progress=False, on_step=interrupt)
    assert not os.path.exists(os.path.join(broken, "trained.json"))
    resumed = documents.train_document_run(broken, "c3", 0, settings, books, 6, progress=False)  # from step 3
    for part in ("encoder", "decoder"):
        ours, theirs = getattr(whole.model, part).parameters(), getattr(resumed.model, part).parameters()
        for name, value in ours.items():
            np.testing.assert_array_equal(value, theirs[name], err_msg=f"{part} {name}")
    trained = json.load(open(os.path.join(broken, "trained.json")))
    assert trained["steps"] == 6 and len(trained["log"]) == 6


def test_cli_documents_tiny(tmp_path):
    result = subprocess.run([sys.executable, "-m", "c3.cli", "documents", "--output", str(tmp_path / "d"), "--size",
                             "tiny", "--methods", "c3", "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed["continuation_bits_per_byte"]) == {"c3-seed0"}


@pytest.mark.parametrize("size", ["small", "tiny"])
def test_text_baselines_take_their_longest_block_at_every_size(size):
    """The kept text at max_chunks chunks fits the baseline's cascade (its context limit and its decoder), so a
    step at the longest windows trains."""
    settings = documents.SIZES[size]
    cascade = documents.build_document_cascade("truncate_window", settings, 0)
    context = np.full(settings["max_chunks"] * settings["chunk_tokens"], 97, np.int32)
    kept = documents.kept_text("truncate_window", settings, context)
    assert len(kept) == settings["max_chunks"] * settings["latents"] <= cascade.max_context_tokens
    group = cascade.document_group([[kept]], [np.full(settings["continuation"], 98, np.int32)], ["continue"],
                                   add_stop=False)
    assert np.isfinite(cascade.model.loss(*group))


def test_the_report_states_provenance_intervals_and_positions(tmp_path):
    from scipy import stats

    settings = documents.SIZES["tiny"]
    position = dict(teacher_forced=[0.9, 0.8, 0.7, 0.6], strict=[0.5, None, 0.4, 0.3], aligned=[0.6] * 4,
                    supplied_bits=[1.0, 2.0, 3.0, 4.0], reconstruction_bits=[1.0] * 4, chunks=[3] * 4,
                    index="distance from the end")
    runs = {f"c3-seed{seed}": dict(continuation_bits_per_byte=bits, by_distance_from_end=position,
                                   by_chunk_index=position, train_seconds=1800.0)
            for seed, bits in ((0, 2.0), (1, 2.5))}
    runs.update({f"truncate_window-seed{seed}": dict(continuation_bits_per_byte=3.0, train_seconds=900.0)
                 for seed in (0, 1)})
    results = dict(plan=dict(methods=["c3", "truncate_window"], seeds=[0, 1], size="tiny", steps=6, split="test"),
                   settings=settings, corpus="the King James Version", windows=3, window_bytes=72,
                   leaked_share=[0.0, 0.25, 0.5], runs=runs, prior_seconds=1800.0,
                   provenance=dict(command="c3 documents --size tiny", date="2026-12-07 12:00 UTC", cpu="a CPU",
                                   cores=2, threads=1, build="avx512", version="0.0"))
    documents.write_documents_report(str(tmp_path), results)
    report = (tmp_path / "report.md").read_text()
    half = stats.t.ppf(0.975, 1) * np.std([2.0, 2.5], ddof=1) / np.sqrt(2)
    assert f"| c3 | 2.250 [{2.25 - half:.3f}, {2.25 + half:.3f}] |" in report
    assert "| truncate_window | 3.000 [3.000, 3.000] |" in report
    assert "`c3 documents --size tiny`" in report and "**Hours of training:** 2.00 in all" in report
    assert "mean 0.250, largest 0.500" in report
    assert "| c3 | 0 | 0.900 | 0.500 | 0.600 | 1.000 |" in report and "| c3 | 1 | 0.800 | - | 0.600 | 2.000 |" in report
    assert "[c3-seed0](positions-c3-seed0.png)" in report and "truncate_window-seed0](" not in report
