"""The experiments' recipe, in one place: the methods, the sizes (model shape, latents, batch, schedule), the
training recipes (what differs between the recorded sweeps and the demo), the cascade each run builds, its
optimiser, and the training FLOPs each method spends.

The sweep (c3.experiments.sweep), the demo (c3.experiments.demo) and `c3 train` read it from here.
"""
from __future__ import annotations

import os

from .. import _core
from ..cascade import Cascade, byte_tokenizer, scratch_model_config
from .batches import ratio_probabilities

METHODS = tuple(_core.method_names())  # the C++ list (cascade/baselines.hpp), the one source of method names
DEFAULT_METHODS = ("c3", "mean_pool", "truncate", "no_context", "full_context")
DEFAULT_RATIOS = (2, 4, 8, 16, 32)
MAX_SHARES = _core.max_data_parallel_shares  # TrainingOptions' kMaxDataParallelShares
# Training recipes, in one place. "recorded" (AdamW beta2 0.999) is the sweep's and the demo's: chosen on the dev
# split against "demo" at the sweep's schedule (docs/results/recipe-choice-dev) and at the demo's
# (docs/results/recipe-choice-dev-demo-schedule), higher greedy accuracy at 8x in and out of domain in both. "demo"
# (beta2 0.95) is the demo's earlier recipe, kept so that those comparisons rerun.
RECIPES = {"recorded": dict(beta2=0.999), "demo": dict(beta2=0.95)}

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


# Pretrained cascades (run_sweep's `pretrained`, `c3 sweep --pretrained`): the models come from two Hugging Face
# directories, so the size holds no model shape. N = 16 latents; ratios 4x-16x read contexts of 64-256 tokens (32x:
# 512, for which the test books hold 33 passages free of leaked text; see prose_token_data). A step holds about 256
# context tokens (a SmolLM2-135M cascade step takes about 3 s on 2 cores). The fresh parts (Q, projector,
# hierarchical blocks) learn at learning_rate, a pretrained part that trains at learning_rate * its scale
# (TrainingOptions::learning_rate_scales), as ICAE-style training keeps pretrained weights close to where they were.
PRETRAINED_SIZE = dict(latents=16, batch_tokens=256, curriculum=0.4, learning_rate=1e-3, steps=1000,
                       eval_passages=64, ood_passages=32, continuation=32, checkpoint_every=50, eval_batch=8,
                       track_points=10, track_passages=16, encoder_scale=0.1, decoder_scale=0.1)
PRETRAINED_RATIOS = (4, 8, 16)
PRETRAINED_METHODS = ("c3", "mean_pool", "mean_pool_hidden", "hierarchical", "truncate_last", "no_context")
# Training variants of a method: the same cascade, other parts trained. c3_unfrozen: C3 with its decoder trained
# too (at decoder_scale), against C3 with a frozen decoder.
VARIANTS = {"c3_unfrozen": "c3"}
# Methods with nothing of their own to train when the decoder is pretrained and frozen: the pretrained decoder is
# their model, so a pretrained sweep gives them zero steps.
UNTRAINED = ("truncate", "truncate_last", "no_context", "full_context")


def base_method(method: str) -> str:
    """The cascade method a method or training variant builds (VARIANTS)."""
    return VARIANTS.get(method, method)


def trainable_parts(method: str) -> dict:
    """{part: trains?} of a pretrained cascade for `method` (CascadeModel.set_trainable's parts). The decoder stays
    frozen (the ICAE setting) except in c3_unfrozen; C3 trains its encoder, Q and projector; the pooling and
    hierarchical baselines train their own parts only (projector, hierarchical blocks); the untrained methods
    nothing."""
    base = base_method(method)
    return dict(encoder=base == "c3", decoder=method == "c3_unfrozen", queries=base == "c3",
                projector=base in ("c3", "mean_pool", "mean_pool_hidden", "hierarchical"),
                hierarchical=base == "hierarchical")


def pretrained_settings(encoder_dir: str, decoder_dir: str, name: str) -> dict:
    """The settings of a pretrained sweep over the models in two Hugging Face directories: PRETRAINED_SIZE plus
    "pretrained" (the directories and a name for reports) and the models' shapes and vocabulary (for the FLOPs)."""
    from ..jsonfiles import read_json_object

    shapes = {}
    for key, directory in (("encoder_model", encoder_dir), ("decoder_model", decoder_dir)):
        path = os.path.join(directory, "config.json")
        config = read_json_object(path)
        for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if not isinstance(config.get(field), int) or isinstance(config.get(field), bool) or config[field] < 1:
                raise _core.FormatError(f"{path}: '{field}' must be a positive integer, got {config.get(field)!r}")
        shapes[key] = dict(hidden_size=config["hidden_size"], intermediate_size=config["intermediate_size"],
                           num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
                           num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                           head_dim=config.get("head_dim"))
        shapes["vocab"] = int(config["vocab_size"])
    return dict(PRETRAINED_SIZE, pretrained=dict(name=name, encoder=os.path.abspath(encoder_dir),
                                                 decoder=os.path.abspath(decoder_dir)), **shapes)


def recorded_settings(settings: dict) -> dict:
    """settings as a results file records them: a pretrained sweep's model folders written by
    c3.models.portable_path ($C3_CACHE/..., ~/...), so that a recorded report names no machine's own paths."""
    if "pretrained" not in settings:
        return settings
    from ..models import portable_path

    source = dict(settings["pretrained"])
    source.update(encoder=portable_path(source["encoder"]), decoder=portable_path(source["decoder"]))
    return dict(settings, pretrained=source)


def scratch_shape(hidden_size: int, num_layers: int) -> dict:
    """The shape rule of every from-scratch model here: a feed-forward width of 3 d, heads of 16 dimensions, and
    two query heads per key-value head (SIZES' shapes follow it; `c3 train` builds its models with it)."""
    return dict(hidden_size=hidden_size, intermediate_size=hidden_size * 3, num_layers=num_layers,
                num_heads=max(1, hidden_size // 16), num_kv_heads=max(1, hidden_size // 32))


def build_cascade(method: str, settings: dict, max_ratio: int, seed: int) -> Cascade:
    """A byte-level cascade of the sweep's shape for `method`. The decoder has room for the full context, the
    reconstruction and the continuation. With settings["pretrained"] (pretrained_settings): the cascade of the
    two pretrained models, Q and the new parts seeded, its parts frozen as trainable_parts says."""
    latents, longest = settings["latents"], max_ratio * settings["latents"]
    if "pretrained" in settings:
        source = settings["pretrained"]
        cascade = Cascade.from_pretrained(source["encoder"], source["decoder"], latents, seed=seed,
                                          method=base_method(method))
        for part, trains in trainable_parts(method).items():
            cascade.model.set_trainable(part, trains)
        return cascade
    encoder = scratch_model_config(settings["model"], longest, latents)
    decoder = scratch_model_config(settings["model"], 2 * longest + settings["continuation"], latents)
    return Cascade.new(encoder, decoder, latents, tokenizer=byte_tokenizer(), seed=seed, method=method)


def make_trainer(cascade: Cascade, settings: dict, steps: int):
    """The sweep's (and the demo's) AdamW: warmup over the first 5% of `steps`, then cosine to settings'
    min_lr_ratio (default 5%) of the learning rate, or warmup-stable-decay with settings' lr_decay_fraction (default
    0: cosine); betas 0.9 and settings' beta2 (default 0.999); no weight decay, gradients clipped at norm 1,
    settings' shares."""
    return cascade.trainer(learning_rate=settings["learning_rate"], warmup_steps=max(1, steps // 20),
                           total_steps=steps, min_lr_ratio=settings.get("min_lr_ratio", 0.05),
                           lr_decay_fraction=settings.get("lr_decay_fraction", 0.0),
                           beta2=settings.get("beta2", 0.999), weight_decay=0.0, max_grad_norm=1.0,
                           data_parallel_shares=settings.get("shares", 0),
                           learning_rate_scales={part: settings[f"{part}_scale"] for part in ("encoder", "decoder")
                                                 if f"{part}_scale" in settings})


def _transformer_training_flops(model: dict, sequences: int, tokens: int, loss_tokens: int = 0,
                                vocab: int = 0, passes: float = 6.0) -> float:
    """passes x (matmul parameters x tokens + layers x tokens^2 x attention width) per sequence (+ the LM head on
    the loss tokens): see training_flops_per_step. passes: 6 trained (forward, input and weight gradients), 4
    frozen with a gradient through it, 2 forward only."""
    d, heads = int(model["hidden_size"]), int(model["num_heads"])
    head_dim = int(model.get("head_dim") or d // heads)
    kv_heads = int(model.get("num_kv_heads") or heads)
    layer = d * heads * head_dim + 2 * d * kv_heads * head_dim + heads * head_dim * d + 3 * d * int(
        model["intermediate_size"])
    layers = int(model["num_layers"])
    return sequences * passes * (layers * layer * tokens + layers * tokens * tokens * heads * head_dim
                                 + d * vocab * loss_tokens)


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
    6 * d_enc * d_dec * N. Every part is trained from scratch, so all of it takes the backward pass.

    A pretrained sweep (settings["pretrained"]) takes the shapes and vocabulary of its models, and counts 4 passes
    for a frozen decoder that a gradient crosses, 2 for a frozen encoder (forward only), nothing for the untrained
    methods (UNTRAINED: zero steps)."""
    pretrained = "pretrained" in settings
    if pretrained and method in UNTRAINED:
        return 0.0
    encoder_model = settings["encoder_model"] if pretrained else settings["model"]
    decoder_model = settings["decoder_model"] if pretrained else settings["model"]
    vocab = int(settings["vocab"]) if pretrained else vocab
    parts = trainable_parts(method) if pretrained else dict(encoder=True, decoder=True)
    method = base_method(method)
    latents = int(settings["latents"])
    length = int(ratio) * latents
    batch = max(1, int(settings["batch_tokens"]) // length)
    width = 0 if method == "no_context" else length if method == "full_context" else latents
    flops = _transformer_training_flops(decoder_model, batch, length + width + 3, length + 1, vocab,
                                        6.0 if parts["decoder"] else 4.0)
    model, encoder_passes = encoder_model, 6.0 if parts["encoder"] else 2.0
    d = int(model["hidden_size"])
    if method == "c3":
        flops += _transformer_training_flops(model, batch, length + latents, passes=encoder_passes)
    elif method == "mean_pool_hidden":
        flops += _transformer_training_flops(model, batch, length, passes=encoder_passes)
    elif method == "hierarchical":
        rows = length
        while rows > latents and (rows + 1) // 2 >= latents:  # hierarchical_depth (cascade/hierarchical.hpp)
            flops += batch * 6.0 * d * d * (5 * rows + 3 * ((rows + 1) // 2))
            rows = (rows + 1) // 2
    if method in ("c3", "mean_pool", "mean_pool_hidden", "hierarchical"):
        flops += batch * 6.0 * d * int(decoder_model["hidden_size"]) * latents
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
        result[method] = max(1, int(round(budget / per_step))) if per_step else 0  # 0: an untrained method
    return result
