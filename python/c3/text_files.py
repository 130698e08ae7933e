"""The one reader of texts files, for every command (`c3 compress`, `c3 eval`, with or without --ray).

A file's name says its format:

- ``.jsonl``: one document per non-blank line, each a JSON object with a "text" string (a bare JSON string is
  accepted too);
- ``.json``: one JSON list of strings;
- anything else: one text per non-blank line, as it stands.

Errors are c3 errors (FormatError, C3ValueError, C3IOError) that name the file and, for line formats, the line.
"""
from __future__ import annotations

import json
from typing import Iterator, List, Optional, Tuple

from . import _core


def is_jsonl(path: str) -> bool:
    return str(path).endswith(".jsonl")


def document(raw: bytes, path: str, line_number: int, jsonl: bool) -> Optional[str]:
    """The text of one line of a line-format file (1-based line_number, for errors), or None for a blank line."""
    if not raw.strip():
        return None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _core.FormatError(f"{path}: line {line_number}: not UTF-8 text ({error.reason} at byte "
                                f"{error.start})") from None
    if not jsonl:
        return line.rstrip("\r\n")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise _core.FormatError(f"{path}: line {line_number}: not JSON ({error.msg})") from None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return value["text"]
    if isinstance(value, str):
        return value
    raise _core.FormatError(f"{path}: line {line_number}: expected a JSON object with a 'text' string")


def line_documents(path: str, offset: int = 0, first_line: int = 1, count: Optional[int] = None
                   ) -> Iterator[Tuple[int, str]]:
    """(line number, text) of the documents of a line-format file, from byte `offset` (which is line
    `first_line`), at most `count` of them."""
    jsonl, found = is_jsonl(path), 0
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise _core.C3IOError(f"cannot read {path}: {error.strerror or error}") from None
    with handle:
        handle.seek(offset)
        for line_number, raw in enumerate(handle, start=first_line):
            if count is not None and found == count:
                return
            text = document(raw, path, line_number, jsonl)
            if text is not None:
                found += 1
                yield line_number, text


def read_texts_file(path: str) -> List[str]:
    """Every text of a texts file (see the module's notes on formats); an empty file is a C3ValueError."""
    if str(path).endswith(".json"):
        try:
            with open(path, "rb") as handle:
                content = handle.read().decode("utf-8")
        except OSError as error:
            raise _core.C3IOError(f"cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise _core.FormatError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        try:
            texts = json.loads(content)
        except json.JSONDecodeError as error:
            raise _core.FormatError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise _core.FormatError(f"{path}: expected a JSON list of strings")
    else:
        texts = [text for _, text in line_documents(path)]
    if not texts:
        raise _core.C3ValueError(f"{path}: no texts in it")
    return texts
