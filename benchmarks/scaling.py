"""Thread scaling of c3's training: language-model and cascade training steps at 1, 2, 4, 8 and 16 threads
(the counts up to the machine's cores, unless --threads names others), for the byte-level Llama shapes of
shapes.py (d128, d256, d512, 4 layers each), built by c3 itself: the benchmark imports neither PyTorch nor
transformers.

    python benchmarks/scaling.py [--threads 1,2,4,8,16] [--models d128,d256,d512] [--repeats 3]

Printed per thread count: tokens/s; the parallel efficiency against 2 threads, rate(T) / ((T/2) * rate(2)), and
against 1 thread, rate(T) / (T * rate(1)); and the fraction of the GEMM peak. The peak is c3's float32 GEMM
(1024^3, ops::linear_forward blocked across the threads) measured at the same thread count in the same process,
the ceiling of docs/BENCHMARKS.md. Training FLOPs are counted as 6 x parameters x tokens plus the causal
attention products (3 x 4 x layers x heads x head_dim x length / 2 per token), per model: for the cascade, the
encoder over context + latent queries, the decoder over latents + answer (+ the 5 prompt tokens), and the
projector. Language-model steps: batch 16 x 64 tokens. Cascade steps: the same model as encoder and decoder,
16 latents, batch 16 x 64-token contexts read back, data-parallel; tokens/s counts context tokens.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform

import numpy as np

import c3
from shapes import MODELS, c3_config
from timing import median_time

BATCH, LENGTH, LATENTS = 16, 64, 16
PROMPT = dict(latent_start_token=1, latent_end_token=2, latent_pad_token=3, prompt_prefix=[10, 11],
              prompt_suffix=[12], stop_tokens=[4])


def attention_flops(shape: dict, length: float) -> float:
    """Causal QK^T and PV, forward and backward, per token of a sequence of `length`."""
    head_dim = shape["hidden_size"] // shape["num_attention_heads"]
    return 3.0 * 4.0 * shape["num_hidden_layers"] * shape["num_attention_heads"] * head_dim * length / 2


def language_model_case(name: str):
    model = c3.Transformer(c3_config(name), seed=0)
    parameters = sum(value.size for value in model.parameters().values())
    ids = np.random.default_rng(2).integers(0, MODELS[name]["vocab_size"], size=(BATCH, LENGTH + 1))
    trainer = c3.LanguageModelTrainer(model, learning_rate=1e-4)
    flops_per_token = 6.0 * parameters + attention_flops(MODELS[name], LENGTH)
    return (lambda: trainer.step(ids)), BATCH * LENGTH, flops_per_token * BATCH * LENGTH


def cascade_case(name: str):
    encoder, decoder = c3.Transformer(c3_config(name), seed=0), c3.Transformer(c3_config(name), seed=1)
    shape = MODELS[name]
    model = c3.CascadeModel.from_models(encoder, decoder, dict(num_latents=LATENTS, projector="linear", **PROMPT),
                                       seed=0)
    parameters = sum(value.size for value in encoder.parameters().values())  # each model; both have one shape
    contexts = np.random.default_rng(1).integers(20, shape["vocab_size"], size=(BATCH, LENGTH)).astype(np.int64)
    mask = np.ones_like(contexts)
    trainer = c3.CascadeTrainer(model, learning_rate=1e-5, data_parallel=True)
    encoder_tokens, decoder_tokens = LENGTH + LATENTS, LATENTS + LENGTH + 5
    hidden = shape["hidden_size"]
    flops = BATCH * (encoder_tokens * (6.0 * parameters + attention_flops(shape, encoder_tokens)) +
                     decoder_tokens * (6.0 * parameters + attention_flops(shape, decoder_tokens)) +
                     LATENTS * 6.0 * hidden * hidden)
    return (lambda: trainer.step(contexts, mask, contexts, mask)), BATCH * LENGTH, flops


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = os.cpu_count() or 1
    parser.add_argument("--threads", default=",".join(str(t) for t in (1, 2, 4, 8, 16) if t <= cores),
                        help="comma-separated thread counts (default: 1, 2, 4, 8, 16 up to the cores)")
    parser.add_argument("--models", default="d128,d256,d512")
    parser.add_argument("--tasks", default="lm,cascade")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per point (median), after one warm-up")
    parser.add_argument("--json", help="also write the results here (rewritten after every point)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    cpu = c3.build_info()["cpu"]
    print(f"c3 {c3.__version__}, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{cores} logical CPUs; L1d {cpu['l1d_bytes'] >> 10} KiB, L2 {cpu['l2_bytes'] >> 10} KiB, "
          f"L3 {cpu['l3_bytes'] >> 20} MiB, {cpu['vector_bits']}-bit vectors")
    peaks = {}
    for count in threads:
        c3.set_num_threads(count)
        peaks[count] = c3._core.measure_gemm_rate(1024, 3)
    print("GEMM peak (1024^3): " + ", ".join(f"{t} thr {peaks[t] / 1e9:.0f} GFLOP/s" for t in threads))
    print(f"{'task':8s} {'model':6s} {'threads':>7s} {'tokens/s':>10s} {'eff. vs 2':>9s} {'eff. vs 1':>9s} "
          f"{'GFLOP/s':>8s} {'of peak':>7s}")
    record = dict(cpu=cpu, cores=cores, gemm_peak_flops=peaks, points=[])
    cases = {"lm": language_model_case, "cascade": cascade_case}
    for task in args.tasks.split(","):
        for name in args.models.split(","):
            step, tokens, flops = cases[task](name)
            rates = {}
            for count in threads:
                c3.set_num_threads(count)
                seconds = median_time(step, args.repeats, warmup=1)
                rates[count] = tokens / seconds
                versus_two = (f"{rates[count] / (count / 2 * rates[2]):9.2f}" if 2 in rates and count >= 2
                              else f"{'':9s}")
                versus_one = f"{rates[count] / (count * rates[1]):9.2f}" if 1 in rates else f"{'':9s}"
                gflops = flops / seconds / 1e9
                print(f"{task:8s} {name:6s} {count:7d} {rates[count]:10.0f} {versus_two} {versus_one} "
                      f"{gflops:8.0f} {gflops * 1e9 / peaks[count]:7.2f}", flush=True)
                record["points"].append(dict(task=task, model=name, threads=count, tokens_per_s=rates[count],
                                             flops_per_s=gflops * 1e9, fraction_of_peak=gflops * 1e9 / peaks[count]))
                if args.json:
                    with open(args.json, "w") as handle:
                        json.dump(record, handle, indent=2)


if __name__ == "__main__":
    main()
