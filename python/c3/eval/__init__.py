"""Evaluation of cascades: the one per-row scorer (score_rows) and what is built on it.

    c3.eval.evaluate(cascade, texts)      greedy reconstruction, teacher-forced and Fox scores, decay curves
    c3.eval.score_rows(cascade, rows)     per row: teacher-forced correctness and bits, greedy ids, continuation
    c3.eval.surprisal                     prior surprisal, error tables by position x surprisal, accuracy curves
    c3.eval.continuation                  continuation loss in bits per byte
    c3.eval.distributed                   the same evaluation and compression over Ray workers

This layer sits on the package face (c3.Cascade, c3.analysis) and below c3.experiments and the CLI.
"""
from . import continuation, surprisal  # noqa: F401
from .scoring import (  # noqa: F401
    DECAY_BINS,
    batch_slices,
    evaluate,
    evaluate_part,
    information_bits,
    merge_parts,
    score_rows,
    source_rows,
    valid_values,
)
