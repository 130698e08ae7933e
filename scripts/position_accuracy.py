"""Teacher-forced accuracy at every absolute position of the reconstruction, averaged over held-out passages, and
the dips in it: positions where a cascade reads its latents worse than at its neighbours, whatever the text.

The evaluation passages start at offsets unrelated to the text's structure, so a dip that stands out of a
512-passage average belongs to the model, not to the content. The script prints one JSON object per ratio: the
accuracy by position and its mean, the dips (positions lowest within 3 on each side and at least `--depth` below
the running median of 13) and, with three or more dips, their spacing fitted by least squares.

    python scripts/position_accuracy.py --run reports/sweep/runs/c3-seed0 --ratios 4,8
    python scripts/position_accuracy.py --train 1200 --rope-theta 1000000 --ratios 4,8   # a fresh cascade
    python scripts/position_accuracy.py --train 4000 --recipe demo --passages 128 --greedy   # as c3 demo trains
    python scripts/position_accuracy.py --train 3000 --recipe demo --layers 4 --rope-theta 10000 --greedy

--run reads a c3 sweep run (default size). --train trains a fresh C3 cascade of the sweep's default shape on
ratios 2, 4 and 8 with the sweep's curriculum, to see how the dips move with the rotary base (--rope-theta);
--recipe demo trains it as `c3 demo` does (its shape, 1,024 context bytes a step); --layers changes the depth of
its encoder and decoder; --learning-rate, --min-lr-ratio (the cosine schedule's floor, a fraction of the peak) and
--shares (data-parallel shares per step, 0: one per thread) change its optimiser settings, --balance how a step draws
its ratio (batches.MixedBatches) and --curriculum the fraction of the steps over which the ratios unlock. They
default to the recipe's (sweep: base 10^4, 4 layers, 3e-3, floor 0.05, one share per thread, bytes, 0.4; demo: base
10^3, 3 layers, 2e-3, floor 0.05, four shares, passages, 0.4); they and --seed apply to --train only. --greedy adds each ratio's strict
greedy token accuracy (the reconstruction compared position by position).
"""
import argparse
import json
import os
import re
import sys

import numpy as np

import c3
from c3.eval import score_rows, surprisal
from c3.experiments import batches, demo, heldout, recipe, runs


def accuracy_by_position(cascade, passages, length):
    """[length]: the fraction of passages whose token at each position the decoder predicts, fed the true prefix."""
    correct = score_rows(cascade, [passage[:length] for passage in passages], 32, reconstruct=False)["correct"]
    return np.mean(np.stack([row[:length] for row in correct]).astype(np.float64), axis=0)


def strict_greedy_accuracy(cascade, passages, length):
    """The mean over passages of the greedy reconstruction's token accuracy, position by position."""
    scores = []
    for start in range(0, len(passages), 32):
        batch = [passage[:length] for passage in passages[start:start + 32]]
        hidden, mask = cascade.encode(batch)
        output = cascade.reconstruct(hidden, source_tokens=[len(row) for row in batch], return_ids=True,
                                     latent_mask=mask)
        scores += [surprisal.strict_correct(row, ids).mean() for row, ids in zip(batch, output)]
    return float(np.mean(scores))


def dips(accuracy, depth=0.05, window=13, radius=3):
    """Positions that are the lowest within `radius` on each side (the first of equals) and at least `depth` below
    the running median of `window` positions, and their spacing fitted by least squares."""
    half = window // 2
    median = np.array([np.median(accuracy[max(0, i - half):i + half + 1]) for i in range(len(accuracy))])
    found = [i for i in range(1, len(accuracy) - 1)
             if i == max(0, i - radius) + int(np.argmin(accuracy[max(0, i - radius):i + radius + 1]))
             and median[i] - accuracy[i] >= depth]
    spacing = float(np.polyfit(np.arange(len(found)), found, 1)[0]) if len(found) >= 3 else None
    return found, spacing


def trained_cascade(steps, rope_theta, seed, settings, train_regions, layers=None):
    """C3 on ratios 2, 4 and 8, trained as `c3 demo` trains it (the sweep's curriculum, `settings`' batches), with,
    when given, the rotary base `rope_theta` and `layers` layers in encoder and decoder (else `settings`' own)."""
    model = dict(settings["model"])
    if rope_theta is not None:
        model["rope_theta"] = float(rope_theta)
    if layers is not None:
        model["num_layers"] = int(layers)
    size = dict(settings, model=model)
    cascade, _ = demo.train("c3", (2, 4, 8), size, seed, steps, train_regions, progress=False)
    return cascade


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a c3 sweep run directory (runs/<method>-seed<seed>)")
    source.add_argument("--train", type=int, metavar="STEPS", help="train a fresh cascade for STEPS steps")
    parser.add_argument("--rope-theta", type=float, help="rotary base of a --train cascade (default: the recipe's)")
    parser.add_argument("--seed", type=int, help="seed of a --train cascade (default 0)")
    parser.add_argument("--layers", type=int, help="layers of a --train cascade's encoder and decoder")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate of a --train cascade")
    parser.add_argument("--min-lr-ratio", type=float,
                        help="floor of a --train cascade's cosine schedule, as a fraction of the peak learning rate")
    parser.add_argument("--curriculum", type=float,
                        help="fraction of a --train cascade's steps over which its ratios unlock, in [0, 1]")
    parser.add_argument("--shares", type=int, help="data-parallel shares per step of a --train cascade (0: per thread)")
    parser.add_argument("--balance", choices=batches.BALANCES,
                        help="how a step of a --train cascade draws its ratio: bytes (each equally likely), "
                        "passages (in proportion to the ratio) or longest (as passages, the longest ratio twice over)")
    parser.add_argument("--ratios", default="4,8")
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--depth", type=float, default=0.05)
    parser.add_argument("--recipe", choices=("sweep", "demo"), default="sweep",
                        help="training settings of a --train cascade: the sweep's or the demo's default size")
    parser.add_argument("--greedy", action="store_true", help="also the strict greedy token accuracy per ratio")
    parser.add_argument("--max-ratio", type=int, default=32, help="the sweep's longest ratio (--run)")
    args = parser.parse_args(argv)
    # A sweep run has its own shape and seed: options that would not reach it are refused, not ignored.
    ignored = [name for name, value in (("--rope-theta", args.rope_theta), ("--seed", args.seed),
                                        ("--layers", args.layers), ("--learning-rate", args.learning_rate),
                                        ("--shares", args.shares), ("--balance", args.balance),
                                        ("--min-lr-ratio", args.min_lr_ratio), ("--curriculum", args.curriculum))
               if value is not None]
    if args.run and (ignored or args.recipe != "sweep"):
        raise c3.C3ValueError(f"{', '.join(ignored) or '--recipe demo'} applies to --train, not to --run")
    settings = dict(recipe.SIZES["default"] if args.recipe == "sweep" else demo.SIZES["default"])
    if args.learning_rate is not None:
        if not args.learning_rate > 0:
            raise c3.C3ValueError(f"--learning-rate must be positive, got {args.learning_rate}")
        settings["learning_rate"] = args.learning_rate
    if args.shares is not None:
        if args.shares < 0:
            raise c3.C3ValueError(f"--shares must be at least 0, got {args.shares}")
        settings["shares"] = args.shares
    if args.balance is not None:
        settings["balance"] = args.balance
    if args.min_lr_ratio is not None:
        settings["min_lr_ratio"] = batches.check_fraction("--min-lr-ratio", args.min_lr_ratio)
    if args.curriculum is not None:
        settings["curriculum"] = batches.check_fraction("--curriculum", args.curriculum)
    ratios = [int(r) for r in args.ratios.split(",")]
    train_regions, held_out_regions = heldout.default_regions()
    if args.run:
        match = re.fullmatch(r"(\w+)-seed(\d+)", os.path.basename(os.path.normpath(args.run)))
        if not match or match.group(1) not in recipe.METHODS:
            raise c3.C3ValueError(f"{args.run}: expected a sweep run directory named <method>-seed<seed>")
        cascade = runs.load_run(args.run, match.group(1), int(match.group(2)), settings, args.max_ratio)
    else:
        if args.layers is not None and args.layers < 1:
            raise c3.C3ValueError(f"--layers must be at least 1, got {args.layers}")
        cascade = trained_cascade(args.train, args.rope_theta, args.seed or 0, settings, train_regions, args.layers)
    passages = heldout.evaluation_passages(held_out_regions, max(ratios) * settings["latents"], args.passages,
                                         unseen_in=train_regions, unseen_length=min(ratios) * settings["latents"])
    for ratio in ratios:
        accuracy = accuracy_by_position(cascade, passages, ratio * settings["latents"])
        found, spacing = dips(accuracy, args.depth)
        greedy = dict(greedy=round(strict_greedy_accuracy(cascade, passages, ratio * settings["latents"]), 4)
                      ) if args.greedy else {}
        print(json.dumps(dict(ratio=ratio, mean=round(float(accuracy.mean()), 4), **greedy, dips=found,
                              spacing=None if spacing is None else round(spacing, 2),
                              accuracy=[round(float(a), 4) for a in accuracy])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
