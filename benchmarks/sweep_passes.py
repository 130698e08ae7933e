"""Training throughput of c3 by sequences per data-parallel pass (TrainingOptions::sequences_per_pass).

    python benchmarks/sweep_passes.py --models tiny,d128,d256 --passes 0,1,2,4,1000 [--batch 16 --length 64]

0 is the automatic choice; a number at least the share (1000) is one pass per share. The settings run in one
process, alternated round by round, and each prints its best of the rounds in tokens per second.
"""
import argparse
import tempfile
import time

import numpy as np
import torch
import transformers

import c3
from shapes import MODELS


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,d128,d256")
    parser.add_argument("--passes", default="0,1,2,4,1000")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    c3.set_num_threads(args.threads)
    passes = [int(p) for p in args.passes.split(",")]
    for name in args.models.split(","):
        directory = tempfile.mkdtemp()
        config = transformers.LlamaConfig(max_position_embeddings=2048, tie_word_embeddings=True, **MODELS[name])
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(config).save_pretrained(directory)
        ids = np.random.default_rng(2).integers(0, MODELS[name]["vocab_size"], size=(args.batch, args.length + 1))
        trainers = {p: c3.LanguageModelTrainer(c3.load_model(directory), learning_rate=1e-4, sequences_per_pass=p)
                    for p in passes}
        best = {p: float("inf") for p in passes}
        for _ in range(args.rounds):
            for p, trainer in trainers.items():
                trainer.step(ids)
                start = time.perf_counter()
                for _ in range(5):
                    trainer.step(ids)
                best[p] = min(best[p], (time.perf_counter() - start) / 5)
        tokens = args.batch * args.length
        print(f"{name} B={args.batch} T={args.length}  " +
              "  ".join(f"passes of {p}: {tokens / best[p]:8.0f}" for p in passes), flush=True)


if __name__ == "__main__":
    main()
