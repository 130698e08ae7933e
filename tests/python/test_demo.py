"""The demo pipeline end to end in its tiny configuration (the command line is in test_cli.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import c3
from c3 import corpus
from c3.experiments import demo, heldout


def test_corpus_split_keeps_held_out_apart():
    items = corpus.passages(64)
    train, held_out = corpus.split(items, seed=0)
    assert len(held_out) > 0 and len(train) > 5 * len(held_out)
    assert not set(train) & set(held_out)
    assert corpus.split(items, seed=0) == (train, held_out)  # seeded
    assert "Python Software Foundation" in corpus.LICENCE


def test_tiny_demo_writes_report(tmp_path):
    """Fixed steps by default; C3, mean pooling and truncation each train one model on the mixed ratios for the
    same steps and are read off every ratio."""
    results = demo.run_demo(str(tmp_path), ratios=(2, 4), size="tiny", progress=False)
    for name in ("report.md", "results.json", "decay_curves.png", "ratio_position_heatmap.png",
                 "precision_vs_ratio.png", "teacher_forced_decay.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    for name in ("decay_curves", "ratio_position_heatmap", "precision_vs_ratio", "teacher_forced_decay",
                 "accuracy_curves", "learning_curves"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name  # vector copy for a paper
    assert not list(tmp_path.glob("*.partial"))
    report = (tmp_path / "report.md").read_text()
    assert "| 2x |" in report and "| 4x |" in report and "Goal" in report and "accuracy_curves.png" in report
    numbers = json.loads((tmp_path / "results.json").read_text())
    assert set(numbers) == {"2", "4"}
    steps = demo.SIZES["tiny"]["steps"]
    for ratio in results.values():
        assert 0.0 <= ratio["token_accuracy"] <= 1.0
        assert len(ratio["decay"]["accuracy"]) == 20
        assert ratio["steps"] == steps
        assert ratio["held_out_passages"] == demo.SIZES["tiny"]["evaluate"]
    baselines = json.loads((tmp_path / "baselines.json").read_text())
    assert set(baselines) == {"mean_pool", "truncate"}
    for method, table in baselines.items():
        assert set(table) == {"2", "4"}
        assert all(m["steps"] == steps and m["method"] == method for m in table.values())
    assert "## C3 against baselines" in report and "| mean_pool |" in report and "| truncate |" in report
    assert "## Training loss by ratio" in report
    for method in ("c3", "mean_pool", "truncate"):
        assert sum(line.startswith(f"| {method} | ") and line.count("|") == 7 for line in report.splitlines()) == 2


def test_loss_by_quarter_is_the_mean_of_each_quarters_steps_at_that_ratio():
    """Against a brute-force mean over a planted log of 10 steps (quarters of 2, 3, 2 and 3 steps); a quarter
    without the ratio's steps is None."""
    log = [(2, 1.0), (4, 9.0), (2, 3.0), (2, 5.0), (4, 7.0), (4, 6.0), (4, 2.0), (2, 0.5), (2, 1.5), (4, 4.0)]
    assert demo.loss_by_quarter(log, 2) == [1.0, 4.0, None, 1.0]
    assert demo.loss_by_quarter(log, 4) == [9.0, 7.0, 4.0, 4.0]
    assert demo.loss_by_quarter(log, 8) == [None] * 4


def test_demo_evaluates_on_text_it_never_trained_on():
    """No held-out passage occurs verbatim in a training region, although the corpus repeats itself (a quarter of
    the held-out blocks' 128-byte windows occur in the training blocks)."""
    train, held_out = heldout.default_regions()
    training_bytes = [bytes(int(b) for b in region) for region in train]
    spread = [bytes(int(b) for b in w) for w in heldout.evaluation_passages(held_out, 128, 128)]
    assert sum(any(w in region for region in training_bytes) for w in spread) >= 16  # the filter has work to do
    texts = demo.held_out_texts(train, held_out, 4, 16, 32)
    assert len(texts) == 32 and all(0 < len(t.encode("utf-8")) <= 64 for t in texts)
    for text in texts:
        assert not any(text.encode("utf-8") in region for region in training_bytes)


def test_demo_refuses_an_unknown_size_or_ratio(tmp_path):
    with pytest.raises(c3.C3ValueError, match="size"):
        demo.run_demo(str(tmp_path), size="huge", progress=False)
    with pytest.raises(c3.C3ValueError, match="ratios"):
        demo.run_demo(str(tmp_path), ratios=(0, 2), size="tiny", progress=False)
    for steps, minutes in ((0, None), (2.5, None), ("8", None), (True, None), (5, 1.0)):
        with pytest.raises(c3.C3ValueError, match="steps"):
            demo.run_demo(str(tmp_path), size="tiny", steps=steps, minutes=minutes, progress=False)
    assert not os.listdir(tmp_path)  # nothing written before the arguments are checked


def test_demo_trains_the_same_cascade_on_any_thread_count(tmp_path):
    """The demo fixes its data-parallel shares, so that a seed trains bit for bit the same cascade on one thread
    as on three; with the trainers' default, where the shares follow the thread count, two and three threads
    differ."""
    train_regions, _ = heldout.default_regions()
    saved = c3.num_threads()

    def trained_bytes(size, threads, name):
        c3.set_num_threads(threads)
        try:
            cascade, log = demo.train("c3", (2, 4), size, 0, 6, train_regions, progress=False)
        finally:
            c3.set_num_threads(saved)
        if size["shares"]:
            assert [r["data_parallel_shares"] for r in log] == [size["shares"]] * 6
        cascade.save(str(tmp_path / name))
        return b"".join(p.read_bytes() for p in sorted((tmp_path / name).rglob("*.safetensors")))

    fixed = demo.SIZES["tiny"]
    assert fixed["shares"] == 2
    assert trained_bytes(fixed, 1, "fixed1") == trained_bytes(fixed, 3, "fixed3")
    per_thread = dict(fixed, shares=0)
    assert trained_bytes(per_thread, 2, "own2") != trained_bytes(per_thread, 3, "own3")


def test_fixed_shares_need_data_parallel_and_have_a_ceiling():
    cascade = c3.experiments.recipe.build_cascade("c3", demo.SIZES["tiny"], 4, 0)
    with pytest.raises(c3.C3ValueError, match="data_parallel_shares"):
        cascade.trainer(data_parallel=False, data_parallel_shares=2)
    with pytest.raises(c3.C3ValueError, match="at most 1024"):
        cascade.trainer(data_parallel_shares=1025)


def test_demo_draws_each_ratio_in_proportion_to_its_length():
    """The default recipe's balance: once every ratio is unlocked, 2x, 4x and 8x are drawn 1 : 2 : 4 (counted over
    1,400 seeded draws), so each ratio trains on about the same number of passages."""
    train_regions, _ = heldout.default_regions()
    size = demo.SIZES["default"]
    batches = demo.mixed_batches(train_regions, (2, 4, 8), size, seed=0, steps=10)  # all unlocked from step 4
    lengths = [next(batches).shape[1] for _ in range(1404)][4:]
    for ratio, share in ((2, 1 / 7), (4, 2 / 7), (8, 4 / 7)):
        assert abs(lengths.count(ratio * size["latents"]) / 1400 - share) < 0.04, (ratio, share)


def test_the_trainer_takes_beta2_from_the_settings():
    """make_trainer passes a size's beta2 on (the demo's default sets one): one step with it gives the parameters
    of a trainer built with that beta2 by hand, and not those of the default 0.999."""
    size = dict(demo.SIZES["tiny"], beta2=0.95)
    train_regions, _ = heldout.default_regions()
    batch = next(demo.mixed_batches(train_regions, (2,), size, seed=0, steps=1))

    def stepped(make):
        cascade = c3.experiments.recipe.build_cascade("c3", size, 2, 0)
        trainer = make(cascade)
        for _ in range(3):
            cascade.train_step(trainer, batch)
        return np.concatenate([np.asarray(v).ravel() for v in cascade.model.bridge_parameters().values()])

    by_settings = stepped(lambda cascade: c3.experiments.recipe.make_trainer(cascade, size, 20))
    by_hand = stepped(lambda cascade: cascade.trainer(learning_rate=size["learning_rate"], warmup_steps=1,
                                                      total_steps=20, min_lr_ratio=0.05, beta2=0.95,
                                                      weight_decay=0.0, max_grad_norm=1.0,
                                                      data_parallel_shares=size["shares"]))
    default_beta2 = stepped(lambda cascade: c3.experiments.recipe.make_trainer(cascade, dict(size, beta2=0.999), 20))
    assert np.array_equal(by_settings, by_hand)
    assert not np.allclose(by_settings, default_beta2)
    # One recipe: the demo's beta2 is the sweep's recorded one, chosen on the dev split.
    assert demo.SIZES["default"]["beta2"] == c3.experiments.recipe.RECIPES["recorded"]["beta2"] == 0.999


def run_c3(*arguments, cwd):
    """`python3 -m c3.cli ...` in a subprocess with this process's environment (the same c3 package and _core)."""
    return subprocess.run([sys.executable, "-m", "c3.cli", *arguments], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


def test_demo_saves_cascades_that_c3_eval_reads(tmp_path):
    """`c3 demo` keeps every trained cascade in its output (cascades/<method>) and its report says how to evaluate
    one on other text. Oracle: `c3 eval` of each saved cascade on the demo's own held-out 4x passages gives the
    teacher-forced and greedy accuracy that results.json (c3) or baselines.json reports for that method."""
    finished = run_c3("demo", "--output", "out", "--size", "tiny", "--ratios", "2,4", "--quiet", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    output = tmp_path / "out"
    reported = {"c3": json.loads((output / "results.json").read_text())["4"]}
    baselines = json.loads((output / "baselines.json").read_text())
    reported.update({method: table["4"] for method, table in baselines.items()})
    size = demo.SIZES["tiny"]
    train_regions, held_out_regions = heldout.default_regions()
    texts = demo.held_out_texts(train_regions, held_out_regions, 4, size["latents"], size["evaluate"])
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    assert sorted(os.listdir(output / "cascades")) == sorted(demo.METHODS)  # no staging folder left beside them
    for method in demo.METHODS:
        path = os.path.join("out", "cascades", method)
        assert demo.cascade_path("out", method) == path
        assert c3.Cascade.load(str(tmp_path / path)).method == method
        evaluated = run_c3("eval", "--cascade", path, "--texts", "texts.jsonl", "--quiet", cwd=tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr
        metrics = json.loads(evaluated.stdout)
        assert metrics["count"] == reported[method]["held_out_passages"] == len(texts)
        assert metrics["teacher_forced_accuracy"] == reported[method]["teacher_forced_accuracy"], method
        assert metrics["token_accuracy"] == reported[method]["token_accuracy"], method
    report = (output / "report.md").read_text()
    assert "## Your own text" in report
    assert f"c3 eval --cascade {os.path.join('out', 'cascades', 'c3')} --texts my_texts.txt" in report


def test_saving_the_cascades_leaves_the_demo_as_it_was(tmp_path):
    """The demo saves each cascade between training and evaluation. Oracle: C3 trained by demo.train with the
    same seed and steps, never saved, gives the demo's C3 numbers at every ratio, and the cascade the demo saved
    holds its projector's parameters (saving draws no random numbers and changes no parameter)."""
    results = demo.run_demo(str(tmp_path), ratios=(2, 4), size="tiny", progress=False)
    size = demo.SIZES["tiny"]
    train_regions, held_out_regions = heldout.default_regions()
    cascade, log = demo.train("c3", (2, 4), size, 0, size["steps"], train_regions, progress=False)
    assert log[-1]["loss"] == results[2]["final_loss"]
    for ratio in (2, 4):
        metrics = c3.eval.evaluate(cascade, demo.held_out_texts(train_regions, held_out_regions, ratio,
                                                                         size["latents"], size["evaluate"]))
        for key in ("token_accuracy", "teacher_forced_accuracy", "fox_precision", "edit_distance"):
            assert metrics[key] == results[ratio][key], (ratio, key)
    fresh = cascade.model.bridge_parameters()
    saved = c3.Cascade.load(demo.cascade_path(str(tmp_path), "c3")).model.bridge_parameters()
    assert fresh and set(fresh) == set(saved) and all(np.array_equal(fresh[k], saved[k]) for k in fresh)
