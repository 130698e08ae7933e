"""The builds of c3._core per instruction-set level: which one `import c3` loads, what each contains, and the
errors for a level that the CPU lacks. Tests that need the per-level builds (a wheel, or a build folder made
with C3_ISA_LEVELS) skip where only one module for this machine is installed; scripts/test.sh runs them against
the wheel."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import c3
from c3 import _loader

BUILDS = _loader.find_builds(c3.__path__)
CPU_LEVELS = _loader.supported_levels(_loader.cpu_flags())

# The compiler's macro for each feature, named as /proc/cpuinfo names it.
MACRO_FLAGS = {"__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16": "cx16", "__LAHF_SAHF__": "lahf_lm", "__POPCNT__": "popcnt",
               "__SSE3__": "pni", "__SSE4_1__": "sse4_1", "__SSE4_2__": "sse4_2", "__SSSE3__": "ssse3",
               "__LZCNT__": "abm", "__AVX__": "avx", "__AVX2__": "avx2", "__BMI__": "bmi1", "__BMI2__": "bmi2",
               "__F16C__": "f16c", "__FMA__": "fma", "__MOVBE__": "movbe", "__XSAVE__": "xsave",
               "__AVX512BW__": "avx512bw", "__AVX512CD__": "avx512cd", "__AVX512DQ__": "avx512dq",
               "__AVX512F__": "avx512f", "__AVX512VL__": "avx512vl", "__AVX512BF16__": "avx512_bf16"}
# The -march options python/CMakeLists.txt gives each level.
LEVEL_OPTIONS = {"generic": ["-march=x86-64-v2"], "avx2": ["-march=x86-64-v3"],
                 "avx512": ["-march=x86-64-v4", "-mavx512bf16"]}


def run_python(code, **environment):
    """Runs code in a fresh interpreter with this environment plus the given variables (None removes one)."""
    env = dict(os.environ)
    for name, value in environment.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def loaded_info(**environment):
    result = run_python("import c3, json; print(json.dumps(c3.build_info()))", **environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- the choice, as a function of the builds present, the CPU's flags and C3_ISA


def flags_of(level, without=()):
    return set(_loader.LEVELS[level]) - set(without)


def test_best_supported_level_is_chosen():
    every = {"generic", "avx2", "avx512"}
    assert _loader.choose(every, flags_of("avx512"), None) == "avx512"
    assert _loader.choose(every, flags_of("avx512", without=["avx512_bf16"]), None) == "avx2"
    assert _loader.choose(every, flags_of("avx2"), None) == "avx2"
    assert _loader.choose(every, flags_of("avx2", without=["fma"]), None) == "generic"
    assert _loader.choose({"generic", "avx2"}, flags_of("avx512"), None) == "avx2"
    # A module built for its machine (source install, development build) is loaded as it is.
    assert _loader.choose({"native"}, set(), None) == "native"


def test_forced_level_must_be_known_supported_and_installed():
    every = {"generic", "avx2", "avx512"}
    assert _loader.choose(every, flags_of("avx512"), "generic") == "generic"
    with pytest.raises(ImportError, match=r"C3_ISA='sse9' is not a level"):
        _loader.choose(every, flags_of("avx512"), "sse9")
    with pytest.raises(ImportError, match=r"C3_ISA=avx512: this CPU lacks avx512_bf16, .* supports avx2, generic"):
        _loader.choose(every, flags_of("avx512", without=["avx512_bf16"]), "avx512")
    with pytest.raises(ImportError, match=r"C3_ISA=avx2: this installation of c3 has no avx2 build \(it has native\)"):
        _loader.choose({"native"}, flags_of("avx512"), "avx2")
    with pytest.raises(ImportError, match=r"cannot run any build .* even generic needs sse4_2"):
        _loader.choose(every, flags_of("generic", without=["sse4_2"]), None)
    with pytest.raises(ImportError, match="c3._core not found"):
        _loader.choose(set(), flags_of("avx512"), None)


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
@pytest.mark.parametrize("level", sorted(LEVEL_OPTIONS))
def test_level_flags_are_what_the_compiler_may_use(level):
    # Oracle: the feature macros the compiler defines for the level's -march options. A flag missing from the
    # level's list would let the loader choose a build whose instructions the CPU lacks.
    result = subprocess.run(["c++", *LEVEL_OPTIONS[level], "-dM", "-E", "-x", "c++", "-"], input="",
                            capture_output=True, text=True, check=True)
    defined = set(re.findall(r"#define (\w+) 1$", result.stdout, flags=re.MULTILINE))
    assert {flag for macro, flag in MACRO_FLAGS.items() if macro in defined} == set(_loader.LEVELS[level])


def test_unsupported_level_is_an_import_error_not_a_crash():
    # An AVX2 machine, simulated: avx512 forced must fail at import, before any build is loaded.
    result = run_python("import c3", C3_ISA="avx512", C3_TEST_CPU_FLAGS=" ".join(_loader.LEVELS["avx2"]))
    assert result.returncode == 1, (result.returncode, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: C3_ISA=avx512: this CPU lacks avx512bw, avx512cd"), last
    result = run_python("import c3", C3_ISA="fastest")
    assert result.returncode == 1 and "ImportError: C3_ISA='fastest' is not a level" in result.stderr


# -- the builds installed here


def test_build_info_describes_the_loaded_build():
    info = c3.build_info()
    assert info["module"] == BUILDS[info["level"]]
    assert info["eigen"].count(".") == 2 and info["compiler"]
    if info["level"] != "native":
        assert info["level"] == (os.environ.get("C3_ISA") or CPU_LEVELS[0])
    assert set(info["cpu_levels"]) == set(CPU_LEVELS)


@pytest.mark.parametrize("level", ["generic", "avx2", "avx512"])
def test_each_level_is_compiled_for_its_instruction_set(level):
    if level not in BUILDS or level not in CPU_LEVELS:
        pytest.skip(f"no {level} build here, or this CPU lacks it")
    info = loaded_info(C3_ISA=level)
    assert info["level"] == level and info["selected_by"] == "C3_ISA"
    assert info["module"] == BUILDS[level]
    assert " ".join(LEVEL_OPTIONS[level]) in info["compile_flags"]
    sets = set(info["instruction_sets"])
    assert ("AVX" in sets) == (level != "generic")
    assert ("AVX2" in sets and "FMA" in sets) == (level != "generic")
    assert ("AVX512F" in sets and "AVX512BF16" in sets) == (level == "avx512")
    assert any("AVX512-BF16" in kernel for kernel in info["kernels"]) == (level == "avx512")


def test_best_level_is_loaded_for_a_simulated_cpu():
    if not {"generic", "avx2", "avx512"} <= set(BUILDS) or "native" in BUILDS or CPU_LEVELS[:1] != ["avx512"]:
        pytest.skip("needs the three level builds and an AVX-512 CPU")
    # An AVX-512 CPU without avx512_bf16 (Skylake-X), simulated: avx2 is the best it runs.
    flags = " ".join(_loader.LEVELS["avx512"]).replace("avx512_bf16", "")
    assert loaded_info(C3_ISA=None, C3_TEST_CPU_FLAGS=flags)["level"] == "avx2"
    assert loaded_info(C3_ISA=None, C3_TEST_CPU_FLAGS=" ".join(_loader.LEVELS["generic"]))["level"] == "generic"


def disassembly(path):
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_generic_level_has_no_avx_instructions():
    if "generic" not in BUILDS or "avx512" not in BUILDS:
        pytest.skip("no generic and avx512 builds here")
    vex = re.compile(r"\tv[a-z0-9]+\s.*%[xyz]mm|%[yz]mm")  # VEX/EVEX-encoded instructions: AVX and later
    generic = disassembly(BUILDS["generic"])
    assert len(generic) > 1_000_000
    assert not vex.search(generic), vex.search(generic).group(0)
    # The same search finds the AVX-512 build's zmm registers: it can fail.
    assert "%zmm" in disassembly(BUILDS["avx512"])


def test_version_prints_the_build_information():
    result = subprocess.run([sys.executable, "-m", "c3.cli", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    info = c3.build_info()
    assert lines[0] == f"c3 {c3.__version__}"
    assert lines[1].startswith(f"build:            {info['level']} (")
    assert f"module:           {info['module']}" in lines
    assert any(line.startswith("Eigen:            " + info["eigen"]) for line in lines)
    assert any(line.startswith(f"caches:           L1d {info['cpu']['l1d_bytes'] >> 10} KiB") for line in lines)


def sysfs_caches():
    """(L1d, L2, L3) bytes of cpu0 as Linux's sysfs lists them, read here independently of c3; None if absent."""
    sizes = {}
    root = "/sys/devices/system/cpu/cpu0/cache"
    for index in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        def read(field):
            with open(os.path.join(root, index, field)) as handle:
                return handle.read().strip()
        try:
            level, kind, size = int(read("level")), read("type"), read("size")
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        value = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        if (level, kind) == (1, "Data") or (level > 1 and kind != "Instruction"):
            sizes[level] = value
    return (sizes[1], sizes[2], sizes.get(3, sizes[2])) if 1 in sizes and 2 in sizes else None


def test_cpu_info_reports_the_caches_and_vector_width():
    cpu = c3.build_info()["cpu"]
    expected = sysfs_caches()
    if expected is None:
        assert cpu["cache_source"] in ("sysconf", "cpuid", "default")
    else:
        assert cpu["cache_source"] == "sysfs"
        assert (cpu["l1d_bytes"], cpu["l2_bytes"], cpu["l3_bytes"]) == expected
    flags = _loader.cpu_flags()
    assert cpu["vector_bits"] == (512 if "avx512f" in flags else 256 if "avx2" in flags else 128)
    row_bytes = tile_row_bytes(c3.build_info()["instruction_sets"])
    if row_bytes:
        # A tile row of B per depth step (32 floats with AVX-512, 16 with AVX2): the B tile is one L1d, unless
        # half the L2 holds less.
        assert cpu["blocking"]["broadcast_gemm depth, 256 columns"] == max(
            128, min(cpu["l1d_bytes"] // row_bytes, cpu["l2_bytes"] // 2 // 1024) // 16 * 16)
    else:
        assert "broadcast_gemm widest output" not in cpu["blocking"]


def tile_row_bytes(instruction_sets) -> int:
    """Bytes of one row of broadcast_gemm's register tile in a build with these instruction sets (0: no kernel)."""
    return 128 if "AVX512F" in instruction_sets else 64 if {"AVX2", "FMA"} <= set(instruction_sets) else 0


def test_cache_sizes_from_the_environment_change_the_blocking():
    info = loaded_info(C3_CACHE_SIZES="l1d=64K,l2=4M")
    cpu = info["cpu"]
    assert (cpu["l1d_bytes"], cpu["l2_bytes"]) == (64 << 10, 4 << 20)
    assert cpu["cache_source"].endswith("+C3_CACHE_SIZES")
    row_bytes = tile_row_bytes(info["instruction_sets"])
    if row_bytes:
        # 64 KiB / 128 B with AVX-512; 64 KiB / 64 B with AVX2, within half the L2 over 256 columns (2 MiB / 1 KiB)
        assert cpu["blocking"]["broadcast_gemm depth, 256 columns"] == (512 if row_bytes == 128 else 1024)
        assert cpu["blocking"]["broadcast_gemm widest output"] == 4096      # 2 MiB / (128 x 4 B)
    result = run_python("import c3; c3.build_info()", C3_CACHE_SIZES="l1d=lots")
    assert result.returncode == 1 and "C3_CACHE_SIZES" in result.stderr and "l1d=lots" in result.stderr


def test_intrinsics_headers_are_included_only_behind_feature_macros():
    # aarch64 and the generic level compile the portable paths: <immintrin.h> (and so every x86 intrinsic) only
    # behind an x86 feature macro. The generic build (-march=x86-64-v2) checks the intrinsics' own guards.
    root = os.path.join(os.path.dirname(__file__), "..", "..", "include", "c3")
    includes = 0
    for directory, _, files in os.walk(root):
        for name in files:
            lines = open(os.path.join(directory, name), encoding="utf-8").read().splitlines()
            for number, line in enumerate(lines):
                if re.match(r"\s*#\s*include\s*<(imm|x86|[a-z]mm)intrin\.h>", line):
                    includes += 1
                    assert re.match(r"#if defined\(__AVX", lines[number - 1]), f"{name}:{number + 1}: {line}"
    # core/simd.hpp is the one place that includes them (so that the check cannot pass by finding nothing).
    assert includes >= 1
