"""Train a c3 cascade with PyTorch (one GPU, many under torchrun, or DeepSpeed), from a c3 directory and back.

    torchrun --nproc_per_node 8 examples/train_torch.py --cascade runs/c3 --output runs/c3-trained \\
        --steps 40000 --batch 256 --micro-batch 8 --learning-rate 1e-5 --bf16 --checkpoint-dir runs/ckpt --resume
    deepspeed examples/train_torch.py --deepspeed examples/zero2.json --cascade runs/c3 --output runs/c3-trained

The cascade directory is the official C3 layout as c3 writes it (Cascade.save or c3.torch.from_torch); the result
is saved the same way, so `c3.Cascade.load(output)` continues where PyTorch stopped. Training data are passages of
--context-tokens tokens cut from a UTF-8 text file (default: CPython's documentation topics, as c3's demo uses);
each passage is both the context and the answer to reconstruct, as in C3's pretraining.

The batch of step s is drawn from a generator seeded by (seed, s) alone, so that a resumed run sees the same data
as an uninterrupted one. Each rank takes every world_size-th row of the global batch.

Needs torch, transformers, safetensors (pip install c3[torch]); c3's compiled core is optional here.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist


def import_c3_torch():
    """c3.torch; without c3's compiled core (a GPU machine with PyTorch alone), the file itself from the source tree:
    it needs only torch, transformers and safetensors."""
    try:
        import c3.torch as c3_torch
        return c3_torch
    except ImportError:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "c3", "torch.py")
        spec = importlib.util.spec_from_file_location("c3_torch", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


c3_torch = import_c3_torch()


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cascade", required=True, help="c3 directory to start from (official C3 layout)")
    parser.add_argument("--output", required=True, help="directory to save the trained cascade to")
    parser.add_argument("--text", help="UTF-8 training text (default: CPython's documentation topics)")
    parser.add_argument("--context-tokens", type=int, help="tokens per passage (default: 4 x the latents, the "
                        "demo's 4x ratio)")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    parser.add_argument("--batch", type=int, default=32, help="global batch (passages per optimiser step)")
    parser.add_argument("--micro-batch", type=int, help="passages per forward on each rank (default: the whole "
                        "per-rank batch); the rest is gradient accumulation")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--min-lr-ratio", type=float, default=0.0, help="cosine floor, as a fraction of the peak")
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--freeze", action="append", default=[], choices=list(c3_torch.PARTS))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (parameters and AdamW stay float32)")
    parser.add_argument("--save-dtype", choices=["float32", "bf16"], default="float32")
    parser.add_argument("--checkpoint-dir", help="where to keep the resumable training state")
    parser.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (0: only at "
                        "the end)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir if it holds a state")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="stop early after this much training time "
                        "(benchmarks); the cascade is still saved")
    parser.add_argument("--stop-at-step", type=int, default=0, help="stop (checkpointed) after this step, as a "
                        "preempted job would; --resume continues")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON config (ZeRO stage, bf16...); 'auto' values are "
                        "filled from these arguments")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (fewer kernel launches; "
                        "compiling takes a minute)")
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per rank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--log", help="JSON-lines log file (rank 0)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)),
                        help=argparse.SUPPRESS)  # the deepspeed launcher passes it
    return parser.parse_args(argv)


# ---- data --------------------------------------------------------------------------------------------------------
def training_text(path):
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def passages(ids: np.ndarray, length: int) -> np.ndarray:
    """Windows [count, length] of the token stream, half-overlapping."""
    starts = np.arange(0, len(ids) - length, max(1, length // 2))
    if len(starts) == 0:
        raise SystemExit(f"the training text has {len(ids)} tokens, fewer than one passage of {length}")
    return np.stack([ids[s:s + length] for s in starts])


def step_batch(windows: np.ndarray, step: int, batch: int, seed: int, rank: int, world: int) -> np.ndarray:
    """This rank's rows of step `step`'s global batch: a function of (seed, step) only, so resuming is exact."""
    rng = np.random.default_rng([seed, step])
    rows = rng.integers(0, len(windows), size=batch)
    return windows[rows[rank::world]]


def as_tensors(rows: np.ndarray, stop_token: int, device):
    """Context ids [B, L] and answer ids [B, L + 1] (the same text, then the stop token). Every token is real, so
    the masks are None (transformers' causal fast path)."""
    contexts = torch.from_numpy(rows.astype(np.int64))
    answers = torch.cat([contexts, torch.full((len(rows), 1), stop_token, dtype=torch.int64)], dim=1)
    return contexts.to(device, non_blocking=True), None, answers.to(device, non_blocking=True), None


# ---- schedule, checkpoints -----------------------------------------------------------------------------------------
def cosine_with_warmup(warmup_steps: int, total_steps: int, min_ratio: float):
    """c3's schedule as a LambdaLR factor: linear warmup from 0, then a cosine down to min_ratio at total_steps."""
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return step / warmup_steps
        if total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def save_state(path: str, module, optimizer, scheduler, step: int) -> None:
    """Model, AdamW moments, schedule and step in one file, renamed into place (never half-written)."""
    os.makedirs(path, exist_ok=True)
    target = os.path.join(path, "state.pt")
    torch.save({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step}, target + ".partial")
    os.replace(target + ".partial", target)


def fill_deepspeed_config(path: str, args, world: int, micro_batch: int, accumulation: int) -> dict:
    """The official code's style: a ZeRO config whose 'auto' values the trainer fills in."""
    with open(path) as handle:
        config = json.load(handle)
    values = {"train_batch_size": args.batch, "train_micro_batch_size_per_gpu": micro_batch,
              "gradient_accumulation_steps": accumulation, "gradient_clipping": args.max_grad_norm}
    for key, value in values.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
    if config.get("bf16", {}).get("enabled") == "auto":
        config["bf16"]["enabled"] = args.bf16
    optimizer = config.get("optimizer", {}).get("params", {})
    for key, value in (("lr", args.learning_rate), ("weight_decay", args.weight_decay), ("betas", [0.9, 0.999]),
                       ("eps", 1e-8)):
        if optimizer.get(key) == "auto":
            optimizer[key] = value
    return config


# ---- training ------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_arguments(argv)
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    if world > 1 and not args.deepspeed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {world} ranks")
    per_rank = args.batch // world
    micro_batch = args.micro_batch or per_rank
    if per_rank % micro_batch:
        raise SystemExit(f"--micro-batch {micro_batch} must divide the per-rank batch {per_rank}")
    accumulation = per_rank // micro_batch
    torch.manual_seed(args.seed)

    module = c3_torch.load(args.cascade, attn_implementation=args.attn_implementation)
    for part in args.freeze:
        module.set_trainable(part, False)
    module.to(device).train()
    codec = c3_torch.codec_for(module)
    length = args.context_tokens or 4 * module.num_latents
    windows = passages(np.asarray(codec.encode(training_text(args.text)), dtype=np.int64), length)
    stop_token = module.stop_tokens[0]
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise SystemExit("every part is frozen: nothing to train")
    schedule = cosine_with_warmup(args.warmup_steps, args.steps, args.min_lr_ratio)

    engine = None
    if args.deepspeed:
        import deepspeed

        config = fill_deepspeed_config(args.deepspeed, args, world, micro_batch, accumulation)
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=module, model_parameters=trainable, config=config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule))
        model = engine
    else:
        optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=args.weight_decay, fused=device.type == "cuda")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        # Buffers are constant token ids: nothing to broadcast.
        model = (torch.nn.parallel.DistributedDataParallel(module, device_ids=[local_rank] if device.type == "cuda"
                                                           else None, broadcast_buffers=False)
                 if world > 1 else module)
        if args.compile:
            model = torch.compile(model)

    start = 0
    if args.resume and args.checkpoint_dir:
        if engine is not None:
            loaded, client = engine.load_checkpoint(args.checkpoint_dir)
            start = int(client["step"]) if loaded else 0
        elif os.path.exists(os.path.join(args.checkpoint_dir, "state.pt")):
            state = torch.load(os.path.join(args.checkpoint_dir, "state.pt"), map_location=device)
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start = int(state["step"])
    log = open(args.log, "a") if args.log and rank == 0 else None

    def checkpoint(step):
        if not args.checkpoint_dir:
            return
        if engine is not None:
            engine.save_checkpoint(args.checkpoint_dir, client_state={"step": step})
        elif rank == 0:
            save_state(args.checkpoint_dir, module, optimizer, scheduler, step)

    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 and engine is None
                else contextlib.nullcontext())
    began, timed_tokens, timed_seconds, step = time.perf_counter(), 0, 0.0, start
    window_start, window_tokens = time.perf_counter(), 0
    for step in range(start, args.steps):
        rows = step_batch(windows, step, args.batch, args.seed, rank, world)
        # The loss of each micro-batch is its token sum over the global batch's tokens, times the ranks (DDP
        # averages gradients): the accumulated gradient is that of the global mean, as in c3.
        global_tokens = args.batch * (length + 1)
        total = torch.zeros((), device=device)
        for index in range(accumulation):
            part = as_tensors(rows[index * micro_batch:(index + 1) * micro_batch], stop_token, device)
            last = index == accumulation - 1
            sync = contextlib.nullcontext() if last or world == 1 or engine is not None else model.no_sync()
            with sync, autocast:
                loss_sum = model(*part, reduction="sum")
            if engine is not None:
                # DeepSpeed averages over accumulation steps and ranks itself.
                engine.backward(loss_sum * (accumulation * world / global_tokens))
                engine.step()
            else:
                (loss_sum * (world / global_tokens)).backward()
            total += loss_sum.detach()
        if engine is None:
            torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if world > 1:
            dist.all_reduce(total)
        window_tokens += args.batch * length
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - window_start
            if done > start + args.log_every:  # the first window includes compilation and allocation: not timed
                timed_tokens, timed_seconds = timed_tokens + window_tokens, timed_seconds + seconds
            record = {"step": done, "loss": total.item() / global_tokens, "learning_rate": scheduler.get_last_lr()[0],
                      "text_tokens_per_second": window_tokens / max(seconds, 1e-9)}
            if rank == 0:
                print(json.dumps(record), flush=True)
                if log:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
            window_start, window_tokens = time.perf_counter(), 0
        if args.checkpoint_every and done % args.checkpoint_every == 0:
            checkpoint(done)
        if args.max_seconds and time.perf_counter() - began > args.max_seconds:
            break
        if args.stop_at_step and done >= args.stop_at_step:
            break
    final_step = step + 1 if args.steps > start else start
    checkpoint(final_step)
    if rank == 0:
        c3_torch.from_torch(module, args.output, dtype=args.save_dtype)
        summary = {"output": args.output, "steps": final_step, "world_size": world, "batch": args.batch,
                   "text_tokens_per_second": timed_tokens / timed_seconds if timed_seconds else None,
                   "device": str(device), "bf16": args.bf16}
        print(json.dumps({"summary": summary}), flush=True)
        if log:
            log.write(json.dumps({"summary": summary}) + "\n")
            log.close()
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
