"""The demo pipeline end to end in its tiny configuration (the command line is in test_cli.py)."""
import json
import os

import c3
from c3 import corpus


def test_corpus_split_keeps_held_out_apart():
    items = corpus.passages(64)
    train, held_out = corpus.split(items, seed=0)
    assert len(held_out) > 0 and len(train) > 5 * len(held_out)
    assert not set(train) & set(held_out)
    assert corpus.split(items, seed=0) == (train, held_out)  # seeded
    assert "Python Software Foundation" in corpus.LICENCE


def test_tiny_demo_writes_report(tmp_path):
    """Fixed steps by default, with mean pooling and truncation beside C3 at the lowest ratio."""
    results = c3.demo.run_demo(str(tmp_path), ratios=(2, 4), size="tiny", progress=False)
    for name in ("report.md", "results.json", "decay_curves.png", "ratio_position_heatmap.png",
                 "precision_vs_ratio.png", "teacher_forced_decay.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    for name in ("decay_curves", "ratio_position_heatmap", "precision_vs_ratio", "teacher_forced_decay"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name  # vector copy for a paper
    assert not list(tmp_path.glob("*.partial"))
    report = (tmp_path / "report.md").read_text()
    assert "| 2x |" in report and "| 4x |" in report and "Goal" in report
    numbers = json.loads((tmp_path / "results.json").read_text())
    assert set(numbers) == {"2", "4"}
    for ratio in results.values():
        assert 0.0 <= ratio["token_accuracy"] <= 1.0
        assert len(ratio["decay"]["accuracy"]) == 20
        assert ratio["steps"] == c3.demo.steps_for("tiny", ratio["ratio"])
    baselines = json.loads((tmp_path / "baselines.json").read_text())
    assert set(baselines) == {"mean_pool", "truncate"}
    assert all(m["steps"] == results[2]["steps"] and m["ratio"] == 2 for m in baselines.values())
    assert "## C3 against baselines at 2x" in report and "| mean_pool |" in report and "| truncate |" in report
