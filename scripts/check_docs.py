#!/usr/bin/env python3
"""Fails when the documents describe how the project was made rather than what it is.

README.md, docs/*.md and the notebooks describe the current state of the project. They may not name work items
("Issue 3", "#12"), working sessions, helpers or the brief, and they may not cite a DESIGN.md, which is not part
of the repository: a document states the fact itself. Source files (headers, bindings, tests, scripts) may not
cite DESIGN.md either.

    python3 scripts/check_docs.py            # checks the repository it lives in; exit status 1 on a finding
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (pattern, why it is not allowed); matched case-insensitively, line by line.
FORBIDDEN = [
    (r"\bissues?\s*#?\s*\d+", "names a work item"),
    (r"(?<![\w&])#\d+\b", "names a work item"),
    (r"\bsessions?\b", "tells who measured what when"),
    (r"\bthe brief\b", "cites the project brief"),
    (r"\bhelpers?\b", "tells who did the work"),
    (r"\bDESIGN\.md\b", "cites a file outside the repository"),
]


def documents(root: Path) -> list:
    paths = [root / "README.md"]
    paths += sorted((root / "docs").glob("**/*.md"))
    paths += sorted((root / "notebooks").glob("*.ipynb"))
    return [path for path in paths if path.is_file()]


SOURCE_SUFFIXES = {".hpp", ".cpp", ".py", ".sh", ".txt", ".cmake", ".toml", ".in"}
SOURCE_FOLDERS = ["include", "python", "tests", "benchmarks", "scripts", "cmake", "notebooks"]


def sources(root: Path) -> list:
    paths = [root / "CMakeLists.txt"]
    for folder in SOURCE_FOLDERS:
        paths += sorted(path for path in (root / folder).glob("**/*") if path.suffix in SOURCE_SUFFIXES)
    this_file = Path(__file__).resolve()
    return [path for path in paths if path.is_file() and path.resolve() != this_file and "build" not in path.parts]


def scan(root: Path, paths: list, rules: list) -> list:
    patterns = [(re.compile(pattern, re.IGNORECASE), why) for pattern, why in rules]
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern, why in patterns:
                match = pattern.search(line)
                if match:
                    found.append(f"{path.relative_to(root)}:{number}: '{match.group(0)}' {why}")
    return found


def findings(root: Path) -> list:
    return scan(root, documents(root), FORBIDDEN) + scan(root, sources(root), FORBIDDEN[-1:])


def main() -> int:
    found = findings(ROOT)
    for finding in found:
        print(finding)
    if found:
        print(f"check_docs: {len(found)} finding(s); documents describe the project as it is", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
