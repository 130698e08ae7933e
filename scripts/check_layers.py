#!/usr/bin/env python3
"""Fails when a header under include/c3/ includes one from a layer it may not depend on.

The layers, lowest first:

    core -> ops -> model -> {io, text, analysis, cascade} -> train

A header may include headers of its own layer and of every lower layer. io, text, analysis and cascade are peers:
none of them may include train, and a peer may include another peer only where ALLOWED_PEERS names the pair. The
one such pair is io/c3_checkpoint.hpp -> cascade/, which reads and writes the official C3 checkpoint layout and so
needs the cascade it loads. The bindings (python/src) sit above train and may include anything.

    python3 scripts/check_layers.py          # exit status 1 on a finding
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include" / "c3"

# Layer rank: a header may include a header of the same or a lower rank, never a higher one.
RANK = {"core": 0, "ops": 1, "model": 2, "io": 3, "text": 3, "analysis": 3, "cascade": 3, "train": 4}
# (including header, relative to include/c3; included layer) pairs allowed across peers of the same rank.
ALLOWED_PEERS = {("io/c3_checkpoint.hpp", "cascade")}

INCLUDE_LINE = re.compile(r'^\s*#\s*include\s*[<"]c3/([^">]+)[">]')


def findings(include_root: Path) -> list:
    found = []
    headers = sorted(include_root.glob("**/*.hpp"))
    if not headers:
        return [f"no headers under {include_root}"]
    for header in headers:
        relative = header.relative_to(include_root).as_posix()
        layer = relative.split("/")[0]
        if layer not in RANK:
            found.append(f"{relative}: folder '{layer}' is not a known layer; add it to RANK")
            continue
        for number, line in enumerate(header.read_text(encoding="utf-8").splitlines(), start=1):
            match = INCLUDE_LINE.match(line)
            if not match:
                continue
            target = match.group(1)
            target_layer = target.split("/")[0]
            where = f"include/c3/{relative}:{number}: includes c3/{target}"
            if not (include_root / target).is_file():
                found.append(f"{where}, which does not exist")
            elif target_layer not in RANK:
                found.append(f"{where}, from folder '{target_layer}', which is not a known layer")
            elif RANK[target_layer] > RANK[layer]:
                found.append(f"{where}: {layer} may not include {target_layer}, a higher layer")
            elif (RANK[target_layer] == RANK[layer] and target_layer != layer
                  and (relative, target_layer) not in ALLOWED_PEERS):
                found.append(f"{where}: {layer} may not include its peer {target_layer}")
    return found


def main() -> int:
    found = findings(INCLUDE)
    for finding in found:
        print(finding)
    if found:
        print(f"check_layers: {len(found)} finding(s); layers point one way: "
              "core -> ops -> model -> {io, text, analysis, cascade} -> train", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
