"""The demo pipeline end to end in its tiny configuration, and the command line."""
import json
import os

import numpy as np

import c3
from c3 import cli, corpus


def test_corpus_split_keeps_held_out_apart():
    items = corpus.passages(64)
    train, held_out = corpus.split(items, seed=0)
    assert len(held_out) > 0 and len(train) > 5 * len(held_out)
    assert not set(train) & set(held_out)
    assert corpus.split(items, seed=0) == (train, held_out)  # seeded
    assert "Python Software Foundation" in corpus.LICENCE


def test_tiny_demo_writes_report(tmp_path):
    results = c3.demo.run_demo(str(tmp_path), ratios=(2, 4), minutes=0.1, size="tiny", progress=False)
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


def test_cli_help_and_pipeline(tmp_path, capsys):
    for command in ("demo", "train", "compress", "reconstruct", "eval", "models"):
        try:
            cli.main([command, "--help"])
        except SystemExit as stop:
            assert stop.code == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("The quick brown fox.\nPython is a language.\n")
    cascade_dir = str(tmp_path / "cascade")
    cli.main(["train", "--output", cascade_dir, "--latents", "4", "--ratio", "4", "--steps", "5", "--batch", "4",
              "--hidden-size", "32", "--layers", "1", "--quiet"])
    latents = str(tmp_path / "latents.safetensors")
    cli.main(["compress", "--cascade", cascade_dir, "--texts", str(texts), "--output", latents])
    loaded, metadata = c3.load_latents(latents)
    assert loaded.shape == (2, 4, 32) and list(metadata["source_tokens"]) == [20, 21]
    out = str(tmp_path / "out.json")
    cli.main(["reconstruct", "--cascade", cascade_dir, "--latents", latents, "--output", out,
              "--max-new-tokens", "16"])
    assert len(json.load(open(out))) == 2
    metrics = str(tmp_path / "metrics.json")
    cli.main(["eval", "--cascade", cascade_dir, "--texts", str(texts), "--output", metrics])
    values = json.load(open(metrics))
    assert 0.0 <= values["edit_distance"] <= 1.0 and len(values["decay"]["accuracy"]) == 20
    assert np.isclose(values["compression_ratio"], 20.5 / 4)
