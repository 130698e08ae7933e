"""Decode and prefill on the real SmolLM2-135M: c3 against PyTorch (transformers, same threads) and llama.cpp
(llama-cpp-python built with native CPU flags), float32 and bf16 weights, in one run.

    pip install llama-cpp-python   # builds llama.cpp from source with native flags (several minutes)
    python benchmarks/decode_race.py [--threads 2] [--json out.json]

All engines run the same dequantised weights: llama.cpp's F32 and BF16 GGUF files are written from the packaged
Q4_1 file by llama_model_quantize (allow_requantize), and c3 / PyTorch load the HF directory made from that file.
Decode is memory-bound: the script prints the weight bytes read per token, the read bandwidth measured around
each engine's decode at batch 1 (one reading before it, one after) and the fraction of it the engine reaches.
c3 and PyTorch prefill in interleaved rounds (each round times every engine once; medians), so that a shared host's
drift slows both alike.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import transformers

import c3
from timing import interleaved_rounds, median_time
from c3.models import cache_dir, smollm2, smollm2_gguf_path




def gguf_variant(kind):
    """F32 or BF16 GGUF written from the packaged Q4_1 file (once, cached)."""
    import llama_cpp

    path = os.path.join(cache_dir(), f"smollm2-135m-instruct-{kind}.gguf")
    if not os.path.exists(path):
        params = llama_cpp.llama_model_quantize_default_params()
        params.allow_requantize = True
        params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32 if kind == "f32" else llama_cpp.LLAMA_FTYPE_MOSTLY_BF16
        status = llama_cpp.llama_model_quantize(smollm2_gguf_path().encode(), path.encode(), params)
        if status != 0:
            raise RuntimeError(f"llama_model_quantize failed with {status}")
    return path


def bench_llama_cpp(path, threads, prompt, new_tokens):
    import llama_cpp

    model = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=2048, n_batch=1024,
                            n_ubatch=1024, verbose=False)
    results = {}
    for length in (128, 1024):
        tokens = prompt[:length]

        def prefill():
            model.reset()
            model.eval(tokens)
        results[f"prefill_{length}"] = length / median_time(prefill)
    model.reset()
    model.eval(prompt[:16])
    token = prompt[16]

    def decode():
        model.reset()
        model.eval(prompt[:16])
        started = time.perf_counter()
        for _ in range(new_tokens):
            model.eval([token])
        return time.perf_counter() - started
    decode()
    results["decode_1"], results["bandwidth"] = with_bandwidth(
        lambda: new_tokens / statistics.median(decode() for _ in range(3)))
    return results


def read_bandwidth():
    """The memory read rate now, in bytes/s (c3's threads summing a 1 GiB buffer, best of 5)."""
    return c3._core.measure_read_bandwidth(1024, 5)


def with_bandwidth(measure):
    """measure()'s result and the read bandwidth around it (the mean of one reading before and one after): on a
    shared host the rate moves by 10-30% within minutes, so each decode is set against its own readings."""
    before = read_bandwidth()
    result = measure()
    return result, (before + read_bandwidth()) / 2


def decode_rate(generate, batch, new_tokens):
    """Tokens per second after the prompt pass: generating new_tokens minus generating one token (the prompt pass
    and the first token), as llama.cpp is timed only after its prompt."""
    full = median_time(lambda: generate(new_tokens))
    first = median_time(lambda: generate(1))
    return batch * (new_tokens - 1) / (full - first)


def bench_c3(model, prompt, new_tokens):
    results = {}
    for batch in (1, 8):
        ids = np.array([prompt[:16]] * batch)
        results[f"decode_{batch}"], bandwidth = with_bandwidth(
            lambda: decode_rate(lambda count: model.generate(ids, max_new_tokens=count), batch, new_tokens))
        if batch == 1:
            results["bandwidth"] = bandwidth
    return results


def bench_torch(model, prompt, new_tokens):
    results = {}
    with torch.no_grad():
        for batch in (1, 8):
            ids = torch.tensor([prompt[:16]] * batch)
            results[f"decode_{batch}"], bandwidth = with_bandwidth(lambda: decode_rate(
                lambda count: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=count,
                                             min_new_tokens=count, do_sample=False, pad_token_id=2), batch, new_tokens))
            if batch == 1:
                results["bandwidth"] = bandwidth
    return results


def prefill_rates(engines, prompt, rounds=5):
    """{engine: {"prefill_128": tokens/s, "prefill_1024": ...}}: each length's prompt pass timed for every engine in
    interleaved rounds (timing.interleaved_rounds), medians. engines: {label: (forward(ids), before, after)}, where
    before/after switch a model's compute mode outside the timing."""
    table = {label: {} for label in engines}
    for length in (128, 1024):
        calls = {label: (lambda forward=forward: forward(prompt[:length])) for label, (forward, _, _) in engines.items()}
        around = {label: (before, after) for label, (_, before, after) in engines.items()}
        for_rounds = interleaved_rounds(calls, rounds, length, warmup=1, around=around)
        for label in engines:
            table[label][f"prefill_{length}"] = statistics.median(r[label] for r in for_rounds)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--json")
    parser.add_argument("--skip-llama-cpp", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c3.set_num_threads(args.threads)
    directory = smollm2()
    tokenizer = c3.BpeTokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    import pydoc_data.topics
    prompt = [int(t) for t in tokenizer.encode(pydoc_data.topics.topics["if"] * 8)][:1100]
    bandwidth = read_bandwidth()
    parameters = 134_515_008
    print(f"SmolLM2-135M, {args.threads} threads; measured read bandwidth {bandwidth / 1e9:.1f} GB/s at the start; "
          "each decode at batch 1 is set against readings taken just before and after it")
    table = {}
    for storage, bytes_per_weight in (("float32", 4), ("bf16", 2)):
        model = c3.load_model(directory, storage=storage)
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float32 if storage == "float32" else torch.bfloat16).eval()
        stored_compute = model.compute
        keep = (lambda: None, lambda: None)
        bf16_compute = (lambda model=model: setattr(model, "compute", "bf16"),
                        lambda model=model: setattr(model, "compute", stored_compute))

        def torch_forward(ids, hf=hf):
            with torch.no_grad():
                hf(input_ids=torch.tensor([ids]), logits_to_keep=1)

        def c3_forward(ids, model=model):
            model.forward(np.array([ids]), logits="last")
        engines = {f"c3 {storage}": (c3_forward, *keep)}
        if storage == "bf16":  # bf16 dot products for prompt passes, as PyTorch computes in bf16
            engines["c3 bf16-compute bf16"] = (c3_forward, *bf16_compute)
        engines[f"torch {storage}"] = (torch_forward, *keep)
        for label, rates in prefill_rates(engines, prompt).items():
            table[label] = rates
        table[f"c3 {storage}"].update(bench_c3(model, prompt, args.new_tokens))
        if storage == "bf16":
            model.compute = "bf16"
            table["c3 bf16-compute bf16"].update(bench_c3(model, prompt, args.new_tokens))
            model.compute = "auto"  # what "auto" takes on this CPU, beside what measured faster for prompts here
            faster = max(("float32", "bf16"), key=lambda mode: table["c3 bf16" if mode == "float32"
                                                                 else "c3 bf16-compute bf16"]["prefill_1024"])
            print(f"compute='auto' chooses {model.compute}; measured faster at prefill 1024: {faster}", flush=True)
        del model
        table[f"torch {storage}"].update(bench_torch(hf, prompt, args.new_tokens))
        del hf
        if not args.skip_llama_cpp:
            table[f"llama.cpp {storage}"] = bench_llama_cpp(gguf_variant("f32" if storage == "float32" else "bf16"),
                                                           args.threads, prompt, args.new_tokens)
        if not args.skip_llama_cpp and storage == "float32":
            table["llama.cpp q4_1"] = bench_llama_cpp(smollm2_gguf_path(), args.threads, prompt, args.new_tokens)
        weight_bytes = parameters * bytes_per_weight
        for engine in [k for k in table if k.endswith(storage)]:
            rate = table[engine]["decode_1"]
            table[engine]["bandwidth_fraction"] = rate * weight_bytes / table[engine]["bandwidth"]
        print(f"weights read per decoded token ({storage}): {weight_bytes / 1e6:.0f} MB")
    for row in table.values():
        row["bandwidth_GB_s"] = row.pop("bandwidth") / 1e9
    columns = ["prefill_128", "prefill_1024", "decode_1", "decode_8", "bandwidth_GB_s", "bandwidth_fraction"]
    print(f"{'engine':22s}" + "".join(f"{c:>20s}" for c in columns))
    for engine, row in table.items():
        print(f"{engine:22s}" + "".join(f"{row.get(c, float('nan')):20.2f}" for c in columns))
    for storage, engines in (("float32", ["c3 float32"]), ("bf16", ["c3 bf16", "c3 bf16-compute bf16"])):
        for engine in engines:
            for other in (f"torch {storage}", f"llama.cpp {storage}"):
                if other in table:
                    ratios = {c: table[engine][c] / table[other][c] for c in columns[:4] if c in table[other]}
                    print(f"{engine} / {other}: " + ", ".join(f"{c} {v:.2f}x" for c, v in ratios.items()))
    if args.json:
        json.dump({"bandwidth_bytes_per_s": bandwidth, "threads": args.threads, "results": table},
                  open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
