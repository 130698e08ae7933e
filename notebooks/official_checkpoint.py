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
# # The official C3 checkpoint
#
# Set the environment variable `C3_CHECKPOINT` to a local copy of the released checkpoint (a decoder directory with
# `model.Q.weight`, `model.mm_projector.*`, the encoder in `llm1/` and `tokenizer.json`; download it on a machine
# with internet access from the Hugging Face repository `liufanfanlff/C3-Context-Cascade-Compression`). Without it,
# this notebook explains what it would do and stops cleanly. `storage='bf16'` keeps the 1.5B + 3B pair in about
# 9 GB.

# %%
import os

import numpy as np

import c3
from c3 import analysis, corpus, plots

c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads())
checkpoint = os.environ.get("C3_CHECKPOINT")
if not checkpoint:
    print("C3_CHECKPOINT is not set: nothing to analyse. Point it at the official checkpoint directory to run.")

# %%
if checkpoint:
    cascade = c3.Cascade.load(checkpoint, storage="bf16")
    texts = corpus.passages(4000)[:4]  # about 1,000 tokens each
    ratio = cascade.compression_ratio(texts)
    z = cascade.compress(texts, truncate=True)
    out = cascade.reconstruct(z, max_new_tokens=1400, no_repeat_ngram_size=20)
    print("compression ratios", ratio)
    print(analysis.fox_metrics(texts, out))

# %%
if checkpoint:
    pairs = [(r, np.asarray(cascade.tokenizer.encode(h), dtype=np.int32)) for r, h in zip(cascade.tokenize(texts), out)]
    figure = plots.plot_decay_curves({f"{np.mean(ratio):.0f}x": analysis.decay_curve(pairs)},
                                        title="Official checkpoint: kept rate by position")
else:
    figure = None
figure
