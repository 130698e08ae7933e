"""Training loops with a progress bar, and exact save/resume of model, optimiser and data position."""
from __future__ import annotations

import json
import time
from typing import Callable, Iterable, Optional

from . import _core


def fit(trainer, batches: Iterable, steps: int, *, callback: Optional[Callable[[dict], None]] = None,
        progress: bool = True, description: str = "training", step_fn: Optional[Callable] = None) -> list:
    """Runs `steps` optimiser steps on batches drawn from `batches`.

    Each batch is passed to ``step_fn(trainer, batch)`` (default: ``trainer.step(batch)``), which returns the C++
    step report (loss, gradient_norm, learning_rate, tokens, seconds). The callback gets every report with
    ``tokens_per_second`` added; a tqdm bar shows the loss. Returns the reports.
    """
    step_fn = step_fn or (lambda t, batch: t.step(batch))
    reports = []
    iterator = iter(batches)
    from tqdm.auto import tqdm  # imported on first use, so that `import c3` stays light

    bar = tqdm(total=steps, desc=description, disable=not progress, leave=False, mininterval=1.0)
    try:
        for _ in range(steps):
            started = time.perf_counter()
            report = dict(step_fn(trainer, next(iterator)))
            report["tokens_per_second"] = report["tokens"] / max(time.perf_counter() - started, 1e-9)
            reports.append(report)
            if callback is not None:
                callback(report)
            bar.set_postfix(loss=f"{report['loss']:.4f}", tok_s=f"{report['tokens_per_second']:.0f}")
            bar.update(1)
    finally:
        bar.close()
    return reports


def save_checkpoint(path: str, model, trainer, extra: Optional[dict] = None) -> None:
    """The trainer's parameters, AdamW moments and step, plus `extra` (JSON: data position, ...), in one
    safetensors file written atomically (the C++ training checkpoint, for either trainer).

    Float32 throughout, so a resumed run continues bit for bit. `model` is the trainer's model; its config is
    recorded beside the tensors.
    """
    metadata = {"c3.extra": json.dumps(extra or {})}
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        metadata["c3.config"] = json.dumps(config)
    trainer.save_checkpoint(path, metadata)


def load_checkpoint(path: str, model, trainer, check: Optional[Callable[[str, dict], None]] = None) -> dict:
    """Restores what save_checkpoint wrote into the trainer and its model; returns its `extra` dict. Everything
    is checked before anything is written: a foreign file is a c3.FormatError, non-finite optimiser moments a
    c3.C3ValueError, and `extra` must be a JSON object (a c3.FormatError naming the file otherwise).
    check(path, extra), when given, checks extra's shape (raising a c3 error) before the trainer is touched."""
    metadata = _core.safetensors_metadata(path)
    try:
        extra = json.loads(metadata.get("c3.extra", "{}"))
    except ValueError as error:
        raise _core.FormatError(f"{path}: metadata c3.extra is not valid JSON: {error}") from None
    if not isinstance(extra, dict):
        raise _core.FormatError(f"{path}: metadata c3.extra must be a JSON object, got {type(extra).__name__}")
    if check is not None:
        check(path, extra)
    trainer.load_checkpoint(path)
    return extra
