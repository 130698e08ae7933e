"""c3 against PyTorch (transformers' Llama/Qwen2 in eager mode) on the same models, threads and inputs, in one
process. Prints tokens/s for each and the ratio c3 / PyTorch.

    python benchmarks/compare_torch.py [--threads 2] [--quick] [--only forward,decode,train,mixed]
                                       [--models d256,d512]

Models: "tiny" (byte-level d=64, 2 layers), "d128", "d256" and "d512" byte-level (4 layers), and "small" (~100M
parameters, Llama shape d=768, 12 layers, vocab 32000). Each measurement is the median of several repeats after
warm-up. "mixed" times one training step four ways: c3 float32, c3 bf16 mixed precision (compute_dtype="bfloat16"),
PyTorch float32 and PyTorch under bf16 autocast, in interleaved rounds (each round steps every engine once, so that
a drifting shared host slows all alike), and prints medians over the rounds, the mixed-precision trainer's ratios to
the others, and the lowest and highest round's ratio of c3's best mode to PyTorch's.
The default models are tiny, d128, d256 (and small without --quick).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile

import numpy as np
import torch
import transformers

import c3
from shapes import MODELS, hf_arguments
from timing import interleaved_rounds, median_time


def build(name, directory):
    config = transformers.LlamaConfig(**hf_arguments(name))
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    return model, c3.load_model(directory)


def timed(function, repeats, warmup=2):
    return median_time(function, repeats, warmup)


def row(results, task, model, shape, tokens, c3_seconds, torch_seconds):
    entry = dict(task=task, model=model, shape=shape, c3_tokens_per_s=tokens / c3_seconds,
                 torch_tokens_per_s=tokens / torch_seconds, ratio=torch_seconds / c3_seconds)
    results.append(entry)
    print(f"{task:8s} {model:6s} {shape:18s} c3 {entry['c3_tokens_per_s']:10.0f} tok/s   torch "
          f"{entry['torch_tokens_per_s']:10.0f} tok/s   ratio {entry['ratio']:5.2f}x", flush=True)


def bench_forward(results, name, hf, model, repeats):
    rng = np.random.default_rng(0)
    for batch, length in ((1, 128), (8, 128)):
        ids = rng.integers(0, MODELS[name]["vocab_size"], size=(batch, length))
        tensor = torch.from_numpy(ids)
        with torch.no_grad():
            torch_seconds = timed(lambda: hf(input_ids=tensor), repeats)
        c3_seconds = timed(lambda: model.forward(ids, logits="all"), repeats)
        row(results, "forward", name, f"B={batch} T={length}", batch * length, c3_seconds, torch_seconds)


def bench_decode(results, name, hf, model, repeats, new_tokens=32):
    ids = np.random.default_rng(1).integers(0, MODELS[name]["vocab_size"], size=(1, 16))
    tensor = torch.from_numpy(ids)
    with torch.no_grad():
        torch_seconds = timed(lambda: hf.generate(tensor, attention_mask=torch.ones_like(tensor),
                                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                                  do_sample=False, pad_token_id=0), repeats, warmup=1)
    c3_seconds = timed(lambda: model.generate(ids, max_new_tokens=new_tokens), repeats, warmup=1)
    row(results, "decode", name, f"B=1 new={new_tokens}", new_tokens, c3_seconds, torch_seconds)


def torch_train_step(hf, tensor, autocast=False):
    """One AdamW step of the transformers model (float32, or its forward under bf16 autocast), as a closure."""
    optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = hf(input_ids=tensor, labels=tensor).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        optimizer.step()
    return step


def bench_train(results, name, hf, model, repeats, batch=16, length=64):
    ids = np.random.default_rng(2).integers(0, MODELS[name]["vocab_size"], size=(batch, length + 1))
    hf.train()
    trainer = c3.LanguageModelTrainer(model, learning_rate=1e-4)
    torch_seconds = timed(torch_train_step(hf, torch.from_numpy(ids)), repeats)
    c3_seconds = timed(lambda: trainer.step(ids), repeats)
    hf.eval()
    row(results, "train", name, f"B={batch} T={length}", batch * length, c3_seconds, torch_seconds)


def bench_mixed(results, name, hf, directory, repeats, batch=16, length=64, autocast=True):
    """Training steps of c3 float32, c3 bf16 mixed precision, c3 on compute_dtype="auto" (the mode it chose on this
    CPU in brackets), PyTorch float32 and PyTorch bf16 autocast."""
    ids = np.random.default_rng(2).integers(0, MODELS[name]["vocab_size"], size=(batch, length + 1))
    tensor = torch.from_numpy(ids)
    hf.train()
    automatic = c3.LanguageModelTrainer(c3.load_model(directory), learning_rate=1e-4, compute_dtype="auto")
    steps = {"c3 float32": c3.LanguageModelTrainer(c3.load_model(directory), learning_rate=1e-4).step,
             "c3 bf16": c3.LanguageModelTrainer(c3.load_model(directory), learning_rate=1e-4,
                                                compute_dtype="bfloat16").step,
             f"c3 auto ({automatic.compute_dtype})": automatic.step,
             "torch float32": torch_train_step(hf, tensor)}
    if autocast:
        steps["torch bf16 autocast"] = torch_train_step(hf, tensor, autocast=True)
    onednn = c3.onednn_in_use()
    if onednn:  # the same float32 trainer on c3's own kernels, beside it in this process
        steps = {"c3 float32 own kernels": steps["c3 float32"], **steps}
    calls = {label: (lambda step=step: step(ids)) if label.startswith("c3") else step for label, step in steps.items()}
    rounds = interleaved_rounds(calls, repeats, batch * length,
                                around={"c3 float32 own kernels": (c3.unload_onednn, c3.load_onednn)})
    rates = {label: statistics.median(r[label] for r in rounds) for label in calls}
    hf.eval()
    mixed = rates["c3 bf16"]
    ratios = {f"c3 bf16 / {label}": mixed / rate for label, rate in rates.items() if label != "c3 bf16"}
    torch_best = max(rate for label, rate in rates.items() if label.startswith("torch"))
    ratios["c3 auto / torch best"] = rates[f"c3 auto ({automatic.compute_dtype})"] / torch_best
    # The spread over the rounds of c3's best mode against PyTorch's, each round's rates against each other.
    per_round = [max(v for k, v in r.items() if k.startswith("c3")) / max(v for k, v in r.items()
                                                                           if k.startswith("torch")) for r in rounds]
    ratios["c3 best / torch best, lowest round"] = min(per_round)
    ratios["c3 best / torch best, highest round"] = max(per_round)
    results.append(dict(task="mixed", model=name, shape=f"B={batch} T={length}", tokens_per_s=rates, ratios=ratios))
    print(f"mixed    {name:6s} B={batch} T={length}  " + "   ".join(f"{k} {v:8.0f}" for k, v in rates.items())
          + " tok/s\n" + " " * 16 + "   ".join(f"{k} {v:5.2f}x" for k, v in ratios.items()), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip the ~100M model")
    parser.add_argument("--only", default="forward,decode,train")
    parser.add_argument("--models", help="comma-separated models (default: tiny,d128,d256, and small unless --quick)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--skip-autocast", action="store_true",
                        help="mixed: leave out PyTorch's bf16 autocast (emulated, and tens of times slower, on CPUs "
                             "without avx512_bf16 or AMX)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c3.set_num_threads(args.threads)
    tasks = set(args.only.split(","))
    repeats = 3 if args.quick else 7
    print(f"c3 vs PyTorch {torch.__version__} (eager, transformers {transformers.__version__}), "
          f"{args.threads} threads, {platform.processor() or platform.machine()}; float32 GEMM: "
          f"{c3.onednn_in_use() or 'c3 (own kernels)'}")
    results = []
    names = args.models.split(",") if args.models else ["tiny", "d128", "d256"] + ([] if args.quick else ["small"])
    for name in names:
        with tempfile.TemporaryDirectory() as directory:
            hf, model = build(name, directory)
            if "forward" in tasks:
                bench_forward(results, name, hf, model, repeats)
            if "decode" in tasks:
                bench_decode(results, name, hf, model, max(3, repeats // 2))
            if "train" in tasks and name != "small":
                bench_train(results, name, hf, model, repeats)
            if "mixed" in tasks:
                # The ~100M model takes seconds a step: fewer rounds.
                bench_mixed(results, name, hf, directory, 3 if name == "small" else max(repeats, 7),
                            autocast=not args.skip_autocast)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
