"""c3 analysis against nltk (the Fox evaluation's own library) and hand-worked cases."""
import math
import os
import warnings

import numpy as np
import pytest

nltk_scores = pytest.importorskip("nltk.metrics.scores")
from nltk.metrics.distance import edit_distance as nltk_edit_distance  # noqa: E402
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu  # noqa: E402

import c3  # noqa: E402
from c3 import _core, analysis, plots  # noqa: E402

# A small vocabulary makes overlaps, repeats and n-gram matches common; a few non-ASCII words and odd
# whitespace check code points and Python's str.split().
VOCABULARY = ["the", "a", "cat", "sat", "on", "mat", "dog", "ran", "café", "naïve", "日本", "😀", "x", "y"]
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "\x1f", "\x85", "\u2028"]


def random_text(rng, max_words=30):
    words = rng.choice(VOCABULARY, size=int(rng.integers(0, max_words + 1))).tolist()
    text = ""
    for word in words:
        text += word + SEPARATORS[int(rng.integers(len(SEPARATORS)))]
    if rng.random() < 0.3:
        text = " " + text
    return text


def corrupt(rng, words):
    """A hypothesis as a decoder might give it: the reference with substitutions, drops, insertions, truncation."""
    out = []
    for word in words:
        roll = rng.random()
        if roll < 0.1:
            continue
        out.append(VOCABULARY[int(rng.integers(len(VOCABULARY)))] if roll < 0.2 else word)
        if rng.random() < 0.05:
            out.append(VOCABULARY[int(rng.integers(len(VOCABULARY)))])
    if rng.random() < 0.3:
        out = out[: int(rng.integers(0, len(out) + 1))]
    return out


def text_pairs(seed, count):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        reference = random_text(rng)
        if rng.random() < 0.5:
            hypothesis = " ".join(corrupt(rng, reference.split()))
        else:
            hypothesis = random_text(rng)
        pairs.append((reference, hypothesis))
    return pairs


def same_float(a, b, tolerance=1e-12):
    if a is None:
        return math.isnan(b)
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-300)


# ---------------------------------------------------------------------------------------------------------
# Edit distance


def test_edit_distance_hand_worked():
    assert analysis.edit_distance("kitten", "sitting") == 3
    assert analysis.edit_distance("", "") == 0
    assert analysis.edit_distance("abc", "abc") == 0
    assert analysis.edit_distance("", "abc") == 3
    assert analysis.edit_distance("café", "cafe") == 1  # code points, not bytes
    assert analysis.edit_distance("😀", "😁") == 1
    assert analysis.normalized_edit_distance("kitten", "sitting") == 3 / 7
    assert analysis.normalized_edit_distance("", "") == 0.0
    assert analysis.edit_distance([1, 2, 3], [1, 3]) == 1
    assert analysis.edit_distance(np.array([1, 2, 3], np.int32), np.array([1, 3], np.int64)) == 1
    assert analysis.edit_distance(["the", "cat"], ["a", "cat"]) == 1
    assert analysis.edit_distance([], "abc") == 3  # an empty list takes the other side's kind


def test_edit_distance_matches_nltk_on_random_text():
    for reference, hypothesis in text_pairs(1, 300):
        expected = nltk_edit_distance(hypothesis, reference)
        assert analysis.edit_distance(reference, hypothesis) == expected
        longest = max(len(reference), len(hypothesis))
        fox = expected / longest if longest else 0.0
        assert analysis.normalized_edit_distance(reference, hypothesis) == fox


def test_edit_distance_matches_nltk_on_ids():
    rng = np.random.default_rng(2)
    for _ in range(200):
        a = rng.integers(0, 5, size=int(rng.integers(0, 40)))
        b = rng.integers(0, 5, size=int(rng.integers(0, 40)))
        assert analysis.edit_distance(a, b) == nltk_edit_distance(a.tolist(), b.tolist())


def test_edit_distance_batch_matches_single():
    pairs = text_pairs(3, 50)
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    distances = analysis.edit_distance_batch(refs, hyps)
    normalized = analysis.normalized_edit_distance_batch(refs, hyps)
    assert distances.dtype == np.int64 and normalized.dtype == np.float64
    for k, (r, h) in enumerate(pairs):
        assert distances[k] == analysis.edit_distance(r, h)
        assert normalized[k] == analysis.normalized_edit_distance(r, h)


def test_bad_inputs_raise():
    with pytest.raises(_core.C3ValueError, match="byte offset 2"):
        analysis.edit_distance(b"ab\xff", "a")
    with pytest.raises(ValueError):  # C3ValueError is a ValueError too
        analysis.normalized_edit_distance(b"\xc3", b"")
    with pytest.raises(TypeError):
        analysis.edit_distance("ab", [1, 2])
    with pytest.raises(TypeError):
        analysis.edit_distance([1.5], [1])
    with pytest.raises(_core.ShapeError):
        analysis.edit_distance(np.zeros((2, 2), np.int64), [1])
    with pytest.raises(_core.ShapeError):
        analysis.edit_distance_batch(["a"], [])


# ---------------------------------------------------------------------------------------------------------
# Alignment


def replay(reference, hypothesis, ops, insertions):
    """Walks the hypothesis with the ops; returns the number of edits, asserting consistency."""
    j = edits = 0
    for i in range(len(reference) + 1):
        j += int(insertions[i])
        edits += int(insertions[i])
        if i == len(reference):
            break
        if ops[i] == 0:
            assert reference[i] == hypothesis[j]
            j += 1
        elif ops[i] == 1:
            assert reference[i] != hypothesis[j]
            j += 1
            edits += 1
        else:
            assert ops[i] == 2
            edits += 1
    assert j == len(hypothesis)
    return edits


def test_align_hand_worked():
    ops, insertions = analysis.align("kitten", "sitting")
    assert ops.dtype == np.int8 and insertions.dtype == np.int64
    assert ops.tolist() == [1, 0, 0, 0, 1, 0]
    assert insertions.tolist() == [0, 0, 0, 0, 0, 0, 1]
    # Truncation of a repeated text: the first copy is kept, the end is lost.
    ops, insertions = analysis.align([1, 2, 3, 1, 2, 3], [1, 2, 3])
    assert ops.tolist() == [0, 0, 0, 2, 2, 2]
    ops, insertions = analysis.align([], [])
    assert ops.shape == (0,) and insertions.tolist() == [0]


def test_align_is_optimal_and_consistent():
    rng = np.random.default_rng(4)
    references, hypotheses = [], []
    for _ in range(300):
        reference = rng.integers(0, 3, size=int(rng.integers(0, 12))).tolist()
        hypothesis = rng.integers(0, 3, size=int(rng.integers(0, 12))).tolist()
        ops, insertions = analysis.align(reference, hypothesis)
        assert replay(reference, hypothesis, ops, insertions) == nltk_edit_distance(reference, hypothesis)
        references.append(reference)
        hypotheses.append(hypothesis)
    for (ops, insertions), reference, hypothesis in zip(analysis.align_batch(references, hypotheses), references, hypotheses):
        single_ops, single_insertions = analysis.align(reference, hypothesis)
        assert np.array_equal(ops, single_ops) and np.array_equal(insertions, single_insertions)


# ---------------------------------------------------------------------------------------------------------
# Fox set metrics


def test_fox_precision_matches_nltk():
    for reference, hypothesis in text_pairs(5, 400):
        ref_set, hyp_set = set(reference.split()), set(hypothesis.split())
        assert same_float(nltk_scores.precision(ref_set, hyp_set), analysis.fox_precision(reference, hypothesis), 0)
        assert same_float(nltk_scores.recall(ref_set, hyp_set), analysis.set_recall(reference, hypothesis), 0)
        assert same_float(nltk_scores.f_measure(ref_set, hyp_set), analysis.set_f1(reference, hypothesis), 0)
        # Word lists and ids give the same sets.
        assert same_float(
            nltk_scores.precision(ref_set, hyp_set), analysis.fox_precision(reference.split(), hypothesis.split()), 0
        )


def test_fox_precision_is_order_blind():
    assert analysis.fox_precision("a b c d", "d c b a") == 1.0
    assert analysis.fox_precision("a b c", "a a a") == 1.0  # sets: one "a"
    assert math.isnan(analysis.fox_precision("a b", ""))  # nltk: None


def test_fox_scores_match_the_fox_script():
    pairs = text_pairs(6, 200)
    batch = _core.fox_scores_batch([r for r, _ in pairs], [h for _, h in pairs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, (gt, pred) in enumerate(pairs):
            reference, hypothesis = gt.split(), pred.split()
            expected_bleu = sentence_bleu([reference], hypothesis)
            ref_set, hyp_set = set(reference), set(hypothesis)
            longest = max(len(pred), len(gt))
            expected_edit = nltk_edit_distance(pred, gt) / longest if longest else 0.0
            single = _core.fox_scores(gt, pred)
            for key, expected in [
                ("precision", nltk_scores.precision(ref_set, hyp_set)),
                ("recall", nltk_scores.recall(ref_set, hyp_set)),
                ("f1", nltk_scores.f_measure(ref_set, hyp_set)),
                ("bleu", expected_bleu),
                ("edit_distance", expected_edit),
            ]:
                assert same_float(expected, batch[key][k]), (key, gt, pred)
                assert same_float(expected, single[key]), (key, gt, pred)


# ---------------------------------------------------------------------------------------------------------
# BLEU


def test_bleu_matches_nltk_sentence_bleu():
    smoothing = SmoothingFunction()
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero n-gram counts
        for reference, hypothesis in text_pairs(8, 300):
            ref, hyp = reference.split(), hypothesis.split()
            assert same_float(sentence_bleu([ref], hyp), analysis.bleu(reference, hypothesis)), (reference, hypothesis)
            assert same_float(
                sentence_bleu([ref], hyp, smoothing_function=smoothing.method1),
                analysis.bleu(ref, hyp, smoothing="method1"),
            )
            weights = (0.5, 0.3, 0.2)
            assert same_float(sentence_bleu([ref], hyp, weights=weights), analysis.bleu(ref, hyp, weights=list(weights)))
        for _ in range(100):
            ref = rng.integers(0, 4, size=int(rng.integers(0, 20))).tolist()
            hyp = rng.integers(0, 4, size=int(rng.integers(0, 20))).tolist()
            assert same_float(sentence_bleu([ref], hyp), analysis.bleu(ref, hyp))


def test_bleu_is_bit_identical_to_nltk():
    # math.fsum and the same float operations: not just close, equal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for reference, hypothesis in text_pairs(9, 100):
            assert sentence_bleu([reference.split()], hypothesis.split()) == analysis.bleu(reference, hypothesis)


def test_corpus_bleu_matches_nltk():
    pairs = text_pairs(10, 60)
    refs = [[r.split()] for r, _ in pairs]
    hyps = [h.split() for _, h in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = corpus_bleu(refs, hyps)
    assert same_float(expected, analysis.corpus_bleu([r for r, _ in pairs], [h for _, h in pairs]))
    with pytest.raises(ValueError):
        analysis.bleu("a", "a", smoothing="method9")


# ---------------------------------------------------------------------------------------------------------
# Accuracy and profiles


def test_token_and_char_accuracy():
    assert analysis.token_accuracy([1, 2, 3, 4], [1, 2, 9, 4]) == 0.75
    assert analysis.token_accuracy([1, 2, 3, 4], [1, 2]) == 0.5
    assert analysis.token_accuracy([1, 2], [1, 2, 3]) == 1.0
    assert math.isnan(analysis.token_accuracy([], [1]))
    assert _core.char_accuracy("héllo", "hello") == 0.8
    batch = analysis.token_accuracy_batch([[1, 2, 3, 4], [5, 6]], [[1, 2], [5, 6]])
    assert batch["correct"].tolist() == [2, 2] and batch["total"].tolist() == [4, 2]
    assert batch["accuracy"].tolist() == [0.5, 1.0]


def test_position_profile_crafted():
    # 8-token reference, 4 bins: the second half is truncated away.
    profile = analysis.position_profile([(list(range(8)), list(range(4)))], bins=4)
    assert profile["kept"].tolist() == [2, 2, 0, 0]
    assert profile["deleted"].tolist() == [0, 0, 2, 2]
    assert profile["kept_rate"].tolist() == [1.0, 1.0, 0.0, 0.0]
    # Insertion after the end goes to the last bin; a substitution in bin 1.
    profile = analysis.position_profile([([0, 1, 2, 3], [0, 9, 2, 3, 7])], bins=2)
    assert profile["substituted"].tolist() == [1, 0]
    assert profile["inserted"].tolist() == [0, 1]
    assert profile["inserted_rate"].tolist() == [0.0, 0.5]
    # Counts add over samples before rates: token-weighted.
    profile = analysis.position_profile([(list(range(100)), list(range(50))), (list(range(10)), list(range(10)))], bins=2)
    assert profile["kept"].tolist() == [55, 5]
    assert profile["kept_rate"][1] == 5 / 55
    # Empty bins are NaN.
    profile = analysis.position_profile([([1], [1])], bins=3)
    assert np.isnan(profile["kept_rate"][1])


def test_position_profile_grid_and_wrapper():
    groups = [[([1, 2, 3, 4], [1, 2, 3, 4])], [([1, 2, 3, 4], [1, 2])]]
    grid = analysis.position_profile_grid(groups, bins=2)
    assert grid["kept"].shape == (2, 2)
    assert grid["kept_rate"].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    profile = analysis.position_profile([[1, 2, 3, 4]], [[1, 2]], bins=2)
    assert profile["kept"].tolist() == [2, 0]
    assert profile["position"].tolist() == [0.25, 0.75]


def test_correctness_and_value_profiles():
    padded = np.array([[1, 1, 0, 0], [1, 0, 9, 9]])
    profile = _core.correctness_profile(padded, bins=2, lengths=[4, 2])
    assert profile["correct"].tolist() == [3, 0] and profile["total"].tolist() == [3, 3]
    values = _core.value_profile([np.array([0.5, 1.5, 2.0, 4.0], np.float32)], bins=2)
    assert values["mean"].tolist() == [1.0, 3.0]
    with pytest.raises(ValueError):
        _core.value_profile([np.array([1.0, np.nan])])
    with pytest.raises(ValueError):
        _core.correctness_profile(padded, lengths=[5, 1])


# ---------------------------------------------------------------------------------------------------------
# The Python layer


def test_fox_metrics_averages_per_page():
    pairs = text_pairs(11, 40) + [("a b c", "")]
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    metrics = analysis.fox_metrics(refs, hyps)
    assert metrics["count"] == len(pairs)
    precisions = [nltk_scores.precision(set(r.split()), set(h.split())) for r, h in pairs]
    assert metrics["undefined_precision"] == sum(p is None for p in precisions)
    assert math.isclose(metrics["precision"], sum(p or 0.0 for p in precisions) / len(pairs), rel_tol=1e-12)
    edits = [nltk_edit_distance(h, r) / max(len(h), len(r)) if max(len(h), len(r)) else 0.0 for r, h in pairs]
    assert math.isclose(metrics["edit_distance"], sum(edits) / len(edits), rel_tol=1e-12)
    # A custom tokenizer (character-level words here) goes through the same metrics.
    custom = analysis.fox_metrics(refs, hyps, tokenize=lambda text: list(text.replace(" ", "")))
    assert set(custom) == set(metrics)


def test_decay_curve_from_pairs_and_from_correctness():
    rng = np.random.default_rng(12)
    samples = []
    for _ in range(50):
        reference = rng.integers(0, 50, size=200)
        hypothesis = reference.copy()
        tail = rng.random(200) < np.linspace(0.0, 0.6, 200)  # errors grow along the text
        hypothesis[tail] = 99
        samples.append((reference, hypothesis))
    curve = analysis.decay_curve(samples, bins=10)
    assert curve["accuracy"].shape == (10,) and curve["count"].sum() == 50 * 200
    assert curve["accuracy"][0] > 0.9 > 0.5 > curve["accuracy"][-1]
    assert np.all(curve["stderr"] >= 0)
    correctness = [(r == h).astype(np.uint8) for r, h in samples]
    teacher = analysis.decay_curve(correctness, bins=10)
    assert np.allclose(teacher["accuracy"], curve["accuracy"])  # substitutions only: same per position


def test_length_bins():
    bins = analysis.length_bins([650, 612, 780, 1299, 700], width=100)
    assert bins["edges"].tolist() == [600, 700, 1200]
    assert bins["labels"] == ["600-700", "700-800", "1200-1300"]
    assert bins["bin"].tolist() == [600, 600, 700, 1200, 700]
    assert [g.tolist() for g in bins["groups"]] == [[0, 1], [2, 4], [3]]


def test_plots_produce_figures(tmp_path):
    from matplotlib.figure import Figure

    curves = {
        ratio: analysis.decay_curve([(list(range(40)), list(range(40 - ratio)))], bins=10) for ratio in (2, 4, 8)
    }
    figures = {
        "decay.png": plots.plot_decay_curves(curves),
        "decay_arrays.png": plots.plot_decay_curves({"raw": np.linspace(1, 0.5, 20)}),
        "heatmap.png": plots.plot_ratio_heatmap([2, 4, 8], np.stack([c["accuracy"] for c in curves.values()])),
        "precision.png": plots.plot_precision_vs_ratio([10, 20, 40], [0.99, 0.98, 0.93], [0.02, 0.05, 0.12]),
    }
    for name, figure in figures.items():
        assert isinstance(figure, Figure)
        path = tmp_path / name
        figure.savefig(path)
        assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plots.plot_ratio_heatmap([1, 2], np.zeros((3, 4)))


def line_colors(axes):
    return {line.get_label(): line.get_color() for line in axes.get_lines()}


def test_ratios_sort_numerically_and_keep_their_colour_in_every_plot():
    from matplotlib.colors import to_hex

    def curve(ratio):
        return analysis.decay_curve([(list(range(32)), list(range(32 - ratio)))] * 3, bins=8)

    wide = plots.plot_decay_curves({16: curve(16), 4: curve(4), 8: curve(8)}).axes[0]
    labelled = plots.plot_decay_curves({"16x": curve(16), "8x": curve(8)}).axes[0]
    loss = plots.plot_training_loss({8: [{"loss": 2.0}, {"loss": 1.5}], 2: np.array([3.0, 2.0])}).axes[0]
    assert [text.get_text() for text in wide.get_legend().get_texts()][:3] == ["4x", "8x", "16x"]
    assert list(line_colors(labelled)) == ["8x", "16x"]
    assert list(line_colors(loss)) == ["2x", "8x"]
    colors = line_colors(wide)
    assert len(set(colors.values())) == 3
    for axes in (labelled, loss):
        for label, color in line_colors(axes).items():
            assert to_hex(color) == to_hex(plots.color_for(label)) == to_hex(plots.color_for(float(label[:-1])))
    assert to_hex(line_colors(labelled)["8x"]) == to_hex(colors["8x"])
    heatmap = plots.plot_ratio_heatmap(["16x", "4x", "8x"], np.stack([curve(r)["accuracy"] for r in (16, 4, 8)]))
    ticks = heatmap.axes[0].get_yticklabels()
    assert [tick.get_text() for tick in ticks] == ["4x", "8x", "16x"]
    assert [to_hex(tick.get_color()) for tick in ticks] == [to_hex(colors[label]) for label in ("4x", "8x", "16x")]
    # Rows were reordered with their labels: the 4x row (fewest deletions) is the bottom one.
    assert np.allclose(heatmap.axes[0].get_images()[0].get_array()[0], curve(4)["accuracy"])
    precision = plots.plot_precision_vs_ratio([16, 4, 8], [0.5, 0.9, 0.7], [0.4, 0.1, 0.2]).axes[0]
    assert [tick.get_text() for tick in precision.get_xticklabels()] == ["4x", "8x", "16x"]
    assert [to_hex(c) for c in precision.collections[0].get_facecolors()] == [to_hex(colors[k]) for k in ("4x", "8x", "16x")]
    assert [plots.ratio_value(key) for key in (4, "4x", " 2.5X ", "greedy", "nan", float("inf"), True)] == [
        4.0, 4.0, 2.5, None, None, None, None]
    assert plots.color_for("nan") == plots.color_for("nan") and plots.ratio_label(2.5) == "2.5x"
    # Methods (not ratios) keep their colour too, and their given order.
    assert plots.color_for("teacher-forced") == plots.color_for("teacher-forced")
    # The compression methods never share a colour (a hash of their names did: three got the same green).
    methods = ("c3", "mean_pool", "truncate", "truncate_last", "no_context", "full_context")
    assert len({plots.color_for(method) for method in methods}) == len(methods)
    assert list(line_colors(plots.plot_decay_curves({"b": np.ones(4), "a": np.ones(4)}).axes[0])) == ["b", "a"]


def test_bands_say_what_they_are_and_axes_carry_units():
    pairs = [(list(range(30)), list(range(25)))] * 12
    axes = plots.plot_decay_curves({4: analysis.decay_curve(pairs, bins=6)}).axes[0]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["4x", "band: \u00b11 standard error, 12 passages"]
    assert len(axes.collections) == 1  # the band
    assert "fraction of reference tokens" in axes.get_ylabel() and "relative position" in axes.get_xlabel()
    no_band = plots.plot_decay_curves({4: analysis.decay_curve(pairs, bins=6)}, show_stderr=False).axes[0]
    assert [text.get_text() for text in no_band.get_legend().get_texts()] == ["4x"]
    precision = plots.plot_precision_vs_ratio([4, 8], [0.9, 0.5], [0.1, 0.4])
    left, right = precision.axes
    assert "log scale" in left.get_xlabel() and "per character" in right.get_ylabel()
    loss = plots.plot_training_loss({4: np.array([3.0, 2.0])}).axes[0]
    assert "nats per token" in loss.get_ylabel() and loss.get_xlabel() == "optimiser step"


def test_plots_draw_into_the_callers_axes():
    figure = plots.new_figure(12, 4)
    axes = figure.subplots(1, 4)
    pairs = [(list(range(20)), list(range(18)))]
    results = [
        plots.plot_decay_curves({4: analysis.decay_curve(pairs, bins=5)}, ax=axes[0]),
        plots.plot_ratio_heatmap([4, 8], np.full((2, 5), 0.5), ax=axes[1]),
        plots.plot_precision_vs_ratio([4, 8], [0.9, 0.5], [0.1, 0.4], ax=axes[2]),
        plots.plot_training_loss({4: [1.0, 0.5]}, ax=axes[3]),
    ]
    assert all(result is figure for result in results)
    assert [len(ax.get_lines()) for ax in axes] == [1, 0, 1, 1]
    sub = plots.new_figure().subfigures(1, 2)[1].subplots()  # a SubFigure's axes: the root figure comes back
    assert plots.plot_training_loss({4: [1.0, 0.5]}, ax=sub) is sub.figure.figure


def test_figures_show_themselves_in_ipython_and_pickle():
    import pickle

    formatters = pytest.importorskip("IPython.core.formatters")
    figure = plots.plot_training_loss({4: [1.0, 0.5]})
    data, _ = formatters.DisplayFormatter().format(figure)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    copy = pickle.loads(pickle.dumps(figure))
    assert type(copy) is type(figure) and len(copy.axes) == 1


def test_save_figure_writes_vector_copies_whole(tmp_path):
    figure = plots.plot_training_loss({4: [1.0, 0.5]})
    written = plots.save_figure(figure, tmp_path / "loss.png", formats=("png", "pdf", "svg"))
    assert written == [str(tmp_path / f"loss.{kind}") for kind in ("png", "pdf", "svg")]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "loss.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (tmp_path / "loss.svg").read_bytes()[:1000]
    assert sorted(os.listdir(tmp_path)) == ["loss.pdf", "loss.png", "loss.svg"]
    with pytest.raises(c3.C3ValueError):
        plots.save_figure(figure, tmp_path / "loss", formats=("jpg",))
    with pytest.raises(OSError):
        plots.save_figure(figure, tmp_path / "missing" / "loss")
    assert sorted(os.listdir(tmp_path)) == ["loss.pdf", "loss.png", "loss.svg"]
