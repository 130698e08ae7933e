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
# Train one cascade on passages of mixed length (the ratios unlocked in increasing order, as `c3 demo` and
# `c3 sweep` do), beside mean pooling under the same latent budget, then read each compression ratio (passage
# bytes / latents) off held-out text: precision, edit distance and the position profile of the errors. Each ratio
# keeps its colour in every plot.

# %%
import os

import numpy as np

import c3
from c3 import plots
from c3.eval import evaluate
from c3.experiments import demo, heldout

TINY = os.environ.get("C3_NOTEBOOK_SIZE") == "tiny"  # the tests and the documentation build run the notebooks small
c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads(), "tiny" if TINY else "full")

# %%
size = demo.SIZES["tiny" if TINY else "default"]
ratios = (2, 4) if TINY else (2, 4, 8)
steps = size["steps"] if TINY else 1500
train_regions, held_out_regions = heldout.default_regions()
texts = {r: demo.held_out_texts(train_regions, held_out_regions, r, size["latents"], size["evaluate"]) for r in ratios}
results, logs = {}, {}
for method in ("c3", "mean_pool"):
    cascade, logs[method] = demo.train(method, ratios, size, seed=0, steps=steps, train_regions=train_regions)
    results[method] = {r: evaluate(cascade, texts[r]) for r in ratios}
    for r in ratios:
        print(f"{method} {r}x:", {k: round(v, 3) for k, v in results[method][r].items() if isinstance(v, float)})

# %%
plots.plot_training_loss(logs, title=f"Training loss, {steps} steps on mixed ratios")

# %%
c3_results = results["c3"]
plots.plot_precision_vs_ratio(ratios, [c3_results[r]["fox_precision"] for r in ratios],
                                 [c3_results[r]["edit_distance"] for r in ratios])

# %%
plots.plot_ratio_heatmap(ratios, np.stack([c3_results[r]["decay"]["accuracy"] for r in ratios]),
                            title="C3, greedy reconstruction: kept rate by ratio and position")

# %%
plots.plot_decay_curves({r: c3_results[r]["decay"] for r in ratios},
                           title="C3, greedy reconstruction: kept rate by position")
