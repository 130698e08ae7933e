"""How well a cascade reconstructs texts. score_rows is the one per-row scorer: greedy reconstruction,
teacher-forced correctness and surprisal, and continuation loss, batch by batch; evaluate (the demo, `c3 eval`,
c3.eval.distributed and the notebooks) and the sweep's evaluation (c3.experiments.runs) both read its rows."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import _core, analysis
from . import continuation, surprisal


def batch_slices(count: int, batch_size: Optional[int] = None, progress: bool = False, description: str = ""):
    """Slices that cover range(count) in pieces of batch_size (None: one piece), with a progress bar on stderr
    that counts the texts done."""
    if batch_size is not None and int(batch_size) < 1:
        raise _core.C3ValueError(f"batch_size must be at least 1, got {batch_size}")
    step = max(1, int(batch_size or count))
    with tqdm(total=count, desc=description, unit="text", disable=not progress, leave=False) as bar:
        for start in range(0, count, step):
            stop = min(count, start + step)
            yield slice(start, stop)
            bar.update(stop - start)


def source_rows(cascade, texts: Sequence[str], truncate: bool = False, option: str = "truncate=True"):
    """(token-id rows, indices of the cut rows) of texts as the encoder reads them: a text longer than
    cascade.max_context_tokens raises (naming `option`, which cuts it) or with truncate=True is cut."""
    rows, cut, limit = cascade.tokenize(texts), [], cascade.max_context_tokens
    for index, row in enumerate(rows):
        if len(row) > limit:
            if not truncate:
                raise _core.C3ValueError(f"text {index + 1} has {len(row)} tokens, more than the encoder's {limit}; "
                                         f"pass {option} to cut it")
            rows[index] = row[:limit]
            cut.append(index)
    return rows, cut


DECAY_BINS = 20  # bins of relative position in the decay curves


def valid_values(scores: dict, key: str, row: int) -> np.ndarray:
    """One row of a Cascade.score result's `key`, at the row's valid answer positions."""
    return scores[key][row][scores["valid"][row]]


def score_rows(cascade, rows: Sequence, batch_size: Optional[int] = None, reconstruct: bool = True,
               continuations: Optional[Sequence] = None, max_new_tokens: Optional[int] = None,
               progress: bool = False, description: str = "scoring", continuation_task: bool = False) -> dict:
    """Every per-row score of a cascade on token rows, from one encoding of each batch of `batch_size` rows.

    rows: token-id rows the encoder reads (each at most cascade.max_context_tokens). Returns a dict of per-row
    lists: ``correct`` (int8: the decoder, fed the true prefix after the row's latents, predicts each answer
    token, the row's tokens then the stop token), ``bits`` (float64: -log2 p of each of those tokens),
    ``hypotheses`` (int32 greedy reconstructions, as long as Cascade.default_max_new_tokens of the batch or
    `max_new_tokens`) and ``strict`` (int8 per reference token: the reconstruction's i-th token is the
    reference's i-th) (both None when reconstruct is False; the aligned kept rate needs an alignment per row, which
    callers that want it make: surprisal.aligned_correct) and ``continuation_nats`` (float: -ln p of the row's
    continuation tokens given its latents, no stop token; None without `continuations`, one per row; asked for
    by the "continue" task's suffix with continuation_task, as Cascade.train_step trains it)."""
    if continuations is not None and len(continuations) != len(rows):
        raise _core.ShapeError(f"{len(rows)} rows against {len(continuations)} continuations")
    correct, bits, hypotheses, following = [], [], [] if reconstruct else None, \
        [] if continuations is not None else None
    for part in batch_slices(len(rows), batch_size, progress, description):
        batch = rows[part]
        latents, latent_mask = cascade.encode(batch)  # the mask: full_context's padding
        if reconstruct:
            hypotheses += [np.asarray(row, dtype=np.int32) for row in cascade.reconstruct(
                latents, max_new_tokens=max_new_tokens, source_tokens=[len(row) for row in batch], return_ids=True,
                latent_mask=latent_mask)]
        scores = cascade.score(latents, batch, latent_mask=latent_mask)
        correct += [valid_values(scores, "correct", k).astype(np.int8) for k in range(len(batch))]
        # log_probability is natural: -log2 p = -ln p / ln 2.
        bits += [-valid_values(scores, "log_probability", k).astype(np.float64) / continuation.LN2
                 for k in range(len(batch))]
        if continuations is not None:
            following += continuation.row_nats(cascade.score(
                latents, continuations[part], latent_mask=latent_mask,
                task="continue" if continuation_task else None)).tolist()
    strict = None
    if reconstruct:
        strict = [surprisal.strict_correct(row, hypothesis) for row, hypothesis in zip(rows, hypotheses)]
    return dict(correct=correct, bits=bits, hypotheses=hypotheses, strict=strict, continuation_nats=following)


def evaluate(cascade, texts: Sequence[str], truncate: bool = False, max_new_tokens: Optional[int] = None,
             batch_size: Optional[int] = None, progress: bool = False, examples: int = 3,
             truncate_option: str = "truncate=True") -> dict:
    """Greedy reconstruction and teacher-forced scores of `cascade` on `texts`.

    Returns a dict of:

    - ``token_accuracy``: strict, the reconstruction's i-th token must be the reference's i-th; mean over texts.
    - ``teacher_forced_accuracy``: argmax == reference token given the true prefix, over all tokens.
    - ``fox_precision``, ``recall``, ``f1``, ``bleu``, ``edit_distance``: the Fox benchmark's metrics
      (analysis.fox_metrics).
    - ``compression_ratio``: mean text tokens per latent; ``count``: the number of texts.
    - ``decay``, ``teacher_decay``, ``strict_decay``: accuracy by relative position (analysis.decay_curve), NumPy
      arrays. ``decay`` is the greedy kept rate after alignment (it forgives the shift after a slip),
      ``strict_decay`` strict greedy accuracy (every token after a slip is wrong); beside ``teacher_decay`` they
      tell error propagation from lost information.
    - ``examples``: the first `examples` (reference, reconstruction) pairs.

    Texts longer than the encoder reads raise (the message names truncate_option), or with truncate=True are cut
    and scored against what was kept.
    max_new_tokens defaults to Cascade.default_max_new_tokens of each batch's token counts.

    This is merge_parts of one evaluate_part over all the texts: a corpus evaluated in parts (c3.distributed)
    gives the same result when its parts are cut at multiples of batch_size.
    """
    part = evaluate_part(cascade, texts, truncate, max_new_tokens, batch_size, progress, examples, truncate_option)
    return merge_parts([part], cascade.num_latents, examples)


def evaluate_part(cascade, texts: Sequence[str], truncate: bool = False, max_new_tokens: Optional[int] = None,
                  batch_size: Optional[int] = None, progress: bool = False, examples: int = 3,
                  truncate_option: str = "truncate=True") -> dict:
    """The per-text scores and summable counts of `evaluate` for one part of a corpus, as plain JSON values
    (NaN as None): merge_parts turns the parts, in corpus order, into evaluate's metrics."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("pass a list of texts, not one string")
    texts = list(texts)
    references, cut = source_rows(cascade, texts, truncate, truncate_option)
    for index in cut:
        texts[index] = cascade.tokenizer.decode(references[index])
    scores = score_rows(cascade, references, batch_size, max_new_tokens=max_new_tokens, progress=progress,
                        description="evaluating")
    hypothesis_ids, teacher = scores["hypotheses"], scores["correct"]
    hypotheses = [cascade.tokenizer.decode(row) for row in hypothesis_ids]
    decay = analysis.position_profile(references, hypothesis_ids, bins=DECAY_BINS)
    teacher_decay = _core.correctness_profile(teacher, bins=DECAY_BINS)
    strict_decay = _core.correctness_profile(scores["strict"], bins=DECAY_BINS)
    return dict(
        source_tokens=[len(row) for row in references],
        token_accuracy=analysis.token_accuracy_batch(references, hypothesis_ids)["accuracy"].tolist(),
        fox={key: [None if np.isnan(value) else float(value) for value in values]
             for key, values in analysis.fox_page_scores(texts, hypotheses).items()},
        decay={key: decay[key].tolist() for key in analysis.PROFILE_COUNTS},
        teacher_decay={key: teacher_decay[key].tolist() for key in analysis.CORRECTNESS_COUNTS},
        strict_decay={key: strict_decay[key].tolist() for key in analysis.CORRECTNESS_COUNTS},
        hypotheses=hypotheses,
        examples=[[texts[index], hypotheses[index]] for index in range(min(examples, len(texts)))],
    )


def merge_parts(parts: Sequence[dict], num_latents: int, examples: int = 3) -> dict:
    """evaluate's metrics from evaluate_part results in corpus order: means over all texts (or all tokens) of the
    concatenated per-text scores, decay curves of the summed counts."""
    def joined(key):
        return [value for part in parts for value in part[key]]

    def summed(key, names):
        return {name: np.sum([np.asarray(part[key][name], np.int64) for part in parts], axis=0) for name in names}

    fox = analysis.fox_summary({key: np.array([np.nan if value is None else value for part in parts
                                               for value in part["fox"][key]], dtype=np.float64)
                                for key in analysis.FOX_SCORES})
    teacher_decay = summed("teacher_decay", analysis.CORRECTNESS_COUNTS)
    correct, total = int(teacher_decay["correct"].sum()), int(teacher_decay["total"].sum())
    count = len(joined("source_tokens"))
    return dict(
        token_accuracy=float(np.mean(np.asarray(joined("token_accuracy"), dtype=np.float64))),
        # The mean of the concatenated 0/1 scores, as an exact count over a count.
        teacher_forced_accuracy=correct / total if total else float("nan"),
        fox_precision=fox["precision"], recall=fox["recall"], f1=fox["f1"], bleu=fox["bleu"],
        edit_distance=fox["edit_distance"],
        compression_ratio=float(np.mean(joined("source_tokens")) / num_latents),
        count=count,
        decay=analysis.decay_from_counts(summed("decay", analysis.PROFILE_COUNTS), passages=count),
        teacher_decay=analysis.decay_from_counts(teacher_decay, passages=count),
        strict_decay=analysis.decay_from_counts(summed("strict_decay", analysis.CORRECTNESS_COUNTS), passages=count),
        examples=[tuple(pair) for pair in joined("examples")[:examples]],
    )


def information_bits(reconstruction_bits, prior_bits, latents: int) -> dict:
    """What the latents supply, in bits, from per-token surprisals of the same passages.

    reconstruction_bits: per passage, -log2 p of each true token given the latents (teacher-forced);
    prior_bits: per passage, -log2 p of each token under a prior (a language model without context).
    The bits the latents supply at a position are prior minus reconstruction surprisal; summed over a passage they
    are the passage's total bits supplied, and that total / N is the capacity used per latent.

    Returns dict(reconstruction_bits_per_token, prior_bits_per_token (token-weighted means), supplied_bits (per
    passage), supplied_bits_per_passage (their mean), bits_per_latent (per passage), bits_per_latent_mean)."""
    if len(reconstruction_bits) != len(prior_bits):
        raise _core.ShapeError(f"{len(reconstruction_bits)} passages of reconstruction surprisal, "
                               f"{len(prior_bits)} of prior surprisal")
    supplied, tokens, reconstruction_sum, prior_sum = [], 0, 0.0, 0.0
    for reconstruction, prior in zip(reconstruction_bits, prior_bits):
        reconstruction = np.asarray(reconstruction, np.float64)
        prior = np.asarray(prior, np.float64)
        if reconstruction.shape != prior.shape:
            raise _core.ShapeError(f"a passage has {reconstruction.size} reconstruction and {prior.size} prior "
                                   "surprisals")
        supplied.append(float((prior - reconstruction).sum()))
        tokens += reconstruction.size
        reconstruction_sum += float(reconstruction.sum())
        prior_sum += float(prior.sum())
    per_latent = [value / latents for value in supplied]
    return dict(reconstruction_bits_per_token=reconstruction_sum / tokens if tokens else None,
                prior_bits_per_token=prior_sum / tokens if tokens else None,
                supplied_bits=supplied, supplied_bits_per_passage=float(np.mean(supplied)) if supplied else None,
                bits_per_latent=per_latent, bits_per_latent_mean=float(np.mean(per_latent)) if per_latent else None)
