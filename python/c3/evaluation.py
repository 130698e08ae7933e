"""How well a cascade reconstructs texts: greedy reconstruction and teacher-forced scores, in one pipeline that the
demo, `c3 eval` and the notebooks share."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _core, analysis


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


def evaluate(cascade, texts: Sequence[str], truncate: bool = False, max_new_tokens: Optional[int] = None,
             batch_size: Optional[int] = None, progress: bool = False, examples: int = 3,
             truncate_option: str = "truncate=True") -> dict:
    """Greedy reconstruction and teacher-forced scores of `cascade` on `texts`.

    Returns a dict of
      token_accuracy           strict: the reconstruction's i-th token must be the reference's i-th, mean over texts
      teacher_forced_accuracy  argmax == reference token given the true prefix, over all tokens
      fox_precision, recall, f1, bleu, edit_distance   the Fox benchmark's metrics (analysis.fox_metrics)
      compression_ratio        mean text tokens per latent
      count                    number of texts
      decay, teacher_decay     accuracy by relative position (analysis.decay_curve), NumPy arrays
      examples                 the first `examples` (reference, reconstruction) pairs
    Texts longer than the encoder reads raise (the message names truncate_option), or with truncate=True are cut
    and scored against what was kept.
    max_new_tokens defaults to Cascade.default_max_new_tokens of each batch's token counts.
    """
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
    strict = _core.token_accuracy_batch(references, hypothesis_ids)
    fox = analysis.fox_metrics(texts, hypotheses)
    return dict(
        token_accuracy=float(np.mean(strict["accuracy"])),
        teacher_forced_accuracy=float(np.mean(np.concatenate(teacher))),
        fox_precision=fox["precision"], recall=fox["recall"], f1=fox["f1"], bleu=fox["bleu"],
        edit_distance=fox["edit_distance"],
        compression_ratio=float(np.mean([len(row) for row in references]) / cascade.num_latents),
        count=len(texts),
        decay=analysis.decay_curve(list(zip(references, hypothesis_ids))), teacher_decay=analysis.decay_curve(teacher),
        examples=[(texts[index], hypotheses[index]) for index in range(min(examples, len(texts)))],
    )
