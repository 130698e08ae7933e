"""Chooses and loads c3._core, the best build of the C++ module that this CPU can run.

A wheel holds c3._core built at three x86-64 levels, one shared object each: _core_generic (x86-64-v2),
_core_avx2 (x86-64-v3: AVX2, FMA) and _core_avx512 (x86-64-v4 with AVX512-BF16). A source install or a
development build holds one module built for its own machine: _core. Every file defines the module c3._core, and
this loader imports the chosen one under that name, so nothing else needs to know which.

C3_ISA=generic|avx2|avx512 forces a level. A level that the CPU lacks is an ImportError before anything is
loaded, never an illegal instruction. C3_TEST_CPU_FLAGS (space-separated /proc/cpuinfo flags) replaces the
detected flags; it exists for the tests, which simulate CPUs that this machine is not.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import sys

# The /proc/cpuinfo flags each level's code may use: the x86-64 psABI levels v2, v3 and v4, and avx512_bf16.
_V2 = ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3")
_V3 = _V2 + ("abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave")
_V4 = _V3 + ("avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl")
LEVELS = {"generic": _V2, "avx2": _V3, "avx512": _V4 + ("avx512_bf16",)}
BEST_FIRST = ("avx512", "avx2", "generic")

# NumPy's names for the same features, where /proc/cpuinfo is not there to read (NumPy runs cpuid itself).
_NUMPY_NAMES = {"CX16": "cx16", "LAHF": "lahf_lm", "POPCNT": "popcnt", "SSE3": "pni", "SSE41": "sse4_1",
                "SSE42": "sse4_2", "SSSE3": "ssse3", "LZCNT": "abm", "AVX": "avx", "AVX2": "avx2", "BMI": "bmi1",
                "BMI2": "bmi2", "F16C": "f16c", "FMA3": "fma", "MOVBE": "movbe", "AVX512BW": "avx512bw",
                "AVX512CD": "avx512cd", "AVX512DQ": "avx512dq", "AVX512F": "avx512f", "AVX512VL": "avx512vl",
                "AVX512BF16": "avx512_bf16"}

# What load() chose, for build_info().
_chosen: dict = {}


def cpu_flags() -> set[str]:
    """The CPU's feature flags, named as in /proc/cpuinfo."""
    override = os.environ.get("C3_TEST_CPU_FLAGS")
    if override is not None:
        return set(override.split())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return set()
    flags = {flag for name, flag in _NUMPY_NAMES.items() if features.get(name)}
    if "avx" in flags:
        flags.add("xsave")  # NumPy reports AVX only where the operating system saves its registers (XSAVE)
    return flags


def supported_levels(flags: set[str]) -> list[str]:
    """The levels whose instructions the CPU has, best first."""
    return [level for level in BEST_FIRST if set(LEVELS[level]) <= flags]


def choose(available: set[str], flags: set[str], requested: str | None) -> str:
    """The build to load: a level name, or "native" for a module built for its machine (a source install).
    available: the builds present ("native" and/or level names); requested: C3_ISA or None."""
    supported = supported_levels(flags)
    levels_here = [level for level in BEST_FIRST if level in available]
    if requested:
        if requested not in LEVELS:
            raise ImportError(f"C3_ISA={requested!r} is not a level of c3: use generic, avx2 or avx512 "
                              f"(or unset C3_ISA for the best this CPU supports)")
        missing = [flag for flag in LEVELS[requested] if flag not in flags]
        if missing:
            raise ImportError(f"C3_ISA={requested}: this CPU lacks {', '.join(missing)}, which the {requested} build "
                              f"of c3 needs; it supports {', '.join(supported) or 'no level'} "
                              f"(unset C3_ISA to load the best it supports)")
        if requested not in available:
            raise ImportError(f"C3_ISA={requested}: this installation of c3 has no {requested} build "
                              f"(it has {', '.join(sorted(available)) or 'none'}); wheels hold one per level, a "
                              f"source install one for its machine (native)")
        return requested
    if "native" in available:
        return "native"
    for level in levels_here:
        if level in supported:
            return level
    if not levels_here:
        raise ImportError("c3._core not found: install c3, or point C3_CORE_DIR at a build folder holding _core*.so")
    lowest = levels_here[-1]
    missing = [flag for flag in LEVELS[lowest] if flag not in flags]
    raise ImportError(f"c3: this CPU cannot run any build of c3 here ({', '.join(levels_here)}): even {lowest} needs "
                      f"{', '.join(missing)}; build c3 from source for this machine (pip install . in its source tree)")


def find_builds(directories) -> dict[str, str]:
    """{build: file} for the builds in the package's directories ("native" for _core, else the level), first
    directory first."""
    names = {"_core": "native", **{f"_core_{level}": level for level in LEVELS}}
    builds: dict[str, str] = {}
    for directory in directories:
        for stem, build in names.items():
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(directory, stem + suffix)
                if build not in builds and os.path.isfile(path):
                    builds[build] = path
    return builds


def load(package: str, directories):
    """Imports the chosen build as <package>._core and returns it.

    Where that fails (a C3_ISA level this CPU or installation lacks, no build at all, a damaged file) while the c3
    command starts, the command prints one line, `c3: error: <why>`, and exits with status 2 as for its other
    errors: the package's import runs before c3.cli.main can catch anything (--debug or C3_DEBUG=1: the
    traceback). Any other `import c3` raises the ImportError."""
    try:
        return _load(package, directories)
    except ImportError as error:
        exit_if_command(package, error)
        raise


def exit_if_command(package: str, error: ImportError) -> None:
    """While the c3 command starts (and not --debug): prints `c3: error: <why>` and exits with status 2."""
    if not _command_starting(package) or _debugging():
        return
    print(f"c3: error: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def _command_starting(package: str) -> bool:
    """Whether this import of the package is the c3 command's: the `c3` console script, or `python -m c3.cli`
    (read from the interpreter's own command line, since runpy imports the package before it sets sys.argv)."""
    if os.path.basename(sys.argv[0] if sys.argv else "") == package:
        return True
    command_line = list(getattr(sys, "orig_argv", []))  # Python 3.10 and later
    return any(command_line[i:i + 2] == ["-m", f"{package}.cli"] for i in range(len(command_line)))


def _debugging() -> bool:
    return "--debug" in sys.argv[1:] or os.environ.get("C3_DEBUG", "") not in ("", "0")


def _load(package: str, directories):
    flags = cpu_flags()
    requested = os.environ.get("C3_ISA") or None
    builds = find_builds(directories)
    if not builds:  # an editable install's import hook knows where its build folder put _core
        spec = importlib.util.find_spec(f"{package}._core")
        if spec is not None and spec.origin:
            builds["native"] = spec.origin
    build = choose(set(builds), flags, requested)
    name = f"{package}._core"
    # Each file's init function is PyInit__core, which the module name's last part selects.
    spec = importlib.util.spec_from_file_location(name, builds[build])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _chosen.update(level=build, module=builds[build], available=[b for b in ("native", *BEST_FIRST) if b in builds],
                   requested=requested, cpu_flags=sorted(flags & set(LEVELS["avx512"])),
                   cpu_levels=supported_levels(flags))
    return module


def build_info(core) -> dict:
    """The loaded build and the CPU: see c3.build_info."""
    compiled = core.build_info()
    selected_by = ("C3_ISA" if _chosen["requested"] else "built for its machine" if _chosen["level"] == "native"
                   else "the best level this CPU runs")
    return {"level": _chosen["level"], "selected_by": selected_by,
            "module": _chosen["module"], "available": _chosen["available"], "cpu_levels": _chosen["cpu_levels"],
            "cpu_flags": _chosen["cpu_flags"], **{key: value for key, value in compiled.items() if key != "level"},
            "cpu": core.cpu_info(), "onednn": core.onednn_in_use() or None}


def format_build_info(version: str, info: dict) -> str:
    lines = [f"c3 {version}",
             f"build:            {info['level']} ({info['selected_by']}; builds installed: {', '.join(info['available'])})",
             f"module:           {info['module']}",
             f"CPU levels:       {', '.join(info['cpu_levels']) or 'none'} (flags: {' '.join(info['cpu_flags'])})",
             f"compiler:         {info['compiler']}",
             f"compile flags:    {info['compile_flags'] or '(none)'}",
             f"instruction sets: {', '.join(info['instruction_sets']) or '(baseline)'}",
             f"kernels:          {', '.join(info['kernels']) or 'portable (Eigen) only'}",
             f"OpenMP:           {info['openmp'] or 'off (one thread)'}",
             f"Eigen:            {info['eigen']} ({info['eigen_simd']})"]
    lines.append(f"float32 GEMM:     {info['onednn'] or 'c3 (broadcast_gemm and Eigen)'}")
    cpu = info["cpu"]
    lines.append(f"caches:           L1d {cpu['l1d_bytes'] >> 10} KiB, L2 {cpu['l2_bytes'] >> 10} KiB, "
                 f"L3 {cpu['l3_bytes'] >> 10} KiB ({cpu['cache_source']}); {cpu['vector_bits']}-bit vectors")
    if cpu["blocking"]:
        lines.append("blocking:         " + ", ".join(f"{name} {size}" for name, size in cpu["blocking"].items()))
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """--version: prints the version and the build information, line by line, then exits."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import c3

        print(format_build_info(c3.__version__, c3.build_info()))
        parser.exit()
