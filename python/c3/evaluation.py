"""How well a cascade reconstructs texts: greedy reconstruction and teacher-forced scores, in one pipeline that the
demo, `c3 eval` and the notebooks share."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _core, analysis, surprisal


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
    hypothesis_ids, teacher = [], []
    for part in batch_slices(len(texts), batch_size, progress, "evaluating"):
        rows = references[part]
        latents, latent_mask = cascade.encode(rows)  # the mask: full_context's padding
        hypothesis_ids += [np.asarray(row, dtype=np.int32) for row in cascade.reconstruct(
            latents, max_new_tokens=max_new_tokens, source_tokens=[len(row) for row in rows], return_ids=True,
            latent_mask=latent_mask)]
        scores = cascade.score(latents, rows, latent_mask=latent_mask)
        teacher += [scores["correct"][row][scores["valid"][row]] for row in range(len(rows))]
    hypotheses = [cascade.tokenizer.decode(row) for row in hypothesis_ids]
    decay = analysis.position_profile(references, hypothesis_ids, bins=DECAY_BINS)
    teacher_decay = _core.correctness_profile([np.asarray(row) for row in teacher], bins=DECAY_BINS)
    strict_decay = _core.correctness_profile([surprisal.strict_correct(reference, hypothesis) for reference, hypothesis
                                              in zip(references, hypothesis_ids)], bins=DECAY_BINS)
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
