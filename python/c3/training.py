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
    """Restores what save_checkpoint wrote; returns its `extra` dict."""
    tensors = _core.read_safetensors(path)
    metadata = _core.safetensors_metadata(path)
    model.set_parameters({name: tensors[name] for name in model.parameters()}, strict=True)
    trainer.load_optimizer_state(int(metadata["c3.step"]), tensors["optimizer.first_moment"],
                                 tensors["optimizer.second_moment"])
    return json.loads(metadata.get("c3.extra", "{}"))
