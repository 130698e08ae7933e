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
# # Long documents: where is information lost?
#
# A document longer than the encoder reads is compressed in chunks, each into its own block of N latents
# (`Cascade.compress_long`). The decoder reads all the blocks at once, each in its own `<img> ... </img>`, and a
# task says what to write: `<chunk k>` asks for chunk k back (addressed reconstruction), `<continue>` for the text
# that follows the document. Here a small byte-level cascade learns both on books of the King James Version, and we
# ask whether a chunk near the start of a document survives as well as one near the end. `c3 documents` runs the
# same experiment at full size.

# %%
import os

import numpy as np

import c3
from c3 import plots
from c3.eval.documents import document_measures
from c3.eval.surprisal import prior_surprisal
from c3.experiments import documents

TINY = os.environ.get("C3_NOTEBOOK_SIZE") == "tiny"  # the tests and the documentation build run the notebooks small
c3.set_num_threads(os.cpu_count() or 2)
print("c3", c3.__version__, "threads", c3.num_threads(), "tiny" if TINY else "full")

# %% [markdown]
# Windows of up to 16 chunks of 64 bytes (N = 8 latents each, 8x) and 32 bytes of continuation; the number of
# chunks grows over the first 40% of the steps. About ten minutes on two cores.

# %%
settings = dict(documents.SIZES["tiny"]) if TINY else dict(
    documents.SIZES["small"], latents=8, chunk_tokens=64, max_chunks=16, continuation=32, batch_tokens=1024,
    steps=1500, eval_windows=8, prior_steps=1500)
books = documents.book_splits()
output = os.path.join("reports", "notebook-long-documents")
cascades = {}
for method in ("c3", "mean_pool", "truncate_window"):
    cascades[method] = documents.train_document_run(os.path.join(output, method), method, 0, settings,
                                                    books["train"], settings["steps"], progress=not TINY)
prior = documents.train_prior(os.path.join(output, "prior"), 0, settings, books["train"], progress=not TINY)

# %%
windows, leaked = documents.evaluation_windows(books["dev"], books["train"], settings, settings["eval_windows"])
print(len(windows), "dev windows of", len(windows[0]), "bytes; leaked share of 32-byte stretches:",
      round(float(np.mean(leaked)), 3))
measures = {method: document_measures(cascade, windows, settings["chunk_tokens"], settings["continuation"],
                                      prior=lambda rows: prior_surprisal(prior, rows))
            for method, cascade in cascades.items() if method != "truncate_window"}
measures["truncate_window"] = documents.text_baseline_measures(cascades["truncate_window"], "truncate_window",
                                                               settings, windows)
for method, values in measures.items():
    print(method, "continuation bits per byte:", round(values["continuation_bits_per_byte"], 3))

# %% [markdown]
# Continuation at the same decoder budget: C3 and mean pooling read every chunk's block; `truncate_window` reads
# the document's last K x N bytes as text, as many rows as the K blocks. The bits the latents supply are measured
# against a language model of the training books (`prior`).
#
# Teacher-forced, strict greedy and aligned accuracy of each chunk, read back from all the blocks, by its distance
# from the end of the document. A greedy curve that falls where teacher forcing does not is error propagation,
# not lost information.

# %%
figure = plots.new_figure(11, 4)
left, right = figure.subplots(1, 2)
plots.plot_document_positions(measures["c3"], "by_chunk_index", title="C3, by chunk index", ax=left)
plots.plot_document_positions(measures["c3"], "by_distance_from_end", title="C3, from the end", ax=right)
figure

# %%
plots.plot_document_positions(measures["mean_pool"], "by_distance_from_end", title="Mean pooling, from the end")

# %% [markdown]
# One document's first and last chunks, asked for by address.

# %%
cascade = cascades["c3"]
context = windows[0][:-settings["continuation"]]
long = cascade.compress_long([context], settings["chunk_tokens"])[0]
last = long.latents.shape[0] - 1
for k, text in zip((0, last), cascade.document_reconstruct(long, [("chunk", 0), ("chunk", last)])):
    start = int(long.offsets[k])
    print(f"chunk {k}:\n  source: {bytes(context[start:start + int(long.lengths[k])].tolist())!r}\n  "
          f"decoded: {text.encode()!r}")
