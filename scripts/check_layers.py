#!/usr/bin/env python3
"""Fails when a header under include/c3/ includes one from a layer it may not depend on, or a module of the Python
package imports one from a layer above its own.

The layers, lowest first:

    core -> ops -> model -> {io, text, analysis, cascade} -> train

A header may include headers of its own layer and of every lower layer. io, text, analysis and cascade are peers:
none of them may include train, and a peer may include another peer only where ALLOWED_PEERS names the pair. The
one such pair is io/c3_checkpoint.hpp -> cascade/, which reads and writes the official C3 checkpoint layout and so
needs the cascade it loads. The bindings (python/src) sit above train and may include anything.

The Python package (python/c3) has layers too, lowest first:

    the package face (c3/*.py: Cascade, analysis, corpus, ...) -> c3.eval -> c3.experiments -> c3.cli

A module may import modules of its own layer and of lower ones, at the top of the file or inside a function; so
`import c3` (the face) loads no evaluation or experiment module.

    python3 scripts/check_layers.py          # exit status 1 on a finding
"""
from __future__ import annotations

import ast
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


PACKAGE = ROOT / "python" / "c3"
# Python layer rank by the module's place in the package: c3.X (the face), c3.eval.X, c3.experiments.X, c3.cli.
PYTHON_RANK = {"face": 0, "eval": 1, "experiments": 2, "cli": 3}


def python_layer(module: str) -> str:
    """The layer of a dotted module name under c3 ("c3.eval.scoring" -> "eval")."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("eval", "experiments", "cli"):
        return parts[1]
    return "face"


def python_findings(package: Path) -> list:
    found = []
    files = sorted(package.glob("**/*.py"))
    if not files:
        return [f"no Python modules under {package}"]
    for path in files:
        relative = path.relative_to(package.parent).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        module = ".".join(parts)
        layer = python_layer(module)
        base = parts if is_package else parts[:-1]  # the package a relative import starts from
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[:len(base) - (node.level - 1)]
                    origin = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from c3 import eval` imports the module c3.eval; `from c3.eval import scoring` likewise.
                targets = [f"{origin}.{alias.name}" if origin in ("c3", "c3.eval", "c3.experiments") else origin
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target != "c3" and not target.startswith("c3."):
                    continue
                target_layer = python_layer(target)
                if PYTHON_RANK[target_layer] > PYTHON_RANK[layer]:
                    where = f"python/{relative.as_posix()}.py:{node.lineno}"
                    found.append(f"{where}: imports {target}: the {layer} layer may not import {target_layer}, "
                                 "a higher layer")
    return found


def main() -> int:
    python = python_findings(PACKAGE)
    for finding in python:
        print(finding)
    if python:
        print(f"check_layers: {len(python)} finding(s); Python layers point one way: "
              "the package face -> c3.eval -> c3.experiments -> c3.cli", file=sys.stderr)
    found = findings(INCLUDE)
    for finding in found:
        print(finding)
    if found:
        print(f"check_layers: {len(found)} finding(s); layers point one way: "
              "core -> ops -> model -> {io, text, analysis, cascade} -> train", file=sys.stderr)
        return 1
    return 1 if python else 0


if __name__ == "__main__":
    sys.exit(main())
