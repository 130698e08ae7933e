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
# # Ratio sweep
#
# Train cascades at several compression ratios (passage bytes / latents) and compare precision, edit distance and
# the position profile of the errors. Each ratio keeps its colour in every plot.

# %%
import os

import numpy as np

import c3
from c3 import analysis
from c3.demo import SIZES, evaluate, train_one

TINY = os.environ.get("C3_NOTEBOOK_SIZE") == "tiny"  # the tests and the documentation build run the notebooks small
c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads(), "tiny" if TINY else "full")

# %%
size = SIZES["tiny" if TINY else "default"]
ratios = (2, 4) if TINY else (4, 8, 16)
seconds = 3 if TINY else 120
results, logs = {}, {}
for ratio in ratios:
    cascade, held_out, logs[ratio] = train_one(ratio, seconds, size, seed=0, progress=True)
    results[ratio] = evaluate(cascade, held_out, size["evaluate"])
    print(f"{ratio}x:", {k: round(v, 3) for k, v in results[ratio].items() if isinstance(v, float)})

# %%
analysis.plot_training_loss(logs, title=f"Training loss, {seconds} s per ratio")

# %%
analysis.plot_precision_vs_ratio(ratios, [results[r]["fox_precision"] for r in ratios],
                                 [results[r]["edit_distance"] for r in ratios])

# %%
analysis.plot_ratio_heatmap(ratios, np.stack([results[r]["decay"]["accuracy"] for r in ratios]),
                            title="Greedy reconstruction: kept rate by ratio and position")

# %%
analysis.plot_decay_curves({r: results[r]["decay"] for r in ratios}, title="Greedy reconstruction: kept rate by position")
