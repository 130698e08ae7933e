"""c3 sweep in its tiny configuration: the whole pipeline writes its report; an interrupted run, resumed, ends
bit-identical to an uninterrupted one; finished runs are skipped; other settings in the same directory are refused;
the CLI follows its conventions."""
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import c3
from c3 import _core
from c3.experiments import batches, demo, heldout, recipe, runs, sweep

TINY = dict(ratios=(2, 4), seeds=(0,), size="tiny", progress=False)


def checkpoint_tensors(output, method, seed=0):
    return _core.read_safetensors(os.path.join(output, "runs", f"{method}-seed{seed}", "checkpoint.safetensors"))


def test_tiny_sweep_writes_its_report(tmp_path):
    output = str(tmp_path / "sweep")
    results = sweep.run_sweep(output, methods=("c3", "mean_pool", "truncate", "no_context", "full_context"), **TINY)
    for name in ("results.json", "report.md", "token_accuracy_vs_ratio.png", "teacher_forced_accuracy_vs_ratio.png",
                 "continuation_bits_per_byte_vs_ratio.png", "learning_curves.png",
                 "decay_c3.png", "heatmap_mean_pool.png"):
        assert os.path.getsize(os.path.join(output, name)) > 0, name
    assert os.path.getsize(os.path.join(output, "decay_c3.png")) < 300_000
    with open(os.path.join(output, "results.json")) as handle:
        written = json.load(handle)
    run = written["runs"]["c3-seed0"]
    for domain in ("in_domain", "out_of_domain"):
        for ratio in ("2", "4"):
            metrics = run[domain][ratio]
            assert metrics["passages"] > 0 and metrics["context_tokens"] == int(ratio) * 4
            assert 0 <= metrics["token_accuracy"] <= 1 and metrics["continuation_bits_per_byte"] > 0
            assert set(metrics["curves"]) == {"teacher_forced", "strict_greedy", "aligned_greedy"}
            # Every context token is binned: the prior's prompt gives even the first token a surprisal.
            assert np.asarray(metrics["teacher_errors"]["count"]).sum() == metrics["passages"] * int(ratio) * 4
    report = open(os.path.join(output, "report.md")).read()
    assert "| mean_pool |" in report and "Position decay or content difficulty" in report
    assert "Python Software Foundation License" in report
    assert results["summary"]["in_domain"]["token_accuracy"]["c3"]["2"][0] is not None


def test_results_record_the_steps_and_passages_the_runs_used(tmp_path):
    """Options that replace the size's defaults show in results.json's settings as well as its plan."""
    results = sweep.run_sweep(str(tmp_path / "sweep"), methods=("no_context",), ratios=(2,), seeds=(0,), size="tiny",
                              steps=3, eval_passages=4, progress=False)
    assert recipe.SIZES["tiny"]["steps"] != 3 and recipe.SIZES["tiny"]["eval_passages"] != 4
    assert results["settings"]["steps"] == results["plan"]["steps"] == 3
    assert results["settings"]["eval_passages"] == results["plan"]["eval_passages"] == 4
    assert results["runs"]["no_context-seed0"]["training"]["steps"] == 3


def test_interrupted_sweep_resumes_bit_identical_and_skips_finished_runs(tmp_path):
    whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
    sweep.run_sweep(whole, methods=("c3",), steps=7, eval_passages=2, **TINY)

    def interrupt(method, seed, step):
        if step == 5:  # after the checkpoint at step 3: steps 4 and 5 are lost and redone
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(broken, methods=("c3",), steps=7, eval_passages=2, on_step=interrupt, **TINY)
    partial = checkpoint_tensors(broken, "c3")
    assert not os.path.exists(os.path.join(broken, "runs", "c3-seed0", "trained.json"))
    sweep.run_sweep(broken, methods=("c3",), steps=7, eval_passages=2, **TINY)
    expected, resumed = checkpoint_tensors(whole, "c3"), checkpoint_tensors(broken, "c3")
    assert sorted(expected) == sorted(resumed)
    assert any((partial[name] != resumed[name]).any() for name in resumed)  # the resumed run did train
    for name in expected:
        np.testing.assert_array_equal(expected[name], resumed[name], err_msg=name)
    # A finished sweep is not trained or evaluated again.
    path = os.path.join(broken, "runs", "c3-seed0", "checkpoint.safetensors")
    before = os.stat(path).st_mtime_ns

    def must_not_train(method, seed, step):
        raise AssertionError("a finished run was trained again")

    sweep.run_sweep(broken, methods=("c3",), steps=7, eval_passages=2, on_step=must_not_train, **TINY)
    assert os.stat(path).st_mtime_ns == before


def test_fixed_shares_resume_bit_identical_on_another_thread_count(tmp_path):
    """With fixed data-parallel shares a run's parameters do not depend on the thread count: a run interrupted on
    one thread and resumed on two ends bit-identical to one trained on two throughout, and the plan records the
    shares (a sweep with other shares is refused)."""
    whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
    threads = c3.num_threads()

    def interrupt(method, seed, step):
        if step == 5:
            raise KeyboardInterrupt

    try:
        c3.set_num_threads(2)
        sweep.run_sweep(whole, methods=("c3",), steps=7, eval_passages=2, shares=2, **TINY)
        c3.set_num_threads(1)
        with pytest.raises(KeyboardInterrupt):
            sweep.run_sweep(broken, methods=("c3",), steps=7, eval_passages=2, shares=2, on_step=interrupt, **TINY)
        c3.set_num_threads(2)
        sweep.run_sweep(broken, methods=("c3",), steps=7, eval_passages=2, shares=2, **TINY)
    finally:
        c3.set_num_threads(threads)
    expected, resumed = checkpoint_tensors(whole, "c3"), checkpoint_tensors(broken, "c3")
    assert sorted(expected) == sorted(resumed)
    for name in expected:
        np.testing.assert_array_equal(expected[name], resumed[name], err_msg=name)
    with open(os.path.join(whole, "sweep.json")) as handle:
        plan = json.load(handle)
    assert plan["shares"] == 2 and "balance" not in plan  # the default balance is not recorded (older plans resume)
    with pytest.raises(c3.ConfigError, match="shares"):
        sweep.run_sweep(whole, methods=("c3",), steps=7, eval_passages=2, shares=3, **TINY)
    for bad in (-1, recipe.MAX_SHARES + 1):
        with pytest.raises(c3.C3ValueError, match="shares"):
            sweep.run_sweep(str(tmp_path / "other"), methods=("c3",), shares=bad, **TINY)
    assert not os.path.exists(tmp_path / "other")  # refused before anything is written
    # The bound is the trainer's own.
    cascade = recipe.build_cascade("c3", recipe.SIZES["tiny"], 4, 0)
    cascade.trainer(learning_rate=1e-3, data_parallel_shares=recipe.MAX_SHARES)
    with pytest.raises(c3.C3ValueError):
        cascade.trainer(learning_rate=1e-3, data_parallel_shares=recipe.MAX_SHARES + 1)


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    output = str(tmp_path / "sweep")
    os.makedirs(output)
    with open(os.path.join(output, "sweep.json"), "w") as handle:
        json.dump(dict(methods=["c3"], ratios=[2, 4], seeds=[0], size="tiny", steps=99, minutes=None,
                       eval_passages=6, continuation_weight=0.0), handle)
    with pytest.raises(c3.ConfigError, match="steps"):
        sweep.run_sweep(output, methods=("c3",), **TINY)
    with pytest.raises(c3.C3ValueError, match="unknown 'gist'"):
        sweep.run_sweep(str(tmp_path / "other"), methods=("gist",), **TINY)


def test_a_continuation_task_sweep_records_it_and_scores_with_it(tmp_path):
    output = str(tmp_path / "task")
    results = sweep.run_sweep(output, methods=("c3",), steps=4, eval_passages=2, continuation_weight=0.5,
                              continuation_task=True, **TINY)
    assert results["plan"]["continuation_task"] is True and results["settings"]["continuation_task"] is True
    with pytest.raises(c3.ConfigError, match="continuation_task"):
        sweep.run_sweep(output, methods=("c3",), steps=4, eval_passages=2, continuation_weight=0.5, **TINY)
    # evaluate_ratio scores continuations with the task when the settings say so, and only then.
    settings = results["settings"]
    cascade = runs.load_run(os.path.join(output, "runs", "c3-seed0"), "c3", 0, settings, 4)
    rng = np.random.default_rng(0)
    passages = [rng.integers(97, 123, 2 * settings["latents"] + settings["continuation"]).astype(np.int32)
                for _ in range(2)]
    prior = lambda rows: [np.random.default_rng(len(row)).uniform(0, 8, len(row)) for row in rows]  # noqa: E731
    asked = runs.evaluate_ratio(cascade, passages, 2, settings, prior)["continuation_bits_per_byte"]
    shared = runs.evaluate_ratio(cascade, passages, 2, dict(settings, continuation_task=False),
                                 prior)["continuation_bits_per_byte"]
    contexts = [p[:2 * settings["latents"]] for p in passages]
    follow = [p[2 * settings["latents"]:] for p in passages]
    scores = cascade.score(cascade.compress(contexts), follow, task="continue")
    expected = -np.sum(scores["log_probability"][scores["valid"]], dtype=np.float64) / math.log(2) / sum(map(len, follow))
    assert abs(asked - expected) < 1e-6 * expected and abs(shared - expected) > 1e-4


def test_cli_sweep_help_and_one_line_errors(tmp_path):
    def run(*arguments):
        return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    help_text = run("sweep", "--help").stdout
    for option in ("--methods", "--ratios", "--seeds", "--steps", "--minutes", "--eval-passages",
                   "--continuation-weight", "--size", "--output", "--jobs", "--batch-tokens", "--curriculum"):
        assert option in help_text
    result = run("sweep", "--output", "out", "--methods", "c3,gist", "--size", "tiny")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["c3 sweep: error: methods: unknown 'gist' (known: c3, mean_pool, "
                                                  "mean_pool_hidden, hierarchical, truncate, truncate_last, "
                                                  "no_context, full_context)"]
    result = run("sweep", "--continuation-weight", "2")
    assert result.returncode == 2 and "between 0 and 1" in result.stderr
    result = run("sweep", "--output", "out", "--size", "tiny", "--ratios", "2,4", "--balance", "1:2:3")
    assert result.returncode == 2 and result.stdout == "" and "ratio weights" in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_curriculum_unlocks_ratios_in_order_and_balances_tokens():
    """Ratio k of R is drawn from step k / R * curriculum_steps on, never before; every batch holds about
    batch_tokens context tokens (at least one passage); curriculum 0 draws every ratio from the first step."""
    regions = [np.arange(5000, dtype=np.int32) % 251]
    ratios, latents, curriculum_steps = (2, 4, 8, 16), 4, 40
    data = batches.MixedBatches(regions, ratios[::-1], latents, batch_tokens=64, continuation=3, seed=0,
                              curriculum_steps=curriculum_steps)
    seen = {}
    for step in range(60):
        contexts, continuations = data.draw(step)
        ratio = contexts.shape[1] // latents
        unlocked = [r for k, r in enumerate(ratios) if step >= k * curriculum_steps / len(ratios)]
        assert ratio in unlocked, (step, ratio)
        assert contexts.shape == (max(1, 64 // (ratio * latents)), ratio * latents)
        assert continuations.shape == (contexts.shape[0], 3)
        seen.setdefault(ratio, step)
    assert sorted(seen) == list(ratios)  # each ratio is drawn once unlocked
    assert seen[2] == 0 and seen[16] >= 30
    plain = batches.MixedBatches(regions, ratios, latents, batch_tokens=64, continuation=3, seed=0)
    assert plain.unlocked(0) == list(ratios)
    assert {plain.draw(0)[0].shape[1] // latents for _ in range(40)} == set(ratios)


def test_passage_balance_draws_each_ratio_in_proportion_to_its_length():
    """balance="passages": once all are unlocked, ratio r is drawn with probability r / sum(ratios), so every ratio
    trains on about the same number of passages; during the curriculum only unlocked ratios are drawn, in the same
    proportion among themselves. Counted over 7,000 seeded draws (a binomial sd of at most 0.006 per share)."""
    regions = [np.arange(5000, dtype=np.int32) % 251]
    ratios, latents = (2, 4, 8), 4
    data = batches.MixedBatches(regions, ratios, latents, batch_tokens=64, continuation=0, seed=3,
                              curriculum_steps=30, balance="passages")
    early = [data.draw(step)[0].shape[1] // latents for step in range(10, 20)]  # 2x and 4x unlocked
    assert set(early) <= {2, 4}
    draws = [data.draw(1000)[0] for _ in range(7000)]
    counts = {r: sum(d.shape[1] == r * latents for d in draws) for r in ratios}
    for r in ratios:
        assert abs(counts[r] / 7000 - r / 14) < 0.025, counts
    passages = {r: sum(d.shape[0] for d in draws if d.shape[1] == r * latents) for r in ratios}
    assert max(passages.values()) < 1.1 * min(passages.values()), passages
    uniform = batches.MixedBatches(regions, ratios, latents, batch_tokens=64, continuation=0, seed=3)
    counts = {r: sum(uniform.draw(1000)[0].shape[1] == r * latents for _ in range(3000)) for r in ratios}
    assert all(abs(c / 3000 - 1 / 3) < 0.03 for c in counts.values()), counts
    with pytest.raises(c3.C3ValueError, match="balance"):
        batches.MixedBatches(regions, ratios, latents, batch_tokens=64, continuation=0, seed=3, balance="tokens")


@pytest.mark.parametrize("balance, shares", [
    # longest: 1 : 2 while 2x and 4x are unlocked, 1 : 2 : 8 once 8x is.
    ("longest", ({2: 1 / 3, 4: 2 / 3, 8: 0.0}, {2: 1 / 11, 4: 2 / 11, 8: 8 / 11})),
    # ratio weights 1:3:4: 1 : 3 among 2x and 4x, then 1 : 3 : 4.
    ("1:3:4", ({2: 1 / 4, 4: 3 / 4, 8: 0.0}, {2: 1 / 8, 4: 3 / 8, 8: 4 / 8})),
])
def test_weighted_balances_draw_each_unlocked_ratio_in_proportion(balance, shares):
    """Shares of each ratio during the curriculum (step 15, 8x locked) and after it (6,000 seeded draws each, a
    binomial sd of at most 0.007 per share)."""
    regions = [np.arange(5000, dtype=np.int32) % 251]
    ratios, latents = (2, 4, 8), 4
    data = batches.MixedBatches(regions, ratios, latents, batch_tokens=64, continuation=0, seed=5,
                              curriculum_steps=30, balance=balance)
    for step, expected in zip((15, 1000), shares):
        draws = [data.draw(step)[0].shape[1] // latents for _ in range(6000)]
        for r in ratios:
            assert abs(draws.count(r) / 6000 - expected[r]) < 0.03, (step, r, draws.count(r))


def test_ratio_weights_must_give_one_positive_number_per_ratio():
    regions = [np.arange(5000, dtype=np.int32) % 251]
    for bad in ("1:2", "1:2:3:4", "1:0:2", "1:-1:2", "1:a:2", "1:nan:2", "1:inf:2", "1::2", ""):
        with pytest.raises(c3.C3ValueError, match="ratio weights"):
            batches.MixedBatches(regions, (2, 4, 8), 4, batch_tokens=64, continuation=0, seed=7, balance=bad)
    assert batches.check_balance("0.5:2.5:1", (8, 2, 4)) == "0.5:2.5:1"


def test_tracked_accuracy_is_the_evaluation_at_the_last_step_and_does_not_change_training(tmp_path, monkeypatch):
    """A run scores its held-out passages at evenly spread steps. With as many tracking passages as evaluation
    passages, the last score of each ratio is the evaluation's teacher-forced accuracy of the same model; a run
    that does not track trains the same parameters bit for bit; an interrupted run resumes its track."""
    options = dict(methods=("c3",), steps=7, eval_passages=2, **TINY)
    whole = str(tmp_path / "whole")
    results = sweep.run_sweep(whole, **options)
    training = results["runs"]["c3-seed0"]["training"]
    assert training["track_ratios"] == [2, 4]
    assert [step for step, _ in training["track"]] == sorted(runs.track_steps(recipe.SIZES["tiny"], 7)) == [4, 7]
    for index, ratio in enumerate((2, 4)):
        expected = results["runs"]["c3-seed0"]["in_domain"][str(ratio)]["teacher_forced_accuracy"]
        assert training["track"][-1][1][index] == pytest.approx(expected, abs=1e-5)

    def interrupt(method, seed, step):
        if step == 6:  # after the checkpoint at step 6, with the score of step 4 in it
            raise KeyboardInterrupt

    broken = str(tmp_path / "broken")
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(broken, on_step=interrupt, **options)
    resumed = sweep.run_sweep(broken, **options)
    assert resumed["runs"]["c3-seed0"]["training"]["track"] == training["track"]
    monkeypatch.setitem(recipe.SIZES, "tiny", dict(recipe.SIZES["tiny"], track_points=0))
    untracked = sweep.run_sweep(str(tmp_path / "untracked"), **options)
    assert untracked["runs"]["c3-seed0"]["training"]["track"] == []
    expected, plain = checkpoint_tensors(whole, "c3"), checkpoint_tensors(tmp_path / "untracked", "c3")
    for name in expected:
        np.testing.assert_array_equal(expected[name], plain[name], err_msg=name)
    report = open(os.path.join(whole, "report.md")).read()
    assert "## Converged?" in report and "| c3 | 0 | 4 → 7 |" in report
    assert os.path.getsize(os.path.join(whole, "held_out_during_training.png")) > 0


def test_small_size_trains_the_demo_shape(tmp_path):
    """--size small is the demo's model shape (3 layers, rotary base 10^3), with the sweep's evaluation."""
    from c3.experiments import demo
    assert recipe.SIZES["small"]["model"] == demo.SIZES["default"]["model"]
    results = sweep.run_sweep(str(tmp_path / "sweep"), methods=("c3",), ratios=(2,), seeds=(0,), size="small",
                              steps=1, eval_passages=2, progress=False)
    assert results["settings"]["model"]["rope_theta"] == 1000.0 and results["settings"]["model"]["num_layers"] == 3
    assert results["runs"]["c3-seed0"]["in_domain"]["2"]["passages"] == 2


def test_sweep_trains_with_passage_balance_and_records_it(tmp_path):
    output = str(tmp_path / "sweep")
    results = sweep.run_sweep(output, methods=("c3",), steps=4, eval_passages=2, balance="passages", **TINY)
    with open(os.path.join(output, "sweep.json")) as handle:
        assert json.load(handle)["balance"] == "passages"
    assert results["settings"]["balance"] == "passages"
    with pytest.raises(c3.ConfigError, match="balance"):
        sweep.run_sweep(output, methods=("c3",), steps=4, eval_passages=2, **TINY)


def test_check_fraction_keeps_the_unit_interval_and_refuses_the_rest():
    assert [batches.check_fraction("weight", v) for v in (0, 0.25, 1, "0.5")] == [0.0, 0.25, 1.0, 0.5]
    for value in (-1e-9, 1.0000001, float("nan"), float("inf"), "half", None):
        with pytest.raises(c3.C3ValueError, match="weight must be in"):
            batches.check_fraction("weight", value)


def test_sweep_refuses_a_curriculum_or_batch_outside_its_range(tmp_path):
    for curriculum in (1.5, -0.1, float("nan")):
        with pytest.raises(c3.C3ValueError, match="curriculum"):
            sweep.run_sweep(str(tmp_path / "sweep"), methods=("c3",), curriculum=curriculum, **TINY)
    with pytest.raises(c3.C3ValueError, match="continuation_weight"):
        sweep.run_sweep(str(tmp_path / "sweep"), methods=("c3",), continuation_weight=float("nan"), **TINY)
    with pytest.raises(c3.C3ValueError, match="batch_tokens"):
        sweep.run_sweep(str(tmp_path / "sweep"), methods=("c3",), batch_tokens=0, **TINY)
    with pytest.raises(c3.C3ValueError, match="balance"):
        sweep.run_sweep(str(tmp_path / "sweep"), methods=("c3",), balance="tokens", **TINY)
    assert not os.path.exists(tmp_path / "sweep")


class RecordingPool:
    """A stand-in for multiprocessing's Pool that runs jobs in this process and records how it is shut down."""

    def __init__(self, calls):
        self.calls = calls

    def imap_unordered(self, job, work):
        self.calls.append("imap")
        return map(job, work)

    def close(self):
        self.calls.append("close")

    def terminate(self):
        self.calls.append("terminate")

    def join(self):
        self.calls.append("join")


def test_workers_are_joined_after_the_jobs_and_after_an_error(monkeypatch):
    """_in_workers waits for its worker processes on every path: closed then joined when every job is done,
    terminated then joined when a job fails (the error reaches the caller)."""
    calls = []
    context = types.SimpleNamespace(Pool=lambda processes, **options: RecordingPool(calls))
    monkeypatch.setattr(sweep.multiprocessing, "get_context", lambda method: context)
    done = []
    sweep._in_workers(done.append, [1, 2], 2, "jobs", False)
    assert done == [1, 2] and calls == ["imap", "close", "join"]
    calls.clear()

    def failing(item):
        raise c3.C3ValueError(f"job {item} failed")

    with pytest.raises(c3.C3ValueError, match="job 1 failed"):
        sweep._in_workers(failing, [1, 2], 2, "jobs", False)
    assert calls == ["imap", "terminate", "join"]


def test_parallel_sweep_trains_and_evaluates_what_the_serial_one_does(tmp_path, monkeypatch):
    """jobs=2 trains and evaluates each run in its own process (this process does neither: its train_run and
    evaluate_ratio raise). At one thread per run the checkpoints are bit-identical to a serial sweep's at one
    thread, and the evaluations equal number for number."""
    threads = c3.num_threads()
    try:
        c3.set_num_threads(1)
        serial = sweep.run_sweep(str(tmp_path / "serial"), methods=("c3", "no_context"), **TINY)
        c3.set_num_threads(2)  # two workers get one thread each

        def not_here(*args, **kwargs):
            raise AssertionError("run in the parent process")
        monkeypatch.setattr(runs, "evaluate_ratio", not_here)
        monkeypatch.setattr(sweep, "train_run", not_here)
        parallel = sweep.run_sweep(str(tmp_path / "parallel"), methods=("c3", "no_context"), jobs=2, **TINY)
    finally:
        c3.set_num_threads(threads)
    for run in ("c3-seed0", "no_context-seed0"):
        assert parallel["runs"][run]["training"]["threads"] == 1
        for domain in ("in_domain", "out_of_domain"):
            assert parallel["runs"][run][domain] == serial["runs"][run][domain], (run, domain)
    for method in ("c3", "no_context"):
        one, two = checkpoint_tensors(tmp_path / "serial", method), checkpoint_tensors(tmp_path / "parallel", method)
        assert sorted(one) == sorted(two)
        for name in one:
            np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    assert os.path.exists(tmp_path / "parallel" / "report.md")
    with pytest.raises(c3.C3ValueError, match="jobs"):
        sweep.run_sweep(str(tmp_path / "other"), methods=("c3",), jobs=0, **TINY)
    with pytest.raises(c3.C3ValueError, match="on_step"):
        sweep.run_sweep(str(tmp_path / "other"), methods=("c3",), jobs=2, on_step=lambda *a: None, **TINY)


def test_evaluation_passages_skip_windows_seen_in_training():
    """Against a brute-force scan: every kept window's first `unseen_length` tokens occur in no training region,
    the kept windows are the unseen candidates evenly spread, and without training text nothing is skipped."""
    rng = np.random.default_rng(3)
    phrase = rng.integers(1, 200, size=20).astype(np.int32)  # repeated in both, as the corpus repeats its grammar
    held_out = [np.concatenate([rng.integers(1, 200, size=30), phrase, rng.integers(1, 200, size=40), phrase,
                                rng.integers(1, 200, size=20)]).astype(np.int32)]
    train = [np.concatenate([rng.integers(1, 200, size=50), phrase, rng.integers(1, 200, size=50)]).astype(np.int32)]
    plain = heldout.evaluation_passages(held_out, 16, 1000)
    assert len(plain) == len(held_out[0]) - 16 + 1

    def seen(window, length):
        part = list(window[:length])
        return any(list(region[i:i + length]) == part for region in train for i in range(len(region) - length + 1))
    for unseen_length in (None, 6):
        kept = heldout.evaluation_passages(held_out, 16, 1000, unseen_in=train, unseen_length=unseen_length)
        expected = [w for w in plain if not seen(w, unseen_length or 16)]
        assert 0 < len(expected) < len(plain)
        assert [w.tolist() for w in kept] == [w.tolist() for w in expected]
    few = heldout.evaluation_passages(held_out, 16, 5, unseen_in=train, unseen_length=6)
    assert len(few) == 5 and not any(seen(w, 6) for w in few)


def test_escape_probe_prints_one_json_line_per_evaluation(capsys):
    """scripts/escape_probe.py, two steps: a line per evaluation, with accuracies that are fractions."""
    escape_probe = _script("escape_probe")
    assert escape_probe.main(["--ratios", "2", "--evaluate", "2", "--steps", "2", "--every", "1",
                              "--curriculum", "0.5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert all(0.0 <= row["teacher_forced"]["2x"] <= 1.0 and math.isfinite(row["loss"]) for row in rows)


def _script(name):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_position_dips_are_found_where_planted_with_their_spacing():
    """scripts/position_accuracy.py: dips planted every 19 positions (two positions wide, so only the first
    counts), plus shallow noise, are found where planted; the spacing fit is exact; a shallow dip is not a dip."""
    position_accuracy = _script("position_accuracy")
    accuracy = 0.95 + 0.01 * np.sin(np.arange(128) * 1.7)
    planted = [13, 32, 51, 70, 89, 108]
    for p in planted:
        accuracy[p] = accuracy[p + 1] = 0.6
    accuracy[120] -= 0.03  # shallower than the depth
    found, spacing = position_accuracy.dips(accuracy, depth=0.05)
    assert found == planted
    assert abs(spacing - 19.0) < 1e-9
    assert position_accuracy.dips(np.full(64, 0.9))[0] == []


def test_position_accuracy_refuses_a_directory_that_is_not_a_sweep_run(tmp_path):
    position_accuracy = _script("position_accuracy")
    with pytest.raises(c3.C3ValueError, match="sweep run"):
        position_accuracy.main(["--run", str(tmp_path / "not-a-run")])
    for option, value in (("--curriculum", "1.5"), ("--min-lr-ratio", "-0.1")):
        with pytest.raises(c3.C3ValueError, match=option):
            position_accuracy.main(["--train", "1", option, value])
        with pytest.raises(c3.C3ValueError, match=f"{option} applies to --train"):
            position_accuracy.main(["--run", str(tmp_path / "c3-seed0"), option, "0.5"])


def test_position_accuracy_greedy_score_is_a_position_by_position_count():
    """--greedy: the strict greedy accuracy of a (barely trained) cascade equals a plain count of the positions where
    its reconstruction, decoded one passage at a time, repeats the passage."""
    position_accuracy = _script("position_accuracy")
    shape = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
    config = c3.cascade.scratch_model_config(shape, 16, 4)
    cascade = c3.Cascade.new(config, config, 4, tokenizer=c3.byte_tokenizer(), seed=3)
    train_regions, held_out_regions = heldout.default_regions()
    passages = heldout.evaluation_passages(held_out_regions, 16, 6)
    trainer = cascade.trainer(learning_rate=1e-2)
    for _ in range(40):  # partly memorised, so the count is neither 0 nor 1
        cascade.train_step(trainer, np.array(passages))
    counted = []
    for passage in passages:
        hidden, mask = cascade.encode([passage])
        output = list(cascade.reconstruct(hidden, source_tokens=[16], return_ids=True, latent_mask=mask)[0])
        counted.append(sum(1 for i in range(16) if i < len(output) and output[i] == passage[i]) / 16)
    assert 0 < np.mean(counted) < 1
    assert position_accuracy.strict_greedy_accuracy(cascade, passages, 16) == pytest.approx(np.mean(counted))


def test_position_accuracy_layers_reach_encoder_and_decoder(tmp_path):
    """--layers sets the depth of a --train cascade's encoder and decoder (the shape keeps its other sizes); fewer
    than one layer is a typed error before any training."""
    position_accuracy = _script("position_accuracy")
    train_regions, _ = heldout.default_regions()
    settings = demo.SIZES["tiny"]
    cascade = position_accuracy.trained_cascade(1, 10000.0, 0, settings, train_regions, layers=2)
    for model in (cascade.model.encoder, cascade.model.decoder):
        assert model.config["num_layers"] == 2
        assert model.config["hidden_size"] == settings["model"]["hidden_size"]
    default = position_accuracy.trained_cascade(1, 10000.0, 0, settings, train_regions)
    assert default.model.decoder.config["num_layers"] == settings["model"]["num_layers"]
    with pytest.raises(c3.C3ValueError, match="--layers"):
        position_accuracy.main(["--train", "1", "--recipe", "demo", "--layers", "0"])


def test_position_accuracy_passes_its_training_options_on_and_refuses_them_for_a_run(monkeypatch):
    """main() hands --train, --rope-theta, --seed, --layers, --learning-rate, --shares and --balance to the
    training (None: the recipe's own), trains the demo's settings by default under --recipe demo, and refuses those
    options with --run, whose cascade has its own shape and seed, instead of ignoring them."""
    position_accuracy = _script("position_accuracy")
    calls = []

    class Stop(Exception):
        pass

    def record(steps, rope_theta, seed, settings, train_regions, layers=None):
        calls.append((steps, rope_theta, seed, layers, settings))
        raise Stop  # no training, no evaluation

    monkeypatch.setattr(position_accuracy, "trained_cascade", record)
    with pytest.raises(Stop):
        position_accuracy.main(["--train", "7", "--recipe", "demo", "--layers", "2", "--rope-theta", "500",
                                "--seed", "3", "--learning-rate", "3e-3", "--shares", "0", "--balance", "bytes"])
    with pytest.raises(Stop):
        position_accuracy.main(["--train", "5", "--recipe", "demo"])
    assert calls[0][:4] == (7, 500.0, 3, 2)
    assert (calls[0][4]["learning_rate"], calls[0][4]["shares"], calls[0][4]["balance"]) == (3e-3, 0, "bytes")
    assert calls[1][:4] == (5, None, 0, None)
    assert calls[1][4] == demo.SIZES["default"]
    for options in (["--learning-rate", "0"], ["--shares", "-1"]):
        with pytest.raises(c3.C3ValueError, match="must be"):
            position_accuracy.main(["--train", "5"] + options)
    for options in (["--layers", "2"], ["--rope-theta", "1000"], ["--seed", "1"], ["--recipe", "demo"],
                    ["--learning-rate", "3e-3"], ["--shares", "2"], ["--balance", "bytes"]):
        with pytest.raises(c3.C3ValueError, match="applies to --train"):
            position_accuracy.main(["--run", "runs/c3-seed0"] + options)
    assert len(calls) == 2


def test_scratch_models_take_the_rotary_base_from_the_shape():
    """The shape may name the rotary base (demo probes vary it); without it, 10^4. The base reaches the model: the
    same weights give other logits under another base, and transformers' Llama with that base gives c3's."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    shape = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
    assert c3.cascade.scratch_model_config(shape, 16, 4)["rope_theta"] == 10000.0
    config = c3.cascade.scratch_model_config(dict(shape, rope_theta=1000.0), 16, 4)
    assert config["rope_theta"] == 1000.0
    cascade = c3.Cascade.new(config, config, 4, tokenizer=c3.byte_tokenizer(), seed=0)
    assert cascade.model.decoder.config["rope_theta"] == 1000.0
    # Sharp attention (large query and key weights), so that the rotary base shows in the logits.
    sharp = {name: np.array(value) * (30.0 if "q_proj.weight" in name or "k_proj.weight" in name else 1.0)
             for name, value in cascade.model.decoder.parameters().items()}
    cascade.model.decoder.set_parameters(sharp)
    ids = np.arange(1, 17, dtype=np.int64).reshape(1, 16)
    _, ours = cascade.model.decoder.forward(ids, logits="all")
    reference = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=cascade.model.decoder.config["vocab_size"], hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        rope_parameters=dict(rope_type="default", rope_theta=1000.0),
        tie_word_embeddings=True, max_position_embeddings=config["max_position_embeddings"])).eval()
    parameters = cascade.model.decoder.parameters()
    reference.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in parameters.items()},
                              strict=False)
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    default = c3.cascade.scratch_model_config(shape, 16, 4)
    other = c3.Cascade.new(default, default, 4, tokenizer=c3.byte_tokenizer(), seed=0).model.decoder
    other.set_parameters(sharp)
    assert all(np.array_equal(value, parameters[name]) for name, value in other.parameters().items())
    assert np.abs(other.forward(ids, logits="all")[1] - ours).max() > 1e-3


def test_merge_runs_copies_the_evaluated_runs_the_target_lacks(tmp_path, capsys):
    """scripts/merge_runs.py on recorded runs: the evaluated runs of the source whose seeds the target plans, and only
    those, arrive byte for byte (never a checkpoint); a second merge copies nothing; plans that differ in more than
    the seeds stop it with status 2 before anything is copied."""
    import json
    import shutil

    merge_runs = _script("merge_runs")
    recorded = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "results", "verdict-test")
    plan = json.load(open(os.path.join(recorded, "sweep.json")))
    source, target = tmp_path / "source", tmp_path / "target"
    for folder, seeds in ((source, [3, 4]), (target, [0, 1, 2, 3])):
        (folder / "runs").mkdir(parents=True)
        (folder / "sweep.json").write_text(json.dumps(dict(plan, seeds=seeds)))
    for name in ("c3-seed3", "c3-seed4"):
        shutil.copytree(os.path.join(recorded, "runs", name), source / "runs" / name)
    (source / "runs" / "c3-seed3" / "checkpoint.safetensors").write_bytes(b"not copied")
    merge_runs.main([str(source), str(target)])
    copied = target / "runs" / "c3-seed3"
    assert sorted(os.listdir(copied)) == ["evaluation.json", "trained.json"]
    for file in ("evaluation.json", "trained.json"):
        assert (copied / file).read_bytes() == (source / "runs" / "c3-seed3" / file).read_bytes()
    assert not (target / "runs" / "c3-seed4").exists()  # seed 4 is not in the target's plan
    assert "1 run(s) copied" in capsys.readouterr().out
    merge_runs.main([str(source), str(target)])
    assert "0 run(s) copied" in capsys.readouterr().out
    (source / "sweep.json").write_text(json.dumps(dict(plan, seeds=[3, 4], steps=plan["steps"] + 1)))
    shutil.rmtree(copied)
    with pytest.raises(SystemExit) as stopped:
        merge_runs.main([str(source), str(target)])
    assert stopped.value.code == 2 and "steps" in capsys.readouterr().err
    assert not copied.exists()
