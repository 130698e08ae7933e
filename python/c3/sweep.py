"""Ratio sweeps: methods x ratios x seeds at a fixed number of latents N, resumable, with a report.

    c3 sweep --output reports/sweep [--methods c3,mean_pool,truncate,no_context,full_context]
             [--ratios 2,4,8,16,32] [--seeds 0,1] [--steps 3000] [--size default|small|tiny] [--curriculum 0.4]
             [--batch-tokens 2048] [--jobs 2] [--shares 0]
             [--balance bytes|passages|longest|W1:W2:...]

Design. As in the C3 paper (which reads Fox's ratios off length bins of one model), each (method, seed) trains ONE
model on contexts of mixed length: every step draws a ratio r from the sweep's ratios and a batch of r * N-token
contexts. Each ratio is then read off held-out contexts of exactly r * N tokens. This costs methods x seeds runs
instead of methods x ratios x seeds, and every ratio sees the same model, so the curves compare positions and
ratios without one model per point. (A model trained at one ratio only would do somewhat better at that ratio.)

Two parts of the recipe exist because of what was measured on the default size:

- Every batch holds about the same number of context tokens (`batch_tokens`): r * N-token contexts come
  batch_tokens / (r * N) at a time, so a step costs about the same at every ratio instead of the longest ratio's
  steps taking most of the time.
- A ratio curriculum. Trained from scratch on all ratios at once, a cascade stays at the decoder's language-model
  prior (teacher-forced accuracy equal to no context's at every ratio after 1,250 steps), while the same cascade
  trained at 2x alone reads its latents after about 200 steps. So the ratios are unlocked in increasing order over
  the first `curriculum` fraction of the steps (ratio k of R at step k/R * curriculum * steps), each step drawing
  uniformly among the unlocked ones; after that every ratio is in the mix. `curriculum=0` is the plain mixture.

Every run checkpoints its parameters, AdamW moments and data-order state every `checkpoint_every` steps (one
safetensors file, replaced atomically). Rerunning the same command continues each run from its last checkpoint;
finished runs (trained.json) and finished evaluations (evaluation.json) are skipped. A run's data order is drawn
from its own seeded generator, so a resumed run ends bit-identical to an uninterrupted one at the same thread count
(with fixed `shares`, at any thread count).

Data. Byte-level. In-domain: CPython's pydoc topics (corpus.LICENCE), split by contiguous blocks into training
and held-out text. Out-of-domain: the docstrings of the standard library's top-level modules (OOD_LICENCE), never
trained on. Each evaluation passage is a context of r * N bytes followed by a continuation of `continuation`
bytes.

Evaluation, per method, seed and ratio, on held-out passages: greedy reconstruction (strict and aligned token
accuracy, Fox precision, edit distance), teacher-forced accuracy, accuracy-by-position curves of all three,
continuation loss in bits per byte, and the errors by (position x surprisal) with a logistic regression of error
on position and surprisal. Surprisal is under the sweep's trained no_context model of the same seed (a language
model of the corpus) when no_context is among the methods, else under each cascade's decoder prior.
"""
from __future__ import annotations

import ast
import functools
import glob
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _core, analysis, corpus, statistics, surprisal
from .cascade import Cascade, byte_tokenizer, scratch_model_config
from .training import load_checkpoint, save_checkpoint

METHODS = tuple(_core.method_names())  # the C++ list (cascade/baselines.hpp), the one source of method names
DEFAULT_METHODS = ("c3", "mean_pool", "truncate", "no_context", "full_context")
DEFAULT_RATIOS = (2, 4, 8, 16, 32)
MAX_SHARES = 1024  # TrainingOptions' kMaxDataParallelShares
# Held-out designs. "regions": the recorded sweeps' design (the default corpus cut into 100 blocks, a tenth held
# out, windows that start with training text skipped). "documents": train on the train split of the corpus's
# documents (corpus.document_splits, seed 0 for every seed), evaluate on non-overlapping passages of the dev or test
# documents that share no LEAKAGE_WINDOW-byte stretch with the training text (corpus.heldout_passages), and out of
# domain on passages of the King James Version (prose.ood_prose_documents); every passage keeps its document id.
HELDOUT_DESIGNS = ("regions", "documents")
SPLITS = ("dev", "test")
LEAKAGE_WINDOW = 32
# Training recipes: the settings that differ between the recorded sweeps and the demo, in one place. "recorded" is
# what docs/results/*/ were run with (AdamW beta2 0.999), so their commands still reproduce; "demo" is the demo's
# (beta2 0.95: adapts the step sizes to each newly unlocked ratio at once; docs/DEMO.md, "Recipe"). A sweep
# with --heldout documents uses "demo" unless --recipe says otherwise.
RECIPES = {"recorded": dict(beta2=0.999), "demo": dict(beta2=0.95)}
OOD_LICENCE = ("docstrings of the CPython standard library's top-level modules (Lib/*.py of the running Python), "
               "Python Software Foundation License; shipped with Python itself")

SIZES = {
    # track_points: how often (evenly over the steps) a run scores held-out teacher-forced accuracy of each ratio
    # on track_passages in-domain passages while it trains, so that a report shows whether each ratio converged.
    "default": dict(model=dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=8, num_kv_heads=4),
                    latents=16, batch_tokens=2048, curriculum=0.4, learning_rate=3e-3, steps=3000,
                    eval_passages=512, ood_passages=256, continuation=64, checkpoint_every=100, eval_batch=32,
                    track_points=20, track_passages=64),
    # The demo's shape (c3.demo): one layer fewer and rotary base 10^3, which removes the default's accuracy dips
    # at fixed positions, at half the context bytes a step; a step costs about a third of the default's.
    "small": dict(model=dict(hidden_size=128, intermediate_size=384, num_layers=3, num_heads=8, num_kv_heads=4,
                             rope_theta=1000.0),
                  latents=16, batch_tokens=1024, curriculum=0.4, learning_rate=2e-3, steps=8000,
                  eval_passages=512, ood_passages=256, continuation=64, checkpoint_every=100, eval_batch=32,
                  track_points=20, track_passages=64),
    "tiny": dict(model=dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
                 latents=4, batch_tokens=32, curriculum=0.5, learning_rate=3e-3, steps=6, eval_passages=6,
                 ood_passages=4, continuation=8, checkpoint_every=3, eval_batch=8, track_points=2, track_passages=2),
}


# ---- data -----------------------------------------------------------------------------------------------------
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

    Training text: the train split of corpus.documents() (corpus.document_splits, seed 0, so every seed of a sweep
    shares it), its documents joined by blank lines as default_text joins them, one region. In-domain evaluation:
    up to `eval_count` passages of `passage_length` bytes of the `split` documents, cut without overlap inside
    single documents, none sharing a `window`-byte stretch with the training text (corpus.heldout_passages; the
    window is at most the passage length, which only the tiny size's passages fall under). Out-of-domain: up to
    `ood_count` passages of the King James Version's books (prose.ood_prose_documents), cut the same way (never
    trained on, so no leakage check).

    Returns dict(train_regions, in_domain, out_of_domain (lists of int32 id arrays), in_domain_documents,
    out_of_domain_documents (document index of each passage), in_domain_names, out_of_domain_names (the names of
    the split's documents and of the books), in_domain_offsets, out_of_domain_offsets (byte offsets in the
    documents) and report (corpus.heldout_passages' reports, the split, the training documents and bytes))."""
    from . import prose

    if split not in SPLITS:
        raise _core.C3ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    splits = corpus.document_splits(corpus.documents(), seed=0)
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


BALANCES = ("bytes", "passages", "longest")


def check_balance(balance: str, ratios: Optional[Sequence[int]] = None) -> str:
    """`balance` if it is one of BALANCES or ratio weights "w1:w2:...": one positive number per ratio (of `ratios`,
    when given), in increasing ratio order; else a C3ValueError naming the forms."""
    if balance in BALANCES or ratio_weights(balance, ratios) is not None:
        return balance
    raise _core.C3ValueError(f"balance must be one of {', '.join(BALANCES)} or ratio weights such as 1:2:4 (one "
                             f"positive number per ratio, in increasing ratio order), got {balance!r}")


def check_fraction(name: str, value: float) -> float:
    """`value` as a float if it is a number in [0, 1] (a curriculum, a loss weight, a learning-rate floor); else a
    C3ValueError naming `name`. NaN is refused: no comparison holds for it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise _core.C3ValueError(f"{name} must be in [0, 1], got {value!r}")
    return number


def ratio_weights(balance: str, ratios: Optional[Sequence[int]] = None) -> Optional[list]:
    """The weights of a "w1:w2:..." balance as floats, or None when it is not one (or not one weight per ratio)."""
    if not isinstance(balance, str):
        return None
    try:
        weights = [float(part) for part in balance.split(":")]
    except ValueError:
        return None
    if not all(math.isfinite(w) and w > 0 for w in weights):
        return None
    if ratios is not None and len(weights) != len(ratios):
        return None
    return weights


class MixedBatches:
    """Training batches of mixed ratio from the training regions: each draw picks a ratio among those unlocked at
    that step (see the module's notes on the curriculum), then batch_tokens / (ratio * N) windows (at least one)
    of ratio * N + continuation tokens. The generator's state travels in the checkpoint.

    balance: how the ratio is picked among the unlocked ones. "bytes": each equally likely, so each ratio trains on
    the same number of context bytes (and a long ratio on fewer passages). "passages": each with probability in
    proportion to the ratio, so each ratio trains on about the same number of passages (the long ratios, the
    slowest to learn, get more of the steps). "longest": as "passages", with the weight of the longest ratio of
    all doubled once it is unlocked: it is the slowest to learn, and the shorter ones, once read, need only to be
    kept (at 2x, 4x and 8x the draws are 1 : 2 : 8). "w1:w2:...": one weight per ratio in increasing order, each
    unlocked ratio drawn in proportion to its weight (to give the most steps to the ratios that must converge)."""

    def __init__(self, regions, ratios, latents, batch_tokens, continuation, seed, curriculum_steps=0,
                 balance="bytes"):
        ordered = sorted(ratios)
        self.balance = check_balance(balance, ordered)
        # Each ratio's draw weight for "passages", "longest" and given weights ("bytes" draws uniformly).
        self.ratio_weight = dict(zip(ordered, ratio_weights(self.balance, ordered) or ordered))
        self.regions = [r for r in regions if len(r) > max(ratios) * latents + continuation]
        if not self.regions:
            raise _core.C3ValueError("the training text is too short for the longest ratio")
        self.weights = np.array([len(r) for r in self.regions], np.float64)
        self.weights /= self.weights.sum()
        self.ratios, self.latents, self.continuation = sorted(ratios), latents, continuation
        self.batch_tokens, self.curriculum_steps = batch_tokens, curriculum_steps
        self.rng = np.random.default_rng(seed)

    def unlocked(self, step: int) -> list:
        """The ratios drawn from at `step` (0-based): the k-th smallest from step k / R * curriculum_steps on."""
        count = len(self.ratios)
        return [r for k, r in enumerate(self.ratios) if k * self.curriculum_steps <= step * count]

    def batch_for(self, ratio: int) -> int:
        return max(1, self.batch_tokens // (ratio * self.latents))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def draw(self, step: int = 0):
        """(contexts [B, r * N], continuations [B, C]) as int32 arrays, for 0-based `step`."""
        unlocked = self.unlocked(step)
        if self.balance == "bytes":
            ratio = unlocked[int(self.rng.integers(len(unlocked)))]
        else:
            weights = np.array([self.ratio_weight[r] for r in unlocked], np.float64)
            if self.balance == "longest" and unlocked[-1] == self.ratios[-1]:
                weights[-1] *= 2.0
            ratio = unlocked[int(self.rng.choice(len(unlocked), p=weights / weights.sum()))]
        length = ratio * self.latents
        contexts, continuations = [], []
        for region_index in self.rng.choice(len(self.regions), size=self.batch_for(ratio), p=self.weights):
            region = self.regions[region_index]
            start = int(self.rng.integers(0, len(region) - length - self.continuation + 1))
            contexts.append(region[start:start + length])
            continuations.append(region[start + length:start + length + self.continuation])
        return np.stack(contexts), np.stack(continuations)


# ---- training compute -----------------------------------------------------------------------------------------
def ratio_probabilities(ratios, step: int, curriculum_steps: int, balance: str = "bytes") -> dict:
    """{ratio: probability that MixedBatches.draw picks it at 0-based `step`}: the same unlocking and balance rules
    as MixedBatches (its draw is not changed, so recorded runs keep their data order)."""
    ordered = sorted(ratios)
    balance = check_balance(balance, ordered)
    weight = dict(zip(ordered, ratio_weights(balance, ordered) or ordered))
    unlocked = [r for k, r in enumerate(ordered) if k * curriculum_steps <= step * len(ordered)]
    if balance == "bytes":
        weights = np.ones(len(unlocked))
    else:
        weights = np.array([weight[r] for r in unlocked], np.float64)
        if balance == "longest" and unlocked[-1] == ordered[-1]:
            weights[-1] *= 2.0
    return dict(zip(unlocked, (weights / weights.sum()).tolist()))


def _transformer_training_flops(model: dict, sequences: int, tokens: int, loss_tokens: int = 0,
                                vocab: int = 0) -> float:
    """6 x matmul parameters x tokens + 6 x layers x tokens^2 x attention width per sequence (+ the LM head on the
    loss tokens): see training_flops_per_step."""
    d, heads = int(model["hidden_size"]), int(model["num_heads"])
    head_dim = int(model.get("head_dim") or d // heads)
    kv_heads = int(model.get("num_kv_heads") or heads)
    layer = d * heads * head_dim + 2 * d * kv_heads * head_dim + heads * head_dim * d + 3 * d * int(
        model["intermediate_size"])
    layers = int(model["num_layers"])
    return sequences * (6.0 * layers * layer * tokens + 6.0 * layers * tokens * tokens * heads * head_dim
                        + 6.0 * d * vocab * loss_tokens)


def training_flops_per_step(method: str, settings: dict, ratio: int, vocab: int = 262) -> float:
    """Estimated training FLOPs (forward and backward) of one step at `ratio`, for a sweep run of `method`.

    A step holds B = max(1, batch_tokens // (ratio * N)) contexts of L = ratio * N tokens (MixedBatches). Each
    transformer costs, per sequence of T tokens, 6 * P * T + 6 * layers * T^2 * heads * head_dim, where P is its
    matmul parameters per layer times layers (q, k, v, o projections and the three MLP matrices; embedding lookups
    and norms are not counted) and the second term is attention (QK^T and AV, forward 2 * T^2 * width each over all
    T^2 pairs, counting the causal half that is skipped as Kaplan et al. do), times 3 for forward and backward.
    The decoder reads T = L + W + 3 tokens (<img>, the block of W rows, </img>, the answer of L tokens and its stop
    token; W = N, 0 for no_context, L for full_context) and its tied LM head costs 6 * d * vocab on each of the
    L + 1 answer positions. The encoder: c3 reads L + N tokens (the context and N queries), mean_pool_hidden L
    tokens; hierarchical runs hierarchical_depth(L, N) convolution blocks, each 6 * d^2 * (5 * l + 3 * ceil(l / 2))
    at input length l; mean_pool and the decoder-only methods none. Methods with a projector add its linear map,
    6 * d_enc * d_dec * N. Every part is trained from scratch, so all of it takes the backward pass."""
    model, latents = settings["model"], int(settings["latents"])
    length = int(ratio) * latents
    batch = max(1, int(settings["batch_tokens"]) // length)
    width = 0 if method == "no_context" else length if method == "full_context" else latents
    flops = _transformer_training_flops(model, batch, length + width + 3, length + 1, vocab)
    d = int(model["hidden_size"])
    if method == "c3":
        flops += _transformer_training_flops(model, batch, length + latents)
    elif method == "mean_pool_hidden":
        flops += _transformer_training_flops(model, batch, length)
    elif method == "hierarchical":
        rows = length
        while rows > latents and (rows + 1) // 2 >= latents:  # hierarchical_depth (cascade/hierarchical.hpp)
            flops += batch * 6.0 * d * d * (5 * rows + 3 * ((rows + 1) // 2))
            rows = (rows + 1) // 2
    if method in ("c3", "mean_pool", "mean_pool_hidden", "hierarchical"):
        flops += batch * 6.0 * d * d * latents
    return flops


def training_flops(method: str, settings: dict, ratios, steps: int) -> float:
    """Estimated training FLOPs of a whole run: training_flops_per_step summed over the steps, each step's ratio
    taken in expectation under the curriculum and balance of MixedBatches."""
    per_ratio = {r: training_flops_per_step(method, settings, r) for r in ratios}
    curriculum_steps = int(round(settings["curriculum"] * steps))
    balance = settings.get("balance", "bytes")
    total = 0.0
    for step in range(int(steps)):
        total += sum(p * per_ratio[r] for r, p in ratio_probabilities(ratios, step, curriculum_steps,
                                                                          balance).items())
    return total


def equal_flops_steps(methods, settings: dict, ratios, steps: int) -> dict:
    """{method: steps}: the steps that give each method about the training FLOPs of C3 at `steps` (training_flops),
    with the same schedule shape (warmup, curriculum and decay scale with each method's steps)."""
    budget = training_flops("c3", settings, ratios, steps)
    result = {}
    for method in methods:
        per_step = training_flops(method, settings, ratios, steps) / steps  # the shape's mean cost of a step
        result[method] = max(1, int(round(budget / per_step)))
    return result


# ---- one run --------------------------------------------------------------------------------------------------
def build_cascade(method: str, settings: dict, max_ratio: int, seed: int) -> Cascade:
    """A byte-level cascade of the sweep's shape for `method`. The decoder has room for the full context, the
    reconstruction and the continuation."""
    latents, longest = settings["latents"], max_ratio * settings["latents"]
    encoder = scratch_model_config(settings["model"], longest, latents)
    decoder = scratch_model_config(settings["model"], 2 * longest + settings["continuation"], latents)
    return Cascade.new(encoder, decoder, latents, tokenizer=byte_tokenizer(), seed=seed, method=method)


def _write_json_atomically(path: str, value) -> None:
    analysis.write_text_atomically(path, json.dumps(_jsonable(value), indent=1))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---- reading back what a sweep wrote ---------------------------------------------------------------------------
def _fail(path: str, message: str):
    raise _core.FormatError(f"{path}: {message}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_sweep_file(path: str, check: Callable[[str, object], None]):
    """The JSON value of a file the sweep wrote (sweep.json, trained.json, evaluation.json), checked: unreadable
    bytes, invalid UTF-8 or JSON, or a value of the wrong shape (check(path, value) raises) are a c3.FormatError
    naming the file. The one reader of them, so a damaged file never becomes a traceback or a result."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise _core.C3IOError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _core.FormatError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except ValueError as error:
        raise _core.FormatError(f"{path}: not valid JSON ({error})") from None
    check(path, value)
    return value


def check_plan(path: str, value) -> None:
    """sweep.json: a JSON object (its values are compared with the current options key by key)."""
    if not isinstance(value, dict):
        _fail(path, f"expected a JSON object (the sweep's settings), got {type(value).__name__}")


def _trained_checker(method: str, seed: int):
    def check(path: str, value) -> None:
        """trained.json of run (method, seed) (None: any run): what train_run writes."""
        if not isinstance(value, dict):
            _fail(path, f"expected a JSON object, got {type(value).__name__}")
        if method is not None and (value.get("method") != method or value.get("seed") != seed):
            _fail(path, f"records run {value.get('method')!r} seed {value.get('seed')!r}, not {method!r} seed {seed}")
        for key in ("steps", "planned_steps"):
            if not _is_count(value.get(key)):
                _fail(path, f"'{key}' must be a non-negative integer, got {value.get(key)!r}")
        for key in ("log", "track", "track_ratios"):
            if not isinstance(value.get(key), list):
                _fail(path, f"'{key}' must be a list, got {type(value.get(key)).__name__}")
        if not all(isinstance(entry, list) and len(entry) == 2 for entry in value["log"]):
            _fail(path, "'log' must hold [ratio, loss] pairs")
        if not (value.get("final_loss") is None or _is_number(value.get("final_loss"))):
            _fail(path, f"'final_loss' must be a number or null, got {value.get('final_loss')!r}")
    return check


EVALUATION_KEYS = ("passages", "curves", "teacher_errors", "teacher_regression") + (
    "token_accuracy", "aligned_accuracy", "teacher_forced_accuracy", "fox_precision", "continuation_bits_per_byte")


def _evaluation_checker(method: str, seed: int, ratios):
    def check(path: str, value) -> None:
        """evaluation.json of run (method, seed): what evaluate_run writes, every ratio of the sweep present with
        the measures that the summary and the report read."""
        if not isinstance(value, dict):
            _fail(path, f"expected a JSON object, got {type(value).__name__}")
        try:
            _trained_checker(method, seed)(path, value.get("training"))
        except _core.FormatError as error:
            _fail(path, "'training': " + str(error).split(": ", 1)[-1])
        for domain in ("in_domain", "out_of_domain"):
            table = value.get(domain)
            if not isinstance(table, dict):
                _fail(path, f"'{domain}' must be an object, got {type(table).__name__}")
            for ratio in ratios:
                entry = table.get(str(ratio))
                if not isinstance(entry, dict):
                    _fail(path, f"'{domain}' has no object for ratio {ratio}")
                missing = [key for key in EVALUATION_KEYS if key not in entry]
                if missing:
                    _fail(path, f"'{domain}' ratio {ratio} lacks {', '.join(missing)}")
                for key in METRICS:
                    if not (entry[key] is None or _is_number(entry[key])):
                        _fail(path, f"'{domain}' ratio {ratio}: '{key}' must be a number or null, got {entry[key]!r}")
                for key in ("curves", "teacher_errors", "teacher_regression"):
                    if not isinstance(entry[key], dict):
                        _fail(path, f"'{domain}' ratio {ratio}: '{key}' must be an object")
    return check


def check_extra(path: str, extra) -> None:
    """A sweep checkpoint's c3.extra (what _save_checkpoint writes): the step, the data generator's state, the
    loss log and the tracked accuracies."""
    if not isinstance(extra, dict):
        _fail(path, f"metadata c3.extra must be a JSON object, got {type(extra).__name__}")
    if not _is_count(extra.get("step")):
        _fail(path, f"c3.extra 'step' must be a non-negative integer, got {extra.get('step')!r}")
    if not isinstance(extra.get("data"), dict):
        _fail(path, "c3.extra 'data' must be the data generator's state (an object)")
    if not _is_number(extra.get("seconds", 0.0)):
        _fail(path, f"c3.extra 'seconds' must be a number, got {extra.get('seconds')!r}")
    for key in ("log", "track"):
        if not isinstance(extra.get(key, []), list):
            _fail(path, f"c3.extra '{key}' must be a list")


def _say(message: str) -> None:
    """A note on stderr about what a resumed sweep does differently from a fresh one."""
    print(f"c3 sweep: {message}", file=sys.stderr, flush=True)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def make_trainer(cascade: Cascade, settings: dict, steps: int):
    """The sweep's (and the demo's) AdamW: warmup over the first 5% of `steps`, then cosine to settings'
    min_lr_ratio (default 5%) of the learning rate, or warmup-stable-decay with settings' lr_decay_fraction (default
    0: cosine); betas 0.9 and settings' beta2 (default 0.999); no weight decay, gradients clipped at norm 1,
    settings' shares."""
    return cascade.trainer(learning_rate=settings["learning_rate"], warmup_steps=max(1, steps // 20),
                           total_steps=steps, min_lr_ratio=settings.get("min_lr_ratio", 0.05),
                           lr_decay_fraction=settings.get("lr_decay_fraction", 0.0),
                           beta2=settings.get("beta2", 0.999), weight_decay=0.0, max_grad_norm=1.0,
                           data_parallel_shares=settings.get("shares", 0))


def teacher_forced_correct(cascade: Cascade, rows, batch: int) -> list:
    """Per row, whether the decoder, fed the true prefix after the row's latents, predicts each valid answer token
    (the row's tokens, then the stop token)."""
    correct = []
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        latents, mask = cascade.encode(part)
        scores = cascade.score(latents, part, latent_mask=mask)
        correct += [scores["correct"][k][scores["valid"][k]] for k in range(len(part))]
    return correct


def teacher_forced_accuracy(cascade: Cascade, contexts, batch: int) -> float:
    """The share of the contexts' tokens that the decoder predicts given the true prefix and the latents."""
    correct = teacher_forced_correct(cascade, contexts, batch)
    return float(np.mean(np.concatenate(correct))) if correct else 0.0


def track_steps(settings: dict, steps: int) -> set:
    """The steps (1-based) after which a run scores its tracking passages: track_points of them, evenly spread,
    the last step included."""
    points = int(settings.get("track_points", 0))
    return {int(round(steps * k / points)) for k in range(1, points + 1)} - {0} if points else set()


def train_run(directory: str, method: str, seed: int, settings: dict, ratios, train_regions, steps: int,
              minutes: Optional[float] = None, continuation_weight: float = 0.0, progress: bool = True,
              on_step: Optional[Callable[[int], None]] = None, track: Optional[dict] = None) -> Cascade:
    """Trains (or resumes, or loads when finished) one run; returns its cascade. The one resume path, whatever
    the number of jobs.

    A run is finished only when trained.json is a valid record AND checkpoint.safetensors loads at the step it
    records. A checkpoint that is missing or does not load is trained again from the start, and a trained.json
    that is damaged is written again from the checkpoint (either is said on stderr); a run that trains again
    loses its evaluation.json. Nothing is ever reported from a model that did not load.

    track: {ratio: held-out contexts}, scored teacher-forced at track_steps (recorded as "track" in trained.json:
    [step, [accuracy of each ratio]] in the order of `ratios`)."""
    os.makedirs(directory, exist_ok=True)
    checkpoint = os.path.join(directory, "checkpoint.safetensors")
    finished = os.path.join(directory, "trained.json")
    name = f"run {method}-seed{seed}"

    def fresh():
        cascade = build_cascade(method, settings, max(ratios), seed)
        data = MixedBatches(train_regions, ratios, settings["latents"], settings["batch_tokens"],
                            settings["continuation"], seed=seed + 1000,
                            curriculum_steps=int(round(settings["curriculum"] * steps)),
                            balance=settings.get("balance", "bytes"))
        return cascade, make_trainer(cascade, settings, steps), data

    cascade, trainer, data = fresh()
    step, seconds, log, tracked = 0, 0.0, [], []
    loaded = damaged = False
    if os.path.exists(checkpoint):
        try:
            extra = load_checkpoint(checkpoint, cascade.model, trainer, check=check_extra)
            data.restore(extra["data"])
            step, seconds, log = int(extra["step"]), float(extra.get("seconds", 0.0)), list(extra.get("log", []))
            tracked = list(extra.get("track", []))
            loaded = True
        except (_core.C3Error, ValueError, TypeError, KeyError) as error:
            _say(f"{name}: its checkpoint does not load ({' '.join(str(error).split())}); training it from the start")
            _remove(checkpoint)
            damaged = True
            cascade, trainer, data = fresh()
            step, seconds, log, tracked = 0, 0.0, [], []
    scored = track_steps(settings, steps) if track else set()
    if os.path.exists(finished):
        record = None
        try:
            record = read_sweep_file(finished, _trained_checker(method, seed))
        except _core.C3Error as error:
            _say(f"{name}: {' '.join(str(error).split())}; "
                 + ("it is written again from the checkpoint" if loaded else "training it again"))
        if record is not None and not loaded:
            if not damaged:  # a damaged one was said above
                _say(f"{name}: {finished} says it is trained, but its checkpoint is missing; training it again")
            record = None
        elif record is not None and record["steps"] != step:
            _say(f"{name}: {finished} records {record['steps']} steps, its checkpoint holds {step}; continuing from "
                 "the checkpoint")
            record = None
        if record is not None:
            return cascade
        _remove(finished)
    # The model may change from here on: an evaluation made before is no longer of this run.
    _remove(os.path.join(directory, "evaluation.json"))
    started = time.perf_counter() - seconds
    bar = tqdm(total=steps, initial=step, desc=f"{method} seed {seed}", disable=not progress, leave=False,
               mininterval=1.0)
    try:
        while step < steps:
            if minutes is not None and time.perf_counter() - started > minutes * 60:
                break
            contexts, continuations = data.draw(step)
            if continuation_weight:
                report = cascade.train_step(trainer, contexts, continuation_contexts=contexts,
                                            continuations=continuations, continuation_weight=continuation_weight)
            else:
                report = cascade.train_step(trainer, contexts)
            step += 1
            log.append([int(contexts.shape[1] // settings["latents"]), round(float(report["loss"]), 5)])
            bar.set_postfix(loss=f"{report['loss']:.3f}")
            bar.update(1)
            if step in scored:
                # Scoring draws no random numbers and changes no parameter: the run trains as it would without.
                tracked.append([step, [round(teacher_forced_accuracy(cascade, track[r], settings["eval_batch"]), 5)
                                       for r in sorted(track)]])
            if step % settings["checkpoint_every"] == 0 or step == steps:
                _save_checkpoint(checkpoint, cascade, trainer, data, step, time.perf_counter() - started, log,
                                 tracked)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
    _save_checkpoint(checkpoint, cascade, trainer, data, step, time.perf_counter() - started, log, tracked)
    # log: [ratio, loss] of every step, for learning curves by ratio; track: held-out accuracy during training.
    _write_json_atomically(finished, dict(method=method, seed=seed, steps=step, planned_steps=steps,
                                          threads=_core.num_threads(),
                                          train_seconds=time.perf_counter() - started,
                                          final_loss=log[-1][1] if log else None, log=log,
                                          track_ratios=sorted(track) if track else [], track=tracked))
    return cascade


def _save_checkpoint(path, cascade, trainer, data, step, seconds, log, tracked=()):
    # The one training-checkpoint format (train/checkpoint.hpp), written atomically.
    save_checkpoint(path, cascade.model, trainer, dict(step=step, seconds=seconds, data=data.state(), log=log,
                                                       track=list(tracked)))


# ---- evaluation -----------------------------------------------------------------------------------------------
def information_bits(reconstruction_bits, prior_bits, latents: int) -> dict:
    """What the latents supply, in bits, from per-token surprisals of the same passages.

    reconstruction_bits: per passage, -log2 p of each true token given the latents (teacher-forced);
    prior_bits: per passage, -log2 p of each token under the prior (the sweep's language model without context).
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


def evaluate_ratio(cascade: Cascade, passages, ratio: int, settings: dict, prior, progress: bool = False) -> dict:
    """Every measure of one (model, ratio) on passages of ratio * N + continuation tokens. `prior` maps token rows
    to their surprisal (bits)."""
    length = ratio * settings["latents"]
    contexts = [p[:length] for p in passages]
    continuations = [p[length:] for p in passages]
    references, hypotheses, teacher, nats, reconstruction_bits = [], [], [], 0.0, []
    for start in tqdm(range(0, len(passages), settings["eval_batch"]), desc=f"{cascade.method} {ratio}x",
                      disable=not progress, leave=False):
        rows = contexts[start:start + settings["eval_batch"]]
        latents, mask = cascade.encode(rows)
        hypotheses += cascade.reconstruct(latents, source_tokens=[len(r) for r in rows], return_ids=True,
                                          latent_mask=mask)
        scores = cascade.score(latents, rows, latent_mask=mask)
        teacher += [scores["correct"][k][scores["valid"][k]].astype(np.int8) for k in range(len(rows))]
        # -log2 p of each true token given the latents (log_probability is natural).
        reconstruction_bits += [-scores["log_probability"][k][scores["valid"][k]].astype(np.float64) / math.log(2.0)
                                for k in range(len(rows))]
        follow = continuations[start:start + settings["eval_batch"]]
        follow_scores = cascade.score(latents, follow, latent_mask=mask)
        nats -= float(np.where(follow_scores["valid"], follow_scores["log_probability"].astype(np.float64), 0).sum())
        references += rows
    continuation_bytes = sum(len(c) for c in continuations)  # byte-level: one token per byte
    strict = [surprisal.strict_correct(r, h) for r, h in zip(references, hypotheses)]
    aligned = [surprisal.aligned_correct(r, h) for r, h in zip(references, hypotheses)]
    bits = prior(references)
    teacher_table = surprisal.error_table([1 - c for c in teacher], bits)
    aligned_table = surprisal.error_table([1 - c for c in aligned], bits, edges=teacher_table["surprisal_edges"])
    decode = lambda row: bytes(int(t) for t in row if int(t) < 256).decode("utf-8", errors="replace")  # noqa: E731
    fox = analysis.fox_metrics([decode(r) for r in references], [decode(h) for h in hypotheses])
    information = information_bits(reconstruction_bits, bits, settings["latents"])
    return dict(
        ratio=ratio, passages=len(passages), context_tokens=length,
        token_accuracy=float(np.mean([c.mean() for c in strict])),
        aligned_accuracy=float(np.mean([c.mean() for c in aligned])),
        teacher_forced_accuracy=float(np.mean(np.concatenate(teacher))),
        fox_precision=fox["precision"], edit_distance=fox["edit_distance"],
        continuation_bits_per_byte=nats / math.log(2.0) / max(continuation_bytes, 1),
        curves=surprisal.accuracy_curves(references, hypotheses, teacher),
        teacher_errors=teacher_table, aligned_errors=aligned_table,
        teacher_regression=surprisal.position_surprisal_regression([1 - c for c in teacher], bits),
        aligned_regression=surprisal.position_surprisal_regression([1 - c for c in aligned], bits),
        # Information in bits (information_bits), and per passage, in passage order, what the summary's
        # passage-level intervals resample.
        reconstruction_bits_per_token=information["reconstruction_bits_per_token"],
        prior_bits_per_token=information["prior_bits_per_token"],
        supplied_bits_per_passage=information["supplied_bits_per_passage"],
        bits_per_latent=information["bits_per_latent_mean"],
        per_passage=dict(token_accuracy=[float(c.mean()) for c in strict],
                         teacher_forced_accuracy=[float(c.mean()) for c in teacher],
                         bits_per_latent=information["bits_per_latent"]),
    )


def evaluate_run(directory: str, cascade: Optional[Cascade], prior_model: Optional[Cascade], settings: dict, ratios,
                 in_domain, out_of_domain, progress: bool = False) -> dict:
    """Every ratio of one trained run on the in-domain and out-of-domain passages, written to the run's
    evaluation.json (atomically); a run already evaluated is read back instead (the cascades may then be None).
    Surprisal is under prior_model."""
    path = os.path.join(directory, "evaluation.json")
    done = finished_evaluation(directory, ratios)
    if done is not None:
        return done
    if cascade is None or prior_model is None:
        raise _core.C3ValueError(f"{directory}: no valid evaluation.json, and no trained cascade to evaluate")
    prior = lambda rows: surprisal.prior_surprisal(prior_model, rows)  # noqa: E731
    training = read_sweep_file(os.path.join(directory, "trained.json"), _trained_checker(None, None))
    evaluation = dict(training=training, in_domain={}, out_of_domain={})
    keep = lambda ratio: ratio * settings["latents"] + settings["continuation"]  # noqa: E731
    for ratio in ratios:
        evaluation["in_domain"][str(ratio)] = evaluate_ratio(cascade, [p[:keep(ratio)] for p in in_domain], ratio,
                                                             settings, prior, progress)
        evaluation["out_of_domain"][str(ratio)] = evaluate_ratio(cascade, [p[:keep(ratio)] for p in out_of_domain],
                                                                 ratio, settings, prior, progress)
    evaluation = _jsonable(evaluation)
    _write_json_atomically(path, evaluation)
    return evaluation


def finished_evaluation(directory: str, ratios, quiet: bool = False) -> Optional[dict]:
    """The run's evaluation.json when it is valid (every ratio, every measure) and made from the run's current
    trained.json; else None (a damaged or stale one is said on stderr, unless quiet, and is evaluated again)."""
    path = os.path.join(directory, "evaluation.json")
    if not os.path.exists(path):
        return None
    try:
        evaluation = read_sweep_file(path, _evaluation_checker(None, None, ratios))
        training = read_sweep_file(os.path.join(directory, "trained.json"), _trained_checker(None, None))
    except _core.C3Error as error:
        quiet or _say(f"{' '.join(str(error).split())}; evaluating the run again")
        return None
    if evaluation["training"] != _jsonable(training):
        quiet or _say(f"{path} was made by an earlier training of the run; evaluating it again")
        return None
    return evaluation


def load_run(directory: str, method: str, seed: int, settings: dict, max_ratio: int) -> Cascade:
    """The trained cascade of one sweep run, from its checkpoint."""
    cascade = build_cascade(method, settings, max_ratio, seed)
    load_checkpoint(os.path.join(directory, "checkpoint.safetensors"), cascade.model,
                    cascade.trainer(learning_rate=0.0))
    return cascade


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """A sweep worker's initializer: the worker ends when the sweep's process does, however it ends (a SIGKILL
    included), rather than training on for nobody. On Linux the kernel sends SIGTERM when the parent dies
    (prctl PR_SET_PDEATHSIG), and a parent that died before that call is caught by comparing the parent's pid
    right after it; elsewhere a thread polls the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the signal was armed
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl: poll as elsewhere

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="c3-parent-watch", daemon=True).start()


def _in_workers(job, work: list, jobs: int, description: str, progress: bool) -> None:
    """job(item) for every item of `work`, in up to `jobs` spawned worker processes, which end when this
    process does (_die_with_parent)."""
    if not work:
        return
    # Not a with-block: Pool.__exit__ terminates the workers without waiting for them, so they could still hold
    # their queues' semaphores when this process exits.
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(work)), initializer=_die_with_parent,
                                                     initargs=(os.getpid(),))
    try:
        for _ in tqdm(pool.imap_unordered(job, work), total=len(work), desc=description, disable=not progress):
            pass
        pool.close()  # every job is done: the workers exit on their own
    except BaseException:
        pool.terminate()  # an error or an interrupt stops the other jobs
        raise
    finally:
        pool.join()


def _training_job(work) -> str:
    """train_run of one run in a worker process (run_sweep's jobs), without a progress bar."""
    directory, method, seed, settings, ratios, train_regions, steps, minutes, continuation_weight, threads, track = work
    _core.set_num_threads(threads)
    train_run(directory, method, seed, settings, ratios, train_regions, steps, minutes, continuation_weight,
              progress=False, track=track)
    return f"{method}-seed{seed}"


def _evaluation_job(work) -> str:
    """evaluate_run of one finished run in a worker process, on one thread (run_sweep's jobs)."""
    output, method, seed, settings, ratios, prior_is_no_context, in_domain, out_of_domain = work
    _core.set_num_threads(1)
    run = lambda name: os.path.join(output, "runs", f"{name}-seed{seed}")  # noqa: E731
    cascade = load_run(run(method), method, seed, settings, max(ratios))
    prior_model = (load_run(run("no_context"), "no_context", seed, settings, max(ratios))
                   if prior_is_no_context and method != "no_context" else cascade)
    evaluate_run(run(method), cascade, prior_model, settings, ratios, in_domain, out_of_domain)
    return f"{method}-seed{seed}"


# ---- the sweep ------------------------------------------------------------------------------------------------
def _check_list(name, values, allowed=None):
    values = list(values)
    if not values:
        raise _core.C3ValueError(f"{name}: give at least one")
    if len(set(values)) != len(values):
        raise _core.C3ValueError(f"{name}: {values} repeats a value")
    for value in values:
        if allowed is not None and value not in allowed:
            raise _core.C3ValueError(f"{name}: unknown {value!r} (known: {', '.join(allowed)})")
    return values


def run_sweep(output: str, methods: Sequence[str] = DEFAULT_METHODS, ratios: Sequence[int] = DEFAULT_RATIOS,
              seeds: Sequence[int] = (0, 1), size: str = "default", steps: Optional[int] = None,
              minutes: Optional[float] = None, eval_passages: Optional[int] = None,
              continuation_weight: float = 0.0, curriculum: Optional[float] = None,
              batch_tokens: Optional[int] = None, jobs: int = 1, shares: int = 0, balance: str = "bytes",
              progress: bool = True,
              on_step: Optional[Callable[[str, int, int], None]] = None, heldout: str = "regions",
              split: Optional[str] = None, recipe: Optional[str] = None, equal_flops: bool = False) -> dict:
    """Trains, evaluates and reports every (method, seed); returns the results written to results.json.

    steps: optimiser steps per run (default: the size's). minutes: a cap on each run's training time (the
    schedule still follows `steps`; a capped run is not reproducible). eval_passages: held-out passages per ratio
    (default: the size's; out-of-domain passages are capped at the size's ood_passages). curriculum: the fraction
    of the steps over which the ratios are unlocked (default: the size's; 0: all from the start). batch_tokens:
    context tokens per step (default: the size's). jobs: runs trained at once, each in its own process with
    num_threads() // jobs threads, then evaluated at once, each in its own one-thread process (1: one after
    another in this process, on all of c3's threads). shares: fixed data-parallel shares per training step
    (TrainingOptions::data_parallel_shares), which make a run's parameters the same bit for bit on any number of
    threads and jobs; 0 (the default): one share per thread. balance: how each step picks its ratio
    (MixedBatches: "bytes", each unlocked ratio equally likely; "passages", in proportion to the ratio; "longest",
    as "passages" with the longest ratio's weight doubled).
    on_step(method, seed, step) is called after every step (tests interrupt a run with it).
    heldout: the held-out design, "regions" (the recorded sweeps') or "documents" (document_data: train on the
    train documents, evaluate on leakage-checked passages of the `split` documents, "dev" (the default) or "test",
    and out of domain on the King James Version). recipe: a key of RECIPES (default: "demo" with documents,
    "recorded" with regions). equal_flops: every method trains for about the FLOPs of C3 at `steps`
    (equal_flops_steps); otherwise every method trains for `steps`."""
    if size not in SIZES:
        raise _core.C3ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    methods = _check_list("methods", methods, METHODS)
    ratios = sorted(_check_list("ratios", [int(r) for r in ratios]))
    seeds = _check_list("seeds", [int(s) for s in seeds])
    if min(ratios) < 1:
        raise _core.C3ValueError(f"ratios must be at least 1, got {ratios}")
    continuation_weight = check_fraction("continuation_weight", continuation_weight)
    settings = dict(SIZES[size])
    if curriculum is not None:
        settings["curriculum"] = check_fraction("curriculum", curriculum)
    if int(jobs) < 1:
        raise _core.C3ValueError(f"jobs must be at least 1, got {jobs}")
    jobs = int(jobs)
    if jobs > 1 and on_step is not None:
        raise _core.C3ValueError("on_step runs in this process: it needs jobs=1")
    if batch_tokens is not None:
        if int(batch_tokens) < 1:
            raise _core.C3ValueError(f"batch_tokens must be at least 1, got {batch_tokens}")
        settings["batch_tokens"] = int(batch_tokens)
    if not 0 <= int(shares) <= MAX_SHARES:
        raise _core.C3ValueError(f"shares must be in [0, {MAX_SHARES}], got {shares}")
    settings["shares"] = int(shares)
    settings["balance"] = check_balance(balance, ratios)
    if heldout not in HELDOUT_DESIGNS:
        raise _core.C3ValueError(f"heldout must be one of {', '.join(HELDOUT_DESIGNS)}, got {heldout!r}")
    if split is not None and heldout != "documents":
        raise _core.C3ValueError("split chooses among the documents' splits: it needs heldout='documents'")
    split = split or "dev"
    if split not in SPLITS:
        raise _core.C3ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    recipe = recipe or ("demo" if heldout == "documents" else "recorded")
    if recipe not in RECIPES:
        raise _core.C3ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    settings.update(RECIPES[recipe])
    steps = int(steps or settings["steps"])
    eval_count = int(eval_passages or settings["eval_passages"])
    # results.json records the settings the runs used, not the size's defaults that the options replaced.
    settings.update(steps=steps, eval_passages=eval_count)
    plan = dict(methods=methods, ratios=ratios, seeds=seeds, size=size, steps=steps, minutes=minutes,
                eval_passages=eval_count, continuation_weight=continuation_weight, curriculum=settings["curriculum"],
                batch_tokens=settings["batch_tokens"])
    if settings["shares"]:
        plan["shares"] = settings["shares"]  # absent when 0, so sweeps recorded before the option still resume
    if balance != "bytes":
        plan["balance"] = balance  # likewise absent at the default
    if heldout != "regions":
        plan.update(heldout=heldout, split=split)  # likewise
    if recipe != "recorded":
        plan["recipe"] = recipe
    if equal_flops:
        plan["equal_flops"] = True
    method_steps = equal_flops_steps(methods, settings, ratios, steps) if equal_flops else {m: steps for m in methods}
    settings["method_steps"] = method_steps
    os.makedirs(output, exist_ok=True)
    plan_path = os.path.join(output, "sweep.json")
    if os.path.exists(plan_path):
        previous = read_sweep_file(plan_path, check_plan)
        if previous != _jsonable(plan):
            current = _jsonable(plan)
            changed = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
            raise _core.ConfigError(f"{output} holds a sweep with other settings ({', '.join(changed)}); use a new "
                                    "--output or the same options to continue it")
    else:
        _write_json_atomically(plan_path, plan)

    passage_length = max(ratios) * settings["latents"] + settings["continuation"]
    held_out_record = dict(design=heldout)
    if heldout == "documents":
        data = document_data(passage_length, eval_count, min(eval_count, settings["ood_passages"]), split)
        train_regions, in_domain, out_of_domain = data["train_regions"], data["in_domain"], data["out_of_domain"]
        held_out_record.update({key: value for key, value in data.items()
                                if key not in ("train_regions", "in_domain", "out_of_domain")})
    else:
        train_regions, held_out_regions = default_regions()
        # Held-out windows whose shortest evaluated part (the lowest ratio's context and continuation) occurs
        # verbatim in the training text are skipped, so no evaluated passage was seen in training.
        in_domain = evaluation_passages(held_out_regions, passage_length, eval_count, unseen_in=train_regions,
                                        unseen_length=min(ratios) * settings["latents"] + settings["continuation"])
        out_of_domain = evaluation_passages([_ids(ood_text())], passage_length,
                                            min(eval_count, settings["ood_passages"]))
    # A fixed, evenly spread subset of the in-domain passages, scored during training (train_run's track).
    subset = np.unique(np.linspace(0, len(in_domain) - 1, min(settings.get("track_passages", 0),
                                                              len(in_domain))).astype(np.int64))
    track = {r: [in_domain[i][:r * settings["latents"]] for i in subset] for r in ratios} if len(subset) else None

    runs = [(method, seed) for seed in seeds for method in methods]
    run_directory = lambda m, s: os.path.join(output, "runs", f"{m}-seed{s}")  # noqa: E731
    cascades = {}
    if jobs > 1:
        # Runs train side by side, each in its own process with num_threads // jobs threads: a small model's step
        # does not fill many cores, so separate runs use them better than one run on all of them.
        threads = max(1, _core.num_threads() // jobs)
        # Every run goes to train_run, the one resume path: it returns at once for a finished run whose checkpoint
        # loads, and trains again what is missing or damaged.
        work = [(run_directory(m, s), m, s, settings, ratios, train_regions, method_steps[m], minutes,
                 continuation_weight, threads, track) for m, s in runs]
        _in_workers(_training_job, work, jobs, "training runs", progress)
    else:
        for method, seed in tqdm(runs, desc="training runs", disable=not progress):
            hook = (lambda step, m=method, s=seed: on_step(m, s, step)) if on_step else None
            cascades[method, seed] = train_run(run_directory(method, seed), method, seed, settings, ratios,
                                               train_regions, method_steps[method], minutes, continuation_weight,
                                               progress, hook, track)

    if heldout == "documents":
        from . import prose

        out_of_domain_corpus = prose.LICENCE
    else:
        out_of_domain_corpus = OOD_LICENCE
    compute = {m: dict(steps=method_steps[m], training_flops=training_flops(m, settings, ratios, method_steps[m]))
               for m in methods}
    results = dict(plan=plan, settings=settings, corpus=corpus.LICENCE, out_of_domain_corpus=out_of_domain_corpus,
                   held_out=held_out_record, compute=compute, runs={})
    if jobs > 1:
        # One run per worker process, each on one thread: greedy decoding at evaluation batches is too small a
        # product for many threads, so separate processes use the cores better.
        work = [(output, method, seed, settings, ratios, "no_context" in methods, in_domain, out_of_domain)
                for method, seed in runs if finished_evaluation(run_directory(method, seed), ratios, quiet=True) is None]
        _in_workers(_evaluation_job, work, jobs, "evaluating runs", progress)
    for method, seed in tqdm(runs, desc="evaluating runs", disable=not progress or jobs > 1):
        cascade = cascades.get((method, seed))  # None when workers trained and evaluated it
        prior_model = cascades.get(("no_context", seed), cascade)
        results["runs"][f"{method}-seed{seed}"] = evaluate_run(run_directory(method, seed), cascade, prior_model,
                                                               settings, ratios, in_domain, out_of_domain, progress)
    results["summary"] = summarise(results, methods, ratios, seeds)
    _write_json_atomically(os.path.join(output, "results.json"), results)
    write_report(output, results)
    return results


METRICS = ("token_accuracy", "aligned_accuracy", "teacher_forced_accuracy", "fox_precision",
           "continuation_bits_per_byte")
# Information in bits (information_bits); absent from evaluations made before they were measured.
BIT_METRICS = ("reconstruction_bits_per_token", "prior_bits_per_token", "supplied_bits_per_passage",
               "bits_per_latent")
# The per-passage measures a passage-level (block bootstrap) interval is computed for.
PASSAGE_METRICS = ("token_accuracy", "teacher_forced_accuracy", "bits_per_latent")
CONFIDENCE = 0.95


def _seed_values(results: dict, domain: str, metric: str, method: str, ratio, seeds) -> dict:
    """{seed: value} of the seeds whose run measured `metric` (None and absent values left out)."""
    values = {}
    for seed in seeds:
        value = results["runs"][f"{method}-seed{seed}"][domain][str(ratio)].get(metric)
        if value is not None and math.isfinite(value):
            values[seed] = float(value)
    return values


def summarise(results: dict, methods, ratios, seeds) -> dict:
    """{domain: {metric: {method: {ratio: [mean, standard deviation over seeds (ddof 0)]}}}} (as recorded sweeps
    have it), and:

    - "intervals": {domain: {metric: {method: {ratio: statistics.seed_interval over the seeds}}}} (95%, Student t
      with n - 1 degrees of freedom; None where no seed measured it), for METRICS and BIT_METRICS;
    - "paired": {domain: {metric: {baseline: {ratio: statistics.paired_difference of C3 minus the baseline, seed
      by seed, plus "seeds"}}}} over the seeds both measured (when c3 is among the methods);
    - "passage_intervals": {domain: {metric: {method: {ratio: statistics.block_bootstrap}}}} when the passages
      carry document ids (results["held_out"]): each passage's value averaged over the seeds first, then documents
      resampled as blocks, for PASSAGE_METRICS."""
    summary = {}
    for domain in ("in_domain", "out_of_domain"):
        summary[domain] = {}
        for metric in METRICS:
            table = {}
            for method in methods:
                table[method] = {}
                for ratio in ratios:
                    values = [results["runs"][f"{method}-seed{seed}"][domain][str(ratio)][metric] for seed in seeds]
                    values = [v for v in values if v is not None]
                    table[method][str(ratio)] = [float(np.mean(values)) if values else None,
                                                 float(np.std(values)) if values else None]
            summary[domain][metric] = table
    intervals, paired, passage = {}, {}, {}
    held_out = results.get("held_out") or {}
    for domain in ("in_domain", "out_of_domain"):
        intervals[domain], paired[domain], passage[domain] = {}, {}, {}
        for metric in METRICS + BIT_METRICS:
            intervals[domain][metric] = {
                method: {str(r): (statistics.seed_interval(list(values.values()), CONFIDENCE) if values else None)
                         for r in ratios
                         for values in [_seed_values(results, domain, metric, method, r, seeds)]}
                for method in methods}
            if "c3" not in methods:
                continue
            paired[domain][metric] = {}
            for baseline in methods:
                if baseline == "c3":
                    continue
                paired[domain][metric][baseline] = {}
                for r in ratios:
                    ours = _seed_values(results, domain, metric, "c3", r, seeds)
                    theirs = _seed_values(results, domain, metric, baseline, r, seeds)
                    common = [seed for seed in seeds if seed in ours and seed in theirs]
                    entry = None
                    if common:
                        entry = statistics.paired_difference([ours[k] for k in common], [theirs[k] for k in common],
                                                             CONFIDENCE)
                        entry["seeds"] = common
                    paired[domain][metric][baseline][str(r)] = entry
        documents = held_out.get(f"{domain}_documents")
        if documents is None:
            continue
        for metric in PASSAGE_METRICS:
            passage[domain][metric] = {}
            for method in methods:
                passage[domain][metric][method] = {}
                for r in ratios:
                    rows = [results["runs"][f"{method}-seed{seed}"][domain][str(r)].get("per_passage", {}).get(metric)
                            for seed in seeds]
                    rows = [row for row in rows if row is not None and len(row) == len(documents)]
                    passage[domain][metric][method][str(r)] = (
                        statistics.block_bootstrap(np.mean(np.asarray(rows, np.float64), axis=0), documents,
                                                   confidence=CONFIDENCE) if rows else None)
    summary.update(intervals=intervals, paired=paired, passage_intervals=passage)
    return summary


# ---- the report -----------------------------------------------------------------------------------------------
def _figure(rows=1, columns=1, width=6.4, height=4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows))
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(rows, columns, k + 1) for k in range(rows * columns)]


def _save(figure, output, name):
    figure.tight_layout()
    figure.savefig(os.path.join(output, name), dpi=72)
    return name


def _ratio_panels(ratios, seed: int, ylabel: str, draw):
    """One panel per ratio; draw(axis, index, ratio) plots each method's line in it."""
    figure, axes = _figure(1, len(ratios), width=3.6, height=3.0)
    for index, (axis, ratio) in enumerate(zip(axes, ratios)):
        draw(axis, index, ratio)
        axis.set_title(f"{ratio}x, seed {seed}")
        axis.set_xlabel("step")
        axis.set_ylabel(ylabel)
    axes[0].legend(fontsize="small")
    figure.tight_layout()
    return figure


def learning_curves_figure(logs: dict, ratios, seed: int):
    """Training loss against step, one panel per ratio, one line per method (a running mean over that ratio's
    steps): shows when each method leaves the language-model prior, and whether its loss still falls at the end.
    logs: {method: [(ratio, loss) of every step]}."""
    def draw(axis, index, ratio):
        for method, log in logs.items():
            steps = np.array([k + 1 for k, (r, _) in enumerate(log) if r == ratio])
            losses = np.array([loss for r, loss in log if r == ratio], dtype=float)
            if len(losses) == 0:
                continue
            window = max(1, len(losses) // 20)
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1:], smooth, label=method, color=analysis.color_for(method))
    return _ratio_panels(ratios, seed, "training loss (nats per token)", draw)


def _learning_curves(output, results, methods, ratios, seed):
    logs = {method: results["runs"][f"{method}-seed{seed}"]["training"].get("log") or [] for method in methods}
    return _save(learning_curves_figure(logs, ratios, seed), output, "learning_curves.png")


def tracking_figure(tracks: dict, ratios, seed: int):
    """Held-out teacher-forced accuracy during training, one panel per ratio, one line per method: a ratio whose
    line is flat over the last steps has converged at this schedule. tracks: {method: [(step, [accuracy of each
    ratio])]}."""
    def draw(axis, index, ratio):
        for method, track in tracks.items():
            if track:
                axis.plot([step for step, _ in track], [values[index] for _, values in track], marker=".",
                          label=method, color=analysis.color_for(method))
    return _ratio_panels(ratios, seed, "held-out teacher-forced accuracy", draw)


def _tracking_lines(results, methods, ratios, seeds) -> list:
    """A Markdown table of each run's tracked held-out accuracy at three quarters of its steps and at the end."""
    lines = []
    for seed in seeds:
        for method in methods:
            training = results["runs"][f"{method}-seed{seed}"]["training"]
            track, tracked_ratios = training.get("track") or [], training.get("track_ratios") or []
            if len(track) < 2 or list(tracked_ratios) != list(ratios):
                continue
            last_step = track[-1][0]
            middle = min(track, key=lambda point: abs(point[0] - 0.75 * last_step))
            cells = [f"{a:.3f} → {b:.3f}" for a, b in zip(middle[1], track[-1][1])]
            lines.append(f"| {method} | {seed} | {middle[0]} → {last_step} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    header = ["## Converged?", "",
              "Held-out teacher-forced accuracy scored during training (in-domain, "
              f"{results['settings'].get('track_passages')} passages per ratio), at about three quarters of the "
              "steps and at the end: a ratio that still gains is still being learned.", "",
              "| method | seed | steps | " + " | ".join(f"{r}x" for r in ratios) + " |",
              "|---|---|---|" + "---|" * len(ratios)]
    return header + lines + [""]


def seed_band(curves, confidence: float = CONFIDENCE) -> dict:
    """The mean across seeds of curves measured at the same positions (one 1-D array per seed) and its t-interval
    at each position (statistics.seed_interval; NaN values, such as empty bins, left out): dict(mean, low, high)
    arrays. One seed (or one value at a position) gives a mean and no band (NaN low and high)."""
    table = np.asarray([np.asarray(curve, np.float64) for curve in curves], np.float64)
    if table.ndim != 2 or table.shape[0] == 0:
        raise _core.ShapeError(f"seed_band needs one curve per seed, all of one length; got shape {table.shape}")
    mean, low, high = (np.full(table.shape[1], np.nan) for _ in range(3))
    for position in range(table.shape[1]):
        values = table[:, position][np.isfinite(table[:, position])]
        if values.size:
            entry = statistics.seed_interval(values, confidence)
            mean[position], low[position], high[position] = entry["mean"], entry["low"], entry["high"]
    return dict(mean=mean, low=low, high=high)


def decay_figure(runs: list, ratios, method: str):
    """Accuracy by relative position, one panel per ratio, one line per kind of accuracy (teacher-forced, strict
    and aligned greedy), each the mean across seeds with its 95% t-interval across seeds as a band. runs: the
    in-domain evaluation of `method` for each seed ({ratio: {"curves": ...}})."""
    figure, axes = _figure(1, len(ratios), width=4.0, height=3.2)
    for axis, ratio in zip(axes, ratios):
        kinds = runs[0][str(ratio)]["curves"]
        for kind in kinds:
            position = np.asarray(kinds[kind]["position"], np.float64)
            band = seed_band([np.asarray(run[str(ratio)]["curves"][kind]["accuracy"], np.float64) for run in runs])
            line, = axis.plot(position, band["mean"], marker=".", label=kind.replace("_", " "))
            if np.isfinite(band["low"]).any():
                axis.fill_between(position, band["low"], band["high"], alpha=0.2, color=line.get_color())
        axis.set_ylim(0.0, 1.02)
        axis.set_xlabel("relative position in the text")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{method} {ratio}x ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
        axis.legend(loc="lower left", fontsize="small")
    return figure


def _interval_cell(entry, digits: int = 3, signed: bool = False) -> str:
    """"mean [low, high]" of a seed_interval/paired_difference/block_bootstrap dict; "n/a" for None, and the mean
    with "(1 seed)" when there is no interval."""
    if entry is None:
        return "n/a"
    mean = entry.get("mean", entry.get("estimate"))
    if mean is None:
        return "n/a"
    form = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    low, high = entry.get("low"), entry.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return form.format(mean) + " (1 seed)"
    return f"{form.format(mean)} [{form.format(low)}, {form.format(high)}]"


def _flops_text(value: float) -> str:
    return f"{value:.3g}"


def write_report(output: str, results: dict) -> None:
    """report.md and the plots from results (as run_sweep returns them)."""
    plan, summary = results["plan"], results["summary"]
    methods, ratios, seeds = plan["methods"], plan["ratios"], plan["seeds"]
    if "intervals" not in summary:  # results summarised before intervals existed
        summary = dict(summary, **{key: value for key, value in summarise(results, methods, ratios, seeds).items()
                                   if key not in summary})
    intervals = summary["intervals"]
    plots = []
    for metric, label in (("token_accuracy", "greedy token accuracy (strict)"),
                          ("teacher_forced_accuracy", "teacher-forced token accuracy"),
                          ("continuation_bits_per_byte", "continuation bits per byte")):
        figure, (axis,) = _figure()
        for method in methods:
            entries = [intervals["in_domain"][metric][method][str(r)] for r in ratios]
            mean = np.array([np.nan if e is None else e["mean"] for e in entries], np.float64)
            half = np.array([0.0 if e is None or not math.isfinite(e["half_width"]) else e["half_width"]
                             for e in entries], np.float64)
            axis.errorbar(ratios, mean, yerr=half, marker="o", capsize=3, label=method,
                          color=analysis.color_for(method))
        axis.set_xscale("log", base=2)
        axis.set_xticks(ratios)
        axis.set_xticklabels([f"{r}x" for r in ratios])
        axis.set_xlabel("compression ratio (context tokens per latent)")
        axis.set_ylabel(label)
        # Two lines: one line of this length is wider than the figure and was clipped.
        axis.set_title(f"{label} against ratio\n(held-out, mean and 95% t-interval over {len(seeds)} seeds)")
        axis.legend()
        plots.append(_save(figure, output, f"{metric}_vs_ratio.png"))
    plots.append(_learning_curves(output, results, methods, ratios, seeds[0]))
    tracks = {method: results["runs"][f"{method}-seed{seeds[0]}"]["training"].get("track") or [] for method in methods}
    if any(tracks.values()):
        plots.append(_save(tracking_figure(tracks, ratios, seeds[0]), output, "held_out_during_training.png"))
    first = f"{methods[0]}-seed{seeds[0]}"
    for method in methods:
        plots.append(_save(decay_figure([results["runs"][f"{method}-seed{seed}"]["in_domain"] for seed in seeds],
                                        ratios, method), output, f"decay_{method}.png"))
        run = results["runs"][f"{method}-seed{seeds[0]}"]["in_domain"]
        figure, axes = _figure(1, len(ratios), width=4.0, height=3.2)
        for axis, ratio in zip(axes, ratios):
            table = {k: np.asarray(v, dtype=float) for k, v in run[str(ratio)]["teacher_errors"].items()}
            surprisal.plot_error_heatmap(table, title=f"{method} {ratio}x teacher-forced errors", ax=axis)
        plots.append(_save(figure, output, f"heatmap_{method}.png"))
    settings = results["settings"]
    method_steps = settings.get("method_steps") or {}
    steps_text = (f"{plan['steps']} steps per run" if not plan.get("equal_flops") else
                  f"equal training FLOPs: every method trains for about the FLOPs of C3 at {plan['steps']} steps ("
                  + ", ".join(f"{m} {method_steps.get(m)}" for m in methods) + " steps)")
    recipe = plan.get("recipe", "recorded")
    lines = ["# c3 sweep: C3 against baselines under the same latent budget", "",
             f"Methods {', '.join(methods)}; ratios {', '.join(f'{r}x' for r in ratios)} at N = "
             f"{settings['latents']} latents; seeds {', '.join(map(str, seeds))}; {steps_text} "
             f"({plan['size']} size; recipe {recipe}: AdamW beta2 {settings.get('beta2', 0.999)}). One model per "
             f"method and seed, trained on contexts of mixed length "
             f"(about {settings['batch_tokens']} context tokens per step; ratios unlocked in increasing "
             f"order over the first {plan['curriculum']:.0%} of the steps); each ratio is read off held-out "
             "contexts of exactly ratio x N bytes.", "",
             f"In-domain text: {results['corpus']}. Out-of-domain text: {results['out_of_domain_corpus']}.", ""]
    lines += _held_out_lines(results)
    lines += [f"Intervals: the mean over seeds with its two-sided 95% Student t-interval (n - 1 degrees of freedom; "
              f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}; one seed gives no interval).", ""]
    for domain in ("in_domain", "out_of_domain"):
        passages = results["runs"][first][domain][str(ratios[0])]["passages"]
        lines += [f"## {domain.replace('_', '-')} ({passages} passages per ratio)", ""]
        for metric in METRICS:
            lines += [f"**{metric}** (mean over seeds [95% t-interval])", "",
                      "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for method in methods:
                cells = [_interval_cell(intervals[domain][metric][method][str(r)]) for r in ratios]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += _paired_lines(summary, methods, ratios)
    lines += _passage_lines(results, summary, methods, ratios, seeds)
    lines += _bits_lines(results, summary, methods, ratios)
    lines += _compute_lines(results, methods)
    lines += _tracking_lines(results, methods, ratios, seeds)
    lines += ["## Position decay or content difficulty", "",
              "Logistic regression of each token's teacher-forced error on its relative position (0..1) and its "
              "prior surprisal (bits), seed " + str(seeds[0]) + ", in-domain: coefficient (standard error).", "",
              "| method | ratio | position | surprisal | error rate |", "|---|---|---|---|---|"]
    for method in methods:
        run = results["runs"][f"{method}-seed{seeds[0]}"]["in_domain"]
        for r in ratios:
            fit = run[str(r)]["teacher_regression"]
            cells = [("n/a" if c is None else f"{c:.3f} ({s:.3f})") for c, s in
                     zip(fit["coefficients"][1:], fit["stderr"][1:])]
            lines.append(f"| {method} | {r}x | {cells[0]} | {cells[1]} | {fit['error_rate']:.3f} |")
    lines += ["", "## Plots", "",
              "Decay plots (decay_*.png): accuracy by relative position, the mean over seeds with its 95% "
              "t-interval across seeds as the band.", ""] + [f"![{name}]({name})" for name in plots] + [""]
    analysis.write_text_atomically(os.path.join(output, "report.md"), "\n".join(lines) + "\n")


def _held_out_lines(results: dict) -> list:
    """The held-out design: which split, how many passages, how many dropped for leakage."""
    held_out = results.get("held_out") or {}
    if held_out.get("design") != "documents":
        return ["Held-out design: regions (the default corpus cut into 100 contiguous blocks, a fixed tenth held "
                "out; held-out windows whose lowest ratio's part occurs verbatim in the training blocks skipped).",
                ""]
    report = held_out["report"]
    inside, outside = report["in_domain"], report["out_of_domain"]
    lines = ["## Held-out design: documents", "",
             f"Trained on the train split of the corpus's documents ({report['train_documents']} documents, "
             f"{report['train_bytes']} bytes; corpus.document_splits, seed 0 for every seed). Evaluated in-domain on "
             f"the **{report['split']}** split: {inside['documents']} documents cut into {inside['available']} "
             f"non-overlapping passages of {inside['length']} bytes, of which {inside['leaked']} were dropped because "
             f"some {inside['window']}-byte stretch of them occurs verbatim in the training text; "
             f"{inside['returned']} passages from {len(set(held_out['in_domain_documents']))} documents evaluated "
             f"(requested {inside['requested']}). Out-of-domain: {outside['returned']} passages of "
             f"{outside['length']} bytes from {len(set(held_out['out_of_domain_documents']))} of "
             f"{outside['documents']} books, cut the same way (never trained on: no leakage check).", ""]
    if inside.get("short"):
        lines += [f"Note: {inside['note']}.", ""]
    return lines


def _paired_lines(summary: dict, methods, ratios) -> list:
    paired = summary.get("paired") or {}
    if not any(paired.get(domain) for domain in ("in_domain", "out_of_domain")):
        return []
    lines = ["## C3 minus each baseline, seed by seed", "",
             "The per-seed difference C3 - baseline (both trained with the same seed), its mean and 95% t-interval "
             "(statistics.paired_difference). An interval that excludes 0 is a difference the seeds support; for "
             "bits per byte and bits per token lower is better.", ""]
    for domain in ("in_domain", "out_of_domain"):
        for metric in ("token_accuracy", "teacher_forced_accuracy", "continuation_bits_per_byte", "bits_per_latent"):
            table = paired.get(domain, {}).get(metric)
            if not table:
                continue
            lines += [f"**{metric}**, {domain.replace('_', '-')}: C3 - baseline", "",
                      "| baseline | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for baseline in table:
                lines.append(f"| {baseline} | " + " | ".join(_interval_cell(table[baseline][str(r)], signed=True)
                                                           for r in ratios) + " |")
            lines.append("")
    return lines


def _passage_lines(results: dict, summary: dict, methods, ratios, seeds) -> list:
    passage = summary.get("passage_intervals") or {}
    if not any(passage.get(domain) for domain in ("in_domain", "out_of_domain")):
        return []
    lines = ["## Passage-level intervals (documents as blocks)", "",
             f"Each passage's value averaged over the {len(seeds)} seeds, then a block bootstrap over documents "
             "(statistics.block_bootstrap, 2,000 resamples, 95% percentile interval): how much the verdict depends "
             "on which documents were held out. Few documents give wide intervals.", ""]
    for domain in ("in_domain", "out_of_domain"):
        for metric, table in (passage.get(domain) or {}).items():
            lines += [f"**{metric}**, {domain.replace('_', '-')} (mean over passages [95% block-bootstrap "
                      "interval])", "",
                      "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
            for method in methods:
                lines.append(f"| {method} | " + " | ".join(_interval_cell(table[method][str(r)]) for r in ratios)
                             + " |")
            lines.append("")
    return lines


def _bits_lines(results: dict, summary: dict, methods, ratios) -> list:
    intervals = summary["intervals"]["in_domain"]
    if all(intervals["bits_per_latent"][m][str(r)] is None for m in methods for r in ratios):
        return []
    prior = ("the sweep's no_context model of the same seed" if "no_context" in methods else
             "each cascade's own decoder with an empty latent block (no no_context run: a rough prior for methods "
             "whose decoder never saw an empty block)")
    lines = ["## Information in bits", "",
             f"Per token, the reconstruction surprisal -log2 p(true token | latents, true prefix) and the prior "
             f"surprisal under {prior}; the latents supply prior - reconstruction bits at each position, summed over "
             f"a passage of ratio x N bytes, and divided by N = {results['settings']['latents']}: **bits per latent** "
             "(in-domain; mean over seeds [95% t-interval]). A lossless code of the context would need all of its "
             "prior bits.", "",
             "| method | " + " | ".join(f"{r}x" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(_interval_cell(intervals["bits_per_latent"][method][str(r)], 2)
                                                   for r in ratios) + " |")
    lines += ["", "Reconstruction and prior surprisal, bits per token (in-domain, mean over seeds):", "",
              "| method | " + " | ".join(f"{r}x recon / prior" for r in ratios) + " |",
              "|---|" + "---|" * len(ratios)]
    for method in methods:
        cells = []
        for r in ratios:
            recon = intervals["reconstruction_bits_per_token"][method][str(r)]
            prior_entry = intervals["prior_bits_per_token"][method][str(r)]
            cells.append("n/a" if recon is None or prior_entry is None else
                         f"{recon['mean']:.3f} / {prior_entry['mean']:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _compute_lines(results: dict, methods) -> list:
    compute = results.get("compute")
    if not compute:
        return []
    reference = (compute.get("c3") or {}).get("training_flops")
    lines = ["## Training compute", "",
             "Estimated training FLOPs per run (sweep.training_flops: 6 x matmul parameters x tokens + attention "
             "6 x layers x tokens^2 x width, per part each method runs, each step's ratio in expectation over the "
             "curriculum).", "",
             "| method | steps | training FLOPs | relative to c3 |", "|---|---|---|---|"]
    for method in methods:
        entry = compute[method]
        relative = f"{entry['training_flops'] / reference:.2f}" if reference else "n/a"
        lines.append(f"| {method} | {entry['steps']} | {_flops_text(entry['training_flops'])} | {relative} |")
    return lines + [""]
