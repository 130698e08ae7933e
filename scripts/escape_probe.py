"""When does a cascade start to read its latents? Trains one method of the sweep's default shape on a set of ratios
(optionally with the ratio curriculum) and prints, every few steps, the teacher-forced accuracy on 64 held-out
passages at each evaluated ratio, one JSON line each. A cascade that has not learned to read its latents sits at
the no-context prior: the same accuracy at every ratio.

    python scripts/escape_probe.py --ratios 2,4,8,16,32 --curriculum 0 --steps 1250 --every 250
    python scripts/escape_probe.py --ratios 2 --steps 400 --every 100 --evaluate 2,4

The batches and the curriculum are the sweep's (c3.experiments.batches.MixedBatches), with its training settings.
"""
import argparse
import json
import sys
import time

import numpy as np

from c3.experiments import batches, heldout, recipe, runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="c3", choices=recipe.METHODS)
    parser.add_argument("--ratios", default="2,4,8,16,32", help="training ratios, comma-separated")
    parser.add_argument("--evaluate", default="4,8,16", help="evaluated ratios, comma-separated")
    parser.add_argument("--curriculum", type=float, default=0.0, help="fraction of the steps that unlocks the ratios")
    parser.add_argument("--steps", type=int, default=1250)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ratios = [int(r) for r in args.ratios.split(",")]
    evaluated = [int(r) for r in args.evaluate.split(",")]
    settings = dict(recipe.SIZES["default"])
    latents = settings["latents"]
    train_regions, held_out_regions = heldout.default_regions()
    passages = heldout.evaluation_passages(held_out_regions, max(evaluated) * latents, 64, unseen_in=train_regions,
                                         unseen_length=min(evaluated) * latents)
    cascade = recipe.build_cascade(args.method, settings, max(ratios + evaluated), args.seed)
    trainer = recipe.make_trainer(cascade, settings, args.steps)
    data = batches.MixedBatches(train_regions, ratios, latents, settings["batch_tokens"], settings["continuation"],
                              seed=args.seed + 1000, curriculum_steps=int(round(args.curriculum * args.steps)))
    started, losses = time.perf_counter(), []
    for step in range(args.steps):
        contexts, _ = data.draw(step)
        losses.append(cascade.train_step(trainer, contexts)["loss"])
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            row = dict(step=step + 1, seconds=round(time.perf_counter() - started, 1),
                       loss=round(float(np.mean(losses[-50:])), 4),
                       teacher_forced={f"{r}x": round(runs.teacher_forced_accuracy(
                           cascade, [passage[:r * latents] for passage in passages], settings["eval_batch"]), 4)
                           for r in evaluated})
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
