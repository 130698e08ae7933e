"""C3 from two pretrained SmolLM2-135M (offline): train Q + projector, then everything, on pydoc text, and report
the held-out reconstruction loss and the seconds per step.

    python benchmarks/pretrained_cascade.py [--steps 300] [--unfrozen-steps 50] [--latents 16] [--tokens 64]
"""
import argparse
import json
import time

import numpy as np

import c3
from c3.models import smollm2


def passages(tokenizer, tokens_per_passage):
    import pydoc_data.topics
    text = "\n".join(pydoc_data.topics.topics[key] for key in sorted(pydoc_data.topics.topics))
    ids = tokenizer.encode(text)
    chunks = [ids[i:i + tokens_per_passage] for i in range(0, len(ids) - tokens_per_passage, tokens_per_passage)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(chunks))
    held_out = [chunks[i] for i in order[:16]]
    train = [chunks[i] for i in order[16:]]
    return train, held_out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300, help="steps with only Q and the projector trained")
    parser.add_argument("--unfrozen-steps", type=int, default=0, help="then steps with everything trained")
    parser.add_argument("--latents", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--json")
    args = parser.parse_args()
    directory = smollm2()
    cascade = c3.Cascade.from_pretrained(directory, directory, n_latents=args.latents, seed=0)
    train, held_out = passages(cascade.tokenizer, args.tokens)

    def held_out_loss():
        return float(np.mean([cascade.loss(held_out[i:i + 4]) for i in range(0, len(held_out), 4)]))

    results = {"latents": args.latents, "tokens": args.tokens, "batch": args.batch, "phases": []}
    rng = np.random.default_rng(1)
    for phase, steps, frozen in (("queries+projector", args.steps, True), ("everything", args.unfrozen_steps, False)):
        if steps == 0:
            continue
        cascade.model.set_trainable("encoder", not frozen)
        cascade.model.set_trainable("decoder", not frozen)
        trainer = cascade.trainer(learning_rate=args.learning_rate if frozen else args.learning_rate / 20,
                                  warmup_steps=min(20, steps // 10), total_steps=steps, min_lr_ratio=0.1)
        before = held_out_loss()

        def batches():
            while True:
                yield [train[i] for i in rng.integers(0, len(train), size=args.batch)]

        started = time.perf_counter()
        reports = c3.fit(trainer, batches(), steps, step_fn=lambda t, b: cascade.train_step(t, b), description=phase)
        seconds = (time.perf_counter() - started) / steps
        after = held_out_loss()
        entry = dict(phase=phase, steps=steps, held_out_before=before, held_out_after=after,
                     seconds_per_step=seconds, final_train_loss=reports[-1]["loss"])
        results["phases"].append(entry)
        print(json.dumps(entry), flush=True)
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
