#!/usr/bin/env python3
"""Copies the evaluated runs of one `c3 sweep` output into another whose plan differs at most in its seeds, so that
seeds trained in separate outputs (one per core, or per machine) come together in the recorded one.

    python scripts/merge_runs.py SOURCE TARGET [--dry-run]

A run is copied (its trained.json and evaluation.json, never its checkpoint) when SOURCE holds a finished
evaluation of it (c3.experiments.runs.finished_evaluation), its seed is in TARGET's plan and TARGET holds no
finished evaluation of it. Each file is copied whole: written beside its destination, then renamed over it. Plans
that differ in anything but the seeds, or a damaged file, stop the script with one line and status 2, before
anything is copied.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import c3
from c3.experiments.runs import check_plan, finished_evaluation, read_sweep_file


def _fail(message: str) -> None:
    print(f"merge_runs: {message}", file=sys.stderr)
    sys.exit(2)


def _copy_whole(source: str, destination: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(destination), prefix=".merge-")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except BaseException:
        os.unlink(temporary)
        raise


def runs_to_merge(source: str, target: str) -> list:
    """[(run name, source directory, target directory)] of the evaluated runs TARGET lacks."""
    plans = [read_sweep_file(os.path.join(folder, "sweep.json"), check_plan) for folder in (source, target)]
    differing = sorted(key for key in set(plans[0]) | set(plans[1])
                       if key != "seeds" and plans[0].get(key) != plans[1].get(key))
    if differing:
        _fail(f"{source} and {target} hold sweeps with other settings ({', '.join(differing)}); only the seeds may "
              "differ")
    ratios, seeds = plans[1]["ratios"], set(plans[1]["seeds"])
    merged = []
    for method in plans[1]["methods"]:
        for seed in sorted(seeds & set(plans[0]["seeds"])):
            name = f"{method}-seed{seed}"
            here, there = os.path.join(source, "runs", name), os.path.join(target, "runs", name)
            if finished_evaluation(here, ratios, quiet=True) is None:
                continue
            if os.path.isdir(there) and finished_evaluation(there, ratios, quiet=True) is not None:
                continue
            merged.append((name, here, there))
    return merged


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    args = parser.parse_args(argv)
    try:
        merged = runs_to_merge(args.source, args.target)
    except c3.C3Error as error:
        _fail(" ".join(str(error).split()))
    for name, here, there in merged:
        print(f"{'would copy' if args.dry_run else 'copying'} {name}")
        if not args.dry_run:
            os.makedirs(there, exist_ok=True)
            for file in ("trained.json", "evaluation.json"):  # evaluation last: it names the training it read
                _copy_whole(os.path.join(here, file), os.path.join(there, file))
    print(f"{len(merged)} run(s) {'to copy' if args.dry_run else 'copied'}")


if __name__ == "__main__":
    main()
