"""Where the experiments' text comes from and what is held out.

Two designs. "regions": the recorded sweeps' (the default corpus cut into 100 contiguous blocks, a tenth held out,
windows that start with training text skipped; out of domain, the standard library's docstrings). "documents":
the corpus's documents split into train, dev and test (SPLIT_FRACTIONS), held-out passages that share no window of
LEAKAGE_WINDOW bytes with the training text, and out of domain the King James Version (c3.prose).
"""
from __future__ import annotations

import ast
import functools
import glob
import os
from typing import Optional

import numpy as np

from .. import _core, corpus

# Held-out designs. "regions": the recorded sweeps' design (the default corpus cut into 100 blocks, a tenth held
# out, windows that start with training text skipped). "documents": train on the train split of the corpus's
# documents (corpus.document_splits by SPLIT_FRACTIONS, seed 0 for every seed), evaluate on non-overlapping passages
# of the dev or test documents that share no LEAKAGE_WINDOW-byte stretch with the training text
# (corpus.heldout_passages), and out of domain on passages of the King James Version (prose.ood_prose_documents);
# every passage keeps its document id.
HELDOUT_DESIGNS = ("regions", "documents")
# The pretrained sweeps' design (prose_token_data): natural prose, the King James Version split by book, in tokens.
PROSE_DESIGN = "prose"
# Train, dev and test shares of the documents: a fifth held out for test gives 16 documents and about 80 clean
# passages of 512 bytes (a tenth gave 8 documents and 39 passages, too few blocks for a document bootstrap).
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
SPLITS = ("dev", "test")
LEAKAGE_WINDOW = 32
OOD_LICENCE = ("docstrings of the CPython standard library's top-level modules (Lib/*.py of the running Python), "
               "Python Software Foundation License; shipped with Python itself")


@functools.lru_cache(maxsize=1)
def ood_text() -> str:
    """Docstrings of the standard library's top-level modules, in file-name order (OOD_LICENCE)."""
    root = os.path.dirname(os.__file__)
    parts = []
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        try:
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
    return "\n\n".join(parts)


def _ids(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)


def split_regions(ids: np.ndarray, held_out_fraction: float = 0.1, blocks: int = 100):
    """(train regions, held-out regions): the token stream cut into `blocks` contiguous blocks, a fixed seeded
    tenth of them held out (the same split for every seed, so that seeds differ only in the model)."""
    bounds = np.linspace(0, len(ids), blocks + 1).astype(np.int64)
    chunks = [ids[bounds[i]:bounds[i + 1]] for i in range(blocks)]
    train, held_out = corpus.split(list(range(blocks)), held_out_fraction, seed=0)
    return [chunks[i] for i in train], [chunks[i] for i in held_out]


def default_regions():
    """(train regions, held-out regions) of the default corpus as byte ids: the sweep's fixed block split."""
    return split_regions(_ids(corpus.default_text()))


def evaluation_passages(regions, length: int, count: int, unseen_in=None, unseen_length: Optional[int] = None):
    """Up to `count` windows of `length` tokens from the regions, evenly spread (overlapping when the text is
    short), in a fixed order.

    unseen_in: regions (the training text) whose verbatim text a window must not start with: windows whose first
    `unseen_length` tokens (default: all) occur anywhere in them are skipped. The default corpus repeats its
    grammar rules and boilerplate across topics, so without this a quarter of the held-out windows of 128 bytes
    occur word for word in the training blocks, and "held-out" accuracy would partly measure memorisation."""
    per_region = np.array([max(0, len(region) - length + 1) for region in regions], np.int64)
    total = int(per_region.sum())
    if total == 0:
        return []
    first = np.concatenate([[0], np.cumsum(per_region)])

    def window(index):
        region = int(np.searchsorted(first, index, side="right") - 1)
        start = int(index - first[region])
        return regions[region][start:start + length]

    if unseen_in is None:
        return [window(i) for i in np.unique(np.linspace(0, total - 1, min(count, total)).astype(np.int64))]
    # Byte-level ids search as bytes; wider ids as int32, where a match across token boundaries can only skip more.
    wide = any(len(region) and int(np.max(region)) > 255 for region in list(unseen_in) + list(regions))
    encode = (lambda ids: np.asarray(ids, np.int32).tobytes()) if wide else \
        (lambda ids: np.asarray(ids, np.uint8).tobytes())  # noqa: E731
    seen = [encode(region) for region in unseen_in]
    check = length if unseen_length is None else min(int(unseen_length), length)
    # Candidates evenly spread over four times the count, the unseen ones kept, then `count` of those evenly spread.
    candidates = [window(i) for i in np.unique(np.linspace(0, total - 1, min(4 * count, total)).astype(np.int64))]
    unseen = [w for w in candidates if not any(encode(w[:check]) in text for text in seen)]
    if len(unseen) <= count:
        return unseen
    return [unseen[i] for i in np.unique(np.linspace(0, len(unseen) - 1, count).astype(np.int64))]


def document_data(passage_length: int, eval_count: int, ood_count: int, split: str = "dev",
                  window: int = LEAKAGE_WINDOW) -> dict:
    """The "documents" held-out design's data, as byte ids.

    Training text: the train split of corpus.documents() (corpus.document_splits with SPLIT_FRACTIONS, seed 0,
    so every seed of a sweep shares it), its documents joined by blank lines as default_text joins them, one
    region. In-domain evaluation: up to `eval_count` passages of `passage_length` bytes of the `split` documents,
    cut without overlap inside single documents, none sharing a `window`-byte stretch with the training text
    (corpus.heldout_passages; the window is at most the passage length, which only the tiny size's passages fall
    under). Out-of-domain: up to
    `ood_count` passages of the King James Version's books (prose.ood_prose_documents), cut the same way (never
    trained on, so no leakage check).

    Returns dict(train_regions, in_domain, out_of_domain (lists of int32 id arrays), in_domain_documents,
    out_of_domain_documents (document index of each passage), in_domain_names, out_of_domain_names (the names of
    the split's documents and of the books), in_domain_offsets, out_of_domain_offsets (byte offsets in the
    documents) and report (corpus.heldout_passages' reports, the split, the training documents and bytes))."""
    from .. import prose

    if split not in SPLITS:
        raise _core.C3ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    splits = corpus.document_splits(corpus.documents(), fractions=SPLIT_FRACTIONS, seed=0)
    train_text = "\n\n".join(text for _, text in splits["train"]).encode("utf-8")
    window = min(int(window), int(passage_length))
    held_out = corpus.heldout_passages(splits[split], train_text, passage_length, eval_count, seed=0, window=window)
    books = prose.ood_prose_documents()
    ood = corpus.heldout_passages(books, b"", passage_length, ood_count, seed=0, window=window)
    as_ids = lambda passages: [np.frombuffer(p, dtype=np.uint8).astype(np.int32) for p in passages]  # noqa: E731
    return dict(train_regions=[np.frombuffer(train_text, dtype=np.uint8).astype(np.int32)],
                in_domain=as_ids(held_out.passages), out_of_domain=as_ids(ood.passages),
                in_domain_documents=held_out.document_ids.tolist(), out_of_domain_documents=ood.document_ids.tolist(),
                in_domain_offsets=held_out.offsets.tolist(), out_of_domain_offsets=ood.offsets.tolist(),
                in_domain_names=[name for name, _ in splits[split]], out_of_domain_names=[name for name, _ in books],
                report=dict(split=split, train_documents=len(splits["train"]), train_bytes=len(train_text),
                            in_domain=held_out.report, out_of_domain=dict(ood.report, leaked=None)))


def prose_token_data(tokenizer, passage_tokens: int, eval_count: int, ood_count: int, split: str = "dev",
                     window: int = LEAKAGE_WINDOW) -> dict:
    """The pretrained sweeps' data ("prose"), as token ids of `tokenizer`.

    Natural prose: the King James Version's 66 books (c3.prose) split by book into train, dev and test
    (corpus.document_splits with SPLIT_FRACTIONS, seed 0, for every seed). Training text: the train books joined by
    blank lines, tokenized, one region. In-domain evaluation: up to `eval_count` passages of `passage_tokens`
    tokens of the `split` books, cut without overlap inside single books, none sharing a `window`-byte stretch of
    its text with the training text (corpus.heldout_token_passages). Out of domain: up to `ood_count` passages of
    CPython's documentation topics (corpus.documents(); never trained on, so no leakage check), a technical register
    a prose-trained cascade has not seen.

    Returns what document_data returns (offsets in tokens)."""
    from .. import prose

    if split not in SPLITS:
        raise _core.C3ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    books = prose.ood_prose_documents()
    splits = corpus.document_splits(books, fractions=SPLIT_FRACTIONS, seed=0)
    train_text = "\n\n".join(text for _, text in splits["train"])
    held_out = corpus.heldout_token_passages(splits[split], train_text.encode("utf-8"), tokenizer, passage_tokens,
                                             eval_count, seed=0, window=window)
    topics = corpus.documents()
    ood = corpus.heldout_token_passages(topics, b"", tokenizer, passage_tokens, ood_count, seed=0, window=window)
    return dict(train_regions=[np.asarray(tokenizer.encode(train_text), dtype=np.int32)],
                in_domain=list(held_out.passages), out_of_domain=list(ood.passages),
                in_domain_documents=held_out.document_ids.tolist(), out_of_domain_documents=ood.document_ids.tolist(),
                in_domain_offsets=held_out.offsets.tolist(), out_of_domain_offsets=ood.offsets.tolist(),
                in_domain_names=[name for name, _ in splits[split]], out_of_domain_names=[name for name, _ in topics],
                report=dict(split=split, corpus=prose.LICENCE, train_documents=len(splits["train"]),
                            train_bytes=len(train_text.encode("utf-8")), in_domain=held_out.report,
                            out_of_domain=dict(ood.report, leaked=None)))
