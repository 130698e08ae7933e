# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # c3 quickstart
#
# Build a small byte-level cascade, train it on the CPU, compress text into latents, reconstruct it, and see
# **where along the text** the errors are.

# %%
import os

import numpy as np

import c3
from c3 import analysis, corpus

TINY = os.environ.get("C3_NOTEBOOK_SIZE") == "tiny"  # the tests and the documentation build run the notebooks small
c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads(), "tiny" if TINY else "full")

# %% [markdown]
# ## A cascade: encoder LLM → N latents → decoder LLM

# %%
shape = dict(hidden_size=32 if TINY else 96, intermediate_size=64 if TINY else 256, num_layers=1 if TINY else 3,
             num_heads=2 if TINY else 6, num_kv_heads=1 if TINY else 3, model_type="llama", attention_bias=False,
             tie_word_embeddings=True, max_position_embeddings=256)
latents = 4 if TINY else 8
passage_bytes = 4 * latents  # 4x compression
cascade = c3.Cascade.new(shape, shape, n_latents=latents, seed=0)
print(f"{cascade.model.num_parameters:,} parameters, {latents} latents for {passage_bytes}-byte passages")

# %% [markdown]
# ## Train on the embedded corpus (CPython's documentation), held-out text kept apart
#
# `c3.fit` shows one progress bar (a widget in a notebook, a line in a terminal) and returns every step's report.

# %%
train, held_out = corpus.split(corpus.passages(passage_bytes, stride=passage_bytes // 2), seed=0)
rng = np.random.default_rng(0)
steps = 60 if TINY else 1500
trainer = cascade.trainer(learning_rate=3e-3, warmup_steps=steps // 20, total_steps=steps, min_lr_ratio=0.05)
batches = ([train[i] for i in rng.integers(0, len(train), size=16)] for _ in iter(int, 1))
log = c3.fit(trainer, batches, steps, step_fn=lambda t, b: cascade.train_step(t, b))
print(f"loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}, "
      f"{np.median([r['tokens_per_second'] for r in log]):.0f} tokens/s")

# %%
analysis.plot_training_loss({"4x": log}, title=f"Training loss, {passage_bytes}-byte passages, {latents} latents")

# %% [markdown]
# ## Compress and reconstruct held-out text

# %%
texts = held_out[:16]
z = cascade.compress(texts)  # [B, N, d] float32 latents
out = cascade.reconstruct(z, max_new_tokens=passage_bytes + 8)
for reference, hypothesis in list(zip(texts, out))[:3]:
    print(repr(reference), "\n ->", repr(hypothesis))
print(analysis.fox_metrics(texts, out))

# %% [markdown]
# ## Where is information lost? Decay by position
#
# Greedy reconstruction is scored after alignment (one early insertion does not fail every later byte);
# teacher-forced scoring asks, at every position, whether the decoder's top choice is the reference byte.
# The bands are one binomial standard error.

# %%
scores = cascade.score(z, texts)  # teacher-forced: per-position rank, log p, correct
teacher = [scores["correct"][i][scores["valid"][i]] for i in range(len(texts))]
pairs = [(r, np.asarray(cascade.tokenizer.encode(h), dtype=np.int32)) for r, h in zip(cascade.tokenize(texts), out)]
curves = {"greedy (aligned)": analysis.decay_curve(pairs), "teacher-forced": analysis.decay_curve(teacher)}
analysis.plot_decay_curves(curves, title="Accuracy by relative position, 4x")

# %% [markdown]
# ## One figure, several plots
#
# Every plot function takes `ax=`, so plots can share a figure made by the caller (here with
# `analysis.new_figure`, which shows itself in any notebook; `matplotlib.pyplot.subplots` works as well).
# `analysis.save_figure(figure, "name")` writes `name.png` and `name.pdf`.

# %%
figure = analysis.new_figure(11.0, 3.8)
left, right = figure.subplots(1, 2)
analysis.plot_training_loss({"4x": log}, title="Training", ax=left)
analysis.plot_decay_curves({"4x": curves["greedy (aligned)"]}, title="Greedy reconstruction", ax=right)
figure
