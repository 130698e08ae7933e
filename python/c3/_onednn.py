"""oneDNN's float32 GEMM behind c3's products, loaded at import where PyPI's onednn-cpu-gomp is installed.

`pip install c3[onednn]` installs it (Linux x86-64). c3 never links against it: c3._core opens the library by path
(include/c3/ops/onednn.hpp). C3_ONEDNN=0 keeps c3's own kernels; C3_ONEDNN=<path> loads that library instead, and a
path that does not load is an ImportError, as a bad C3_ISA is.
"""
from __future__ import annotations

import os
import warnings

# The distribution and the file it installs: a CPU build on GNU OpenMP, so its threads are c3's.
DISTRIBUTION = "onednn-cpu-gomp"
LIBRARY = "libdnnl.so.3"


def installed_library() -> str | None:
    """The path of libdnnl from the installed onednn-cpu-gomp distribution, or None."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name == LIBRARY:
            path = os.path.abspath(str(distribution.locate_file(file)))
            if os.path.isfile(path):
                return path
    return None


# The library loaded last (at import or by load), which load() without a path takes again after an unload.
_loaded: str | None = None


def load(core, path: str | None = None) -> str:
    """Loads libdnnl (path, else the one loaded last, else the installed distribution's) into core; returns its
    description."""
    global _loaded
    path = path or _loaded or installed_library()
    if path is None:
        raise core.C3IOError(f"oneDNN is not installed: pip install {DISTRIBUTION} (or c3[onednn]), or pass the "
                             f"path of a {LIBRARY} built on GNU OpenMP")
    description = core.load_onednn(path)
    _loaded = path
    return description


def load_at_import(core) -> None:
    """What `import c3` does: C3_ONEDNN=0 nothing, C3_ONEDNN=<path> that library, else the installed one if any."""
    setting = os.environ.get("C3_ONEDNN", "")
    if setting == "0":
        return
    if setting:
        try:
            load(core, setting)
        except (core.C3IOError, core.C3ValueError) as error:
            raise ImportError(f"C3_ONEDNN={setting}: {error} (C3_ONEDNN=0 keeps c3's own kernels)") from None
        return
    path = installed_library()
    if path is None:
        return
    try:
        load(core, path)
    except (core.C3IOError, core.C3ValueError) as error:  # a damaged install costs speed, not the import
        warnings.warn(f"c3: oneDNN not used, c3's own kernels run every product: {error}", RuntimeWarning,
                      stacklevel=3)
