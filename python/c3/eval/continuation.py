"""What the latents are worth downstream: the decoder's loss on a continuation of the compressed context.

A text is split into a context (compressed, or truncated, or dropped, by the cascade's method) and the
continuation that follows it; the loss on the continuation's tokens given the latents is reported in bits per
UTF-8 byte of the continuation, so that cascades with different tokenizers compare.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .. import _core

LN2 = math.log(2.0)


def continuation_nats(model, contexts, context_mask, continuations, continuation_mask) -> np.ndarray:
    """Per-row sum of -ln p(continuation token | latents of the context, earlier continuation tokens), float64 [B].
    `model` is a c3._core.CascadeModel; contexts [B, Lc] left-padded, continuations [B, La] right-padded (no stop
    token)."""
    latents, latent_mask = model.compress_with_mask(contexts, context_mask)
    return row_nats(model.score(latents, continuations, continuation_mask, latent_mask=latent_mask))


def row_nats(scores: dict) -> np.ndarray:
    """Per-row sum of -ln p over the valid positions of a score result (CascadeModel.score, Cascade.score),
    float64 [B]."""
    log_probability = np.where(scores["valid"], scores["log_probability"].astype(np.float64), 0.0)
    return -log_probability.sum(axis=1)


def utf8_bytes(cascade, ids) -> int:
    """The UTF-8 bytes token ids stand for: one per token for a byte-level tokenizer (a row cut inside a character
    keeps its bytes as they are), else the bytes of the decoded text."""
    if isinstance(cascade.tokenizer, _core.ByteTokenizer):
        return int(len(ids))
    return len(cascade.tokenizer.decode(np.asarray(ids, np.int32)).encode("utf-8"))


def bits_per_byte(cascade, contexts: Sequence, continuations: Sequence, batch_size: Optional[int] = 32) -> dict:
    """Continuation loss of a c3.Cascade on (context, continuation) pairs of texts or token-id rows: bits_per_byte
    (total bits over total UTF-8 bytes of the continuations), bits_per_token, tokens, bytes."""
    if len(contexts) != len(continuations) or not len(contexts):
        raise _core.C3ValueError(f"{len(contexts)} contexts against {len(continuations)} continuations")
    total_nats, tokens, size = 0.0, 0, 0
    step = batch_size or len(contexts)
    for start in range(0, len(contexts), step):
        part_contexts = list(contexts[start:start + step])
        part_continuations = list(continuations[start:start + step])
        context_ids, context_mask = cascade.context_batch(part_contexts)
        answer_ids, answer_mask = cascade.answer_batch(part_continuations, add_stop=False)
        total_nats += float(continuation_nats(cascade.model, context_ids, context_mask, answer_ids, answer_mask).sum())
        tokens += int(answer_mask.sum())
        for item in part_continuations:
            size += len(item.encode("utf-8")) if isinstance(item, str) else utf8_bytes(cascade, item)
    if size == 0:
        raise _core.C3ValueError("the continuations hold no bytes")
    bits = total_nats / LN2
    return dict(bits_per_byte=bits / size, bits_per_token=bits / max(tokens, 1), tokens=tokens, bytes=size)
