"""c3.statistics: seed intervals, paired differences and the document block bootstrap, checked against SciPy and
hand computations."""
import math

import numpy as np
import pytest
from scipy import stats

import c3
from c3.statistics import block_bootstrap, paired_difference, seed_interval


def test_seed_interval_matches_scipy_and_a_hand_computation():
    result = seed_interval([1, 2, 3, 4, 5])
    # By hand: mean 3, sd sqrt(2.5), t_{0.975, 4} = 2.7764451, half width t * sd / sqrt(5).
    assert result["mean"] == 3.0 and result["n"] == 5
    assert result["sd"] == pytest.approx(math.sqrt(2.5), rel=1e-12)
    assert result["half_width"] == pytest.approx(2.7764451 * 1.5811388 / 2.2360680, rel=1e-6)
    assert result["half_width"] == pytest.approx(1.9632432, rel=1e-6)
    low, high = stats.t.interval(0.95, 4, loc=3.0, scale=math.sqrt(2.5) / math.sqrt(5))
    assert (result["low"], result["high"]) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_seed_interval_other_confidence_and_data():
    values = np.array([0.61, 0.64, 0.58, 0.66, 0.63, 0.60, 0.65])
    result = seed_interval(values, confidence=0.9)
    sem = values.std(ddof=1) / math.sqrt(values.size)
    low, high = stats.t.interval(0.9, values.size - 1, loc=values.mean(), scale=sem)
    assert result["low"] == pytest.approx(low, rel=1e-12) and result["high"] == pytest.approx(high, rel=1e-12)
    assert seed_interval(values, 0.99)["half_width"] > result["half_width"]


def test_seed_interval_edge_cases():
    single = seed_interval([0.5])
    assert single["mean"] == 0.5 and single["n"] == 1
    assert all(math.isnan(single[key]) for key in ("low", "high", "sd", "half_width"))
    with pytest.raises(c3.C3ValueError):
        seed_interval([])
    with pytest.raises(c3.C3ValueError):
        seed_interval([1.0, float("nan")])
    with pytest.raises(c3.C3ValueError):
        seed_interval([1.0, 2.0], confidence=1.0)


def test_paired_difference_is_the_interval_of_the_differences_and_pairing_matters():
    # Seeds move both settings a lot (0.5 .. 0.8); setting a is better by about 0.01 on every seed.
    b = np.array([0.50, 0.80, 0.62, 0.71, 0.55, 0.77])
    a = b + np.array([0.011, 0.009, 0.012, 0.010, 0.008, 0.011])
    paired = paired_difference(a, b)
    reference = seed_interval(a - b)
    for key in ("mean", "low", "high", "sd", "n", "half_width"):
        assert paired[key] == pytest.approx(reference[key], rel=1e-12)
    np.testing.assert_allclose(paired["differences"], a - b)
    assert paired["low"] > 0  # paired: a is better
    unpaired = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert unpaired.low < 0 < unpaired.high  # unpaired: the seed variation swamps the difference
    with pytest.raises(c3.C3ValueError):
        paired_difference([1.0, 2.0], [1.0])


def test_block_bootstrap_with_one_passage_per_block_is_the_ordinary_bootstrap():
    rng = np.random.default_rng(1)
    values = rng.normal(size=400)
    result = block_bootstrap(values, np.arange(values.size), resamples=4000, seed=3)
    ordinary = stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                               confidence_level=0.95, random_state=np.random.default_rng(4)).confidence_interval
    width = ordinary.high - ordinary.low
    assert result["estimate"] == pytest.approx(values.mean())
    assert abs(result["low"] - ordinary.low) < 0.05 * width
    assert abs(result["high"] - ordinary.high) < 0.05 * width


def test_block_bootstrap_is_wider_when_passages_of_a_document_are_correlated():
    rng = np.random.default_rng(2)
    per_block = 10
    block_values = rng.normal(size=30)
    values = np.repeat(block_values, per_block)  # every passage of a document scores the same
    blocks = np.repeat(np.arange(30), per_block)
    blocked = block_bootstrap(values, blocks, resamples=2000, seed=0)
    naive = block_bootstrap(values, np.arange(values.size), resamples=2000, seed=0)
    # Ten copies of each value carry the information of one: the honest interval is about sqrt(10) wider.
    ratio = (blocked["high"] - blocked["low"]) / (naive["high"] - naive["low"])
    assert 2.4 < ratio < 4.2
    assert blocked["blocks"] == 30 and blocked["n"] == 300


def test_block_bootstrap_is_reproducible_and_accepts_any_statistic():
    rng = np.random.default_rng(5)
    values = rng.normal(size=60)
    blocks = rng.integers(0, 12, size=60).astype(str)  # any hashable ids, here strings
    first = block_bootstrap(values, blocks, resamples=300, seed=11)
    assert block_bootstrap(values, blocks, resamples=300, seed=11) == first
    assert block_bootstrap(values, blocks, resamples=300, seed=12) != first
    median = block_bootstrap(values, blocks, statistic=np.median, resamples=300, seed=11)
    assert median["estimate"] == pytest.approx(np.median(values))
    assert median["low"] <= median["estimate"] <= median["high"]
    # The generic path (a statistic called per resample) and the vectorised mean draw the same documents.
    generic_mean = block_bootstrap(values, blocks, statistic=lambda x: float(np.mean(x)), resamples=300, seed=11)
    assert generic_mean["low"] == pytest.approx(first["low"]) and generic_mean["high"] == pytest.approx(first["high"])
    with pytest.raises(c3.C3ValueError):
        block_bootstrap(values, blocks[:-1])
    with pytest.raises(c3.C3ValueError):
        block_bootstrap([], [])


def test_block_bootstrap_covers_the_true_mean_most_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    for repeat in range(100):
        documents, per_document = 25, 8
        effects = rng.normal(scale=1.0, size=documents)  # documents differ; passages within one are alike
        values = np.repeat(effects, per_document) + rng.normal(scale=0.5, size=documents * per_document)
        blocks = np.repeat(np.arange(documents), per_document)
        result = block_bootstrap(values, blocks, resamples=400, seed=repeat)
        covered += result["low"] <= 0.0 <= result["high"]
    assert covered >= 85
