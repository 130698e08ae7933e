"""Training loops with a progress bar, and exact save/resume of model, optimiser and data position."""
from __future__ import annotations

import json
import time
from typing import Callable, Iterable, Optional

import numpy as np
from tqdm.auto import tqdm

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
    """Model parameters, AdamW moments and step, plus `extra` (JSON: data position, ...) in one safetensors file.

    Float32 throughout, so a resumed run continues bit for bit.
    """
    tensors = {name: np.asarray(value) for name, value in model.parameters().items()}
    state = trainer.optimizer_state()
    tensors["optimizer.first_moment"] = np.asarray(state["first_moment"])
    tensors["optimizer.second_moment"] = np.asarray(state["second_moment"])
    metadata = {"c3.step": str(state["step"]), "c3.extra": json.dumps(extra or {}),
                "c3.config": json.dumps(model.config)}
    _core.write_safetensors(path, tensors, "F32", metadata)


def load_checkpoint(path: str, model, trainer) -> dict:
    """Restores what save_checkpoint wrote; returns its `extra` dict. Everything is checked before anything is
    written: a foreign file is a c3.FormatError, non-finite optimiser moments a c3.C3ValueError."""
    metadata = _core.safetensors_metadata(path)
    step = metadata.get("c3.step", "")
    if not step.isdigit() or len(step) > 18:
        raise _core.FormatError(f"{path}: not a c3 training checkpoint (metadata c3.step is missing or not a number)")
    try:
        extra = json.loads(metadata.get("c3.extra", "{}"))
    except ValueError as error:
        raise _core.FormatError(f"{path}: metadata c3.extra is not valid JSON: {error}") from None
    tensors = _core.read_safetensors(path)
    wanted = list(model.parameters()) + ["optimizer.first_moment", "optimizer.second_moment"]
    missing = [name for name in wanted if name not in tensors]
    if missing:
        raise _core.FormatError(f"{path}: not a checkpoint of this model (missing tensors: {', '.join(missing[:5])})")
    trainer.load_optimizer_state(int(step), tensors["optimizer.first_moment"], tensors["optimizer.second_moment"])
    model.set_parameters({name: tensors[name] for name in model.parameters()}, strict=True)
    return extra
