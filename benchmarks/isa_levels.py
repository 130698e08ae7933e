"""c3's builds per instruction-set level side by side: generic (x86-64-v2), avx2 (x86-64-v3) and avx512
(x86-64-v4 with AVX512-BF16), on decode and prefill (the decode race's measurements) and training steps (the
training comparison's), in one run. A process loads one build, so each level runs in its own child process
(C3_ISA=level); the ratios are against the generic level. Where transformers is installed, each child also times
PyTorch's training step on the same model, in the same process, as a fixed reference.

    python benchmarks/isa_levels.py [--threads 2] [--quick] [--levels generic,avx2,avx512] [--json out.json]
    python benchmarks/isa_levels.py --threads 1 --cpu-time   # on a machine shared with other jobs

Needs c3 with the level builds: a wheel (C3_ISA_LEVELS), or a build folder made with
    cmake -S . -B build/isa -G Ninja -DC3_BUILD_PYTHON=ON -DC3_BUILD_TESTS=OFF -DC3_INSTALL=OFF \\
          -DC3_ISA_LEVELS="generic;avx2;avx512" && cmake --build build/isa
    C3_CORE_DIR=$PWD/build/isa/python PYTHONPATH=$PWD/python python benchmarks/isa_levels.py
The models have random weights (the rates do not depend on the values): SmolLM2-135M's shape for decode and
prefill, the training comparison's d128 and d256 byte-level models (4 layers) for training.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import timing
from shapes import MODELS, c3_config, hf_arguments

TRAINING = ("d128", "d256")  # shapes.MODELS trained at each level


CLOCK = time.perf_counter


def median_time(function, repeats=3, warmup=1):
    return timing.median_time(function, repeats, warmup, clock=CLOCK)


def decode_rate(generate, new_tokens, repeats):
    """Tokens per second after the prompt pass, as in decode_race.py: generating new_tokens minus generating one."""
    full = median_time(lambda: generate(new_tokens), repeats)
    first = median_time(lambda: generate(1), repeats)
    return (new_tokens - 1) / (full - first)


def torch_trainer(name):
    """PyTorch's training step on the same architecture (transformers' Llama), or None without transformers."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    hf_config = transformers.LlamaConfig(**hf_arguments(name))
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(hf_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(ids):
        tensor = torch.from_numpy(ids)
        optimizer.zero_grad()
        model(input_ids=tensor, labels=tensor).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return step


def measure(threads, quick):
    """One level (the one C3_ISA loads): a dict of rates."""
    import c3

    c3.set_num_threads(threads)
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    repeats = 3 if quick else 5
    rng = np.random.default_rng(0)
    results = {"level": c3.build_info()["level"]}
    model = c3.Transformer(c3_config("smollm2"), seed=0)
    prompt = rng.integers(0, MODELS["smollm2"]["vocab_size"], size=(1, 128))
    results["prefill_128 f32"] = 128 / median_time(lambda: model.forward(prompt, logits="last"), repeats)
    new_tokens = 16 if quick else 32
    results["decode_1 f32"] = decode_rate(lambda count: model.generate(prompt[:, :16], max_new_tokens=count),
                                          new_tokens, repeats)
    model.store_as_bf16()
    model.compute = "bf16"
    results["prefill_128 bf16"] = 128 / median_time(lambda: model.forward(prompt, logits="last"), repeats)
    results["decode_1 bf16"] = decode_rate(lambda count: model.generate(prompt[:, :16], max_new_tokens=count),
                                           new_tokens, repeats)
    del model
    batch, length = 16, 64
    for name in TRAINING:
        ids = rng.integers(0, MODELS[name]["vocab_size"], size=(batch, length + 1))
        trainer = c3.LanguageModelTrainer(c3.Transformer(c3_config(name), seed=0), learning_rate=1e-4)
        results[f"train {name}"] = batch * length / median_time(lambda: trainer.step(ids), repeats + 2)
        step = torch_trainer(name)
        if step is not None:
            results[f"train {name} torch"] = batch * length / median_time(lambda: step(ids), repeats + 2)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and decoded tokens")
    parser.add_argument("--levels", default="generic,avx2,avx512")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--cpu-time", action="store_true", help="time with the process's CPU time instead of wall "
                        "time (needs --threads 1): figures that other jobs on the machine do not slow")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1 (CPU time adds up over threads)")
    if args.child:
        global CLOCK
        CLOCK = time.process_time if args.cpu_time else time.perf_counter
        print(json.dumps(measure(args.threads, args.quick)))
        return
    table = {}
    for level in args.levels.split(","):
        command = [sys.executable, __file__, "--child", "--threads", str(args.threads)]
        command += (["--quick"] if args.quick else []) + (["--cpu-time"] if args.cpu_time else [])
        result = subprocess.run(command, env={**os.environ, "C3_ISA": level}, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{level}: skipped ({result.stderr.strip().splitlines()[-1]})", flush=True)
            continue
        table[level] = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{level}: {json.dumps(table[level])}", flush=True)  # kept if a later level is cut short
    if not table:
        sys.exit("no level could be loaded")
    baseline = "generic" if "generic" in table else next(iter(table))
    columns = [key for key in table[baseline] if key != "level"]
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"c3 per instruction-set level, {args.threads} threads, {platform.machine()}, {clock}; tokens/s, and the "
          f"ratio to {baseline}")
    print(f"{'measurement':22s}" + "".join(f"{level:>20s}" for level in table))
    for column in columns:
        cells = []
        for level, row in table.items():
            ratio = row[column] / table[baseline][column]
            cells.append(f"{row[column]:10.1f} ({ratio:4.2f}x)")
        print(f"{column:22s}" + "".join(f"{cell:>20s}" for cell in cells))
    for name in TRAINING:
        if f"train {name} torch" in table[baseline]:
            print(f"train {name}, c3 / PyTorch in the same process: " +
                  ", ".join(f"{level} {row[f'train {name}'] / row[f'train {name} torch']:.2f}x"
                            for level, row in table.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": args.threads, "baseline": baseline, "results": table}, handle, indent=2)


if __name__ == "__main__":
    main()
