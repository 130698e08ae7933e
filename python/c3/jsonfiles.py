"""JSON files that c3 writes and reads back: one converter to strict JSON, one atomic writer, one checked reader.

Every result file (the CLI's outputs, a sweep's records, a cascade's settings) goes through these, so a NaN never
becomes invalid JSON, an interrupted write never leaves half a file, and a damaged file is a typed error that
names it, never a traceback or a silent default.
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, Optional

import numpy as np

from . import _core


def jsonable(value):
    """NumPy arrays and scalars as lists and numbers, tuples as lists, keys as str; NaN and infinities as null, so
    that the output is strict JSON."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str, value, indent: Optional[int] = 1) -> None:
    """jsonable(value) as UTF-8 JSON through c3's one atomic writer: the file appears whole or not at all, a device
    or FIFO (/dev/null, /dev/stdout) is written into, and a symbolic link is kept while the file it names is
    replaced."""
    _core.write_file_atomically(os.fspath(path), json.dumps(jsonable(value), ensure_ascii=False, indent=indent) + "\n")


def read_json(path: str, check: Optional[Callable[[str, object], None]] = None):
    """The JSON value of a file, checked: unreadable bytes are a C3IOError; invalid UTF-8 or JSON, or a value that
    check(path, value) refuses (it raises), a FormatError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise _core.C3IOError(f"cannot read '{path}': {error.strerror or error}") from None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _core.FormatError(f"'{path}' is not UTF-8 text (byte {error.start}: {error.reason})") from None
    except ValueError as error:
        raise _core.FormatError(f"'{path}' is not valid JSON: {error}") from None
    if check is not None:
        check(path, value)
    return value


def must_be_object(path: str, value) -> None:
    """read_json's check for a file that must hold a JSON object."""
    if not isinstance(value, dict):
        raise _core.FormatError(f"'{path}' must hold a JSON object, got {type(value).__name__}")


def read_json_object(path: str) -> dict:
    """A JSON file that must hold an object."""
    return read_json(path, must_be_object)
