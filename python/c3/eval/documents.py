"""Where information is lost across a long document: every measure by chunk index and by distance from the end.

Each document (token ids) is split into a context and the continuation that follows it (its last
`continuation_tokens` tokens). The context is compressed in chunks of `chunk_tokens` (Cascade.compress_long), and
the decoder reads all K blocks at once (Cascade.document_score, document_reconstruct):

- addressed reconstruction of each chunk k (the task ("chunk", k)): teacher-forced accuracy, strict greedy and
  aligned greedy accuracy, the reconstruction's bits per token, and the bits the latents supply, the decoder
  prior's surprisal of the chunk (an empty block, surprisal.prior_surprisal) minus the reconstruction's;
- continuation (the task "continue"): bits per UTF-8 byte of the continuation given every block.

Measures are kept per chunk and averaged over documents by chunk index (0 = the first chunk) and by distance from
the end (0 = the last chunk), each with its count, so that documents of different lengths line up at either end.
A chunk's greedy and teacher-forced scores come from the same K-block prompt; the three accuracies sit side by side
so that a greedy fall that teacher forcing does not share shows error propagation, not lost information.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .. import _core
from .continuation import LN2, utf8_bytes
from .surprisal import aligned_correct, prior_surprisal, strict_correct

MEASURES = ("teacher_forced", "strict", "aligned", "reconstruction_bits", "supplied_bits")


def _positions(values: dict, key: str, count: int) -> dict:
    """{measure: [mean at each index 0..count-1]} and counts, over the chunk records in values[index]."""
    result = {measure: [] for measure in MEASURES}
    result["chunks"] = []
    for index in range(count):
        records = values.get(index, [])
        result["chunks"].append(len(records))
        for measure in MEASURES:
            known = [r[measure] for r in records if r[measure] is not None]
            result[measure].append(float(np.mean(known)) if known else None)
    result["index"] = key
    return result


def document_measures(cascade, documents: Sequence, chunk_tokens: int, continuation_tokens: int,
                      reconstruct: bool = True, batch_size: int = 16, batch_chunks: int = 32,
                      max_new_tokens: Optional[int] = None, prior: Optional[Callable] = None) -> dict:
    """Every measure of a cascade on whole documents (see the module docstring). documents: token-id rows, each
    longer than continuation_tokens. Returns per_document (each: chunks, a list of per-chunk records with index,
    from_end, tokens and MEASURES; continuation_bits and continuation_bytes), by_chunk_index and
    by_distance_from_end ({measure: [mean per position], chunks: [count per position]}), and
    continuation_bits_per_byte over all documents. reconstruct=False leaves strict and aligned out (None). prior
    maps token rows to each token's surprisal in bits (default: the cascade's decoder with an empty block,
    surprisal.prior_surprisal; a language model of the corpus is the better reference when the decoder never
    trained without blocks)."""
    rows = [np.asarray(row, dtype=np.int32) for row in documents]
    if not rows:
        raise _core.C3ValueError("document_measures needs at least one document")
    if int(continuation_tokens) < 1:
        raise _core.C3ValueError(f"continuation_tokens must be at least 1, got {continuation_tokens}")
    for index, row in enumerate(rows):
        if row.ndim != 1 or len(row) <= int(continuation_tokens):
            raise _core.C3ValueError(f"document {index} has {row.size} tokens: it needs more than the "
                                     f"{int(continuation_tokens)} continuation tokens, in one row")
    contexts = [row[:len(row) - int(continuation_tokens)] for row in rows]
    continuations = [row[len(row) - int(continuation_tokens):] for row in rows]
    longs = cascade.compress_long(contexts, chunk_tokens, batch_chunks)
    per_document, by_index, by_end = [], {}, {}
    total_bits, total_bytes = 0.0, 0
    for context, following, long in zip(contexts, continuations, longs):
        chunks = [context[int(o):int(o) + int(n)] for o, n in zip(long.offsets, long.lengths)]
        tasks = [("chunk", k) for k in range(len(chunks))]
        scores = cascade.document_score(long, chunks, tasks, batch_size=batch_size)
        hypotheses = (cascade.document_reconstruct(long, tasks, max_new_tokens=max_new_tokens, return_ids=True,
                                                   batch_size=batch_size) if reconstruct else None)
        prior_bits_of = prior(chunks) if prior is not None else prior_surprisal(cascade, chunks, batch_size)
        records = []
        for k, chunk in enumerate(chunks):
            valid = scores["valid"][k]
            bits = -scores["log_probability"][k][valid].astype(np.float64) / LN2
            prior_bits = np.asarray(prior_bits_of[k], np.float64)
            known = np.isfinite(prior_bits)  # the first token of a prior without prefix has none
            record = dict(index=k, from_end=len(chunks) - 1 - k, tokens=int(len(chunk)),
                          teacher_forced=float(scores["correct"][k][valid].mean()),
                          strict=float(strict_correct(chunk, hypotheses[k]).mean()) if reconstruct else None,
                          aligned=float(aligned_correct(chunk, hypotheses[k]).mean()) if reconstruct else None,
                          reconstruction_bits=float(bits.mean()),
                          supplied_bits=float((prior_bits[known] - bits[known]).mean()) if known.any() else None)
            records.append(record)
            by_index.setdefault(k, []).append(record)
            by_end.setdefault(record["from_end"], []).append(record)
        follow = cascade.document_score(long, [following], ["continue"])
        nats = -float(np.sum(follow["log_probability"][0][follow["valid"][0]], dtype=np.float64))
        size = utf8_bytes(cascade, following)
        total_bits, total_bytes = total_bits + nats / LN2, total_bytes + size
        per_document.append(dict(chunks=records, continuation_bits=nats / LN2, continuation_bytes=size))
    longest = max(len(d["chunks"]) for d in per_document)
    return dict(per_document=per_document, by_chunk_index=_positions(by_index, "chunk index", longest),
                  by_distance_from_end=_positions(by_end, "distance from the end", longest),
                  continuation_bits_per_byte=total_bits / max(total_bytes, 1), chunk_tokens=int(chunk_tokens),
                  continuation_tokens=int(continuation_tokens))
