#!/usr/bin/env bash
# Builds one Google Benchmark source against two git revisions of c3 and runs the two binaries back to back,
# interleaved, to show whether a change slowed the hot paths. Prints, per benchmark, the median wall and CPU time
# per iteration of each revision and the ratio b / a (above 1: b is slower).
#
#   benchmarks/before_after.sh [--runs N] [--source FILE] [--filter REGEX] [--work DIR] [--dry-run]
#                              <rev-a> <rev-b> [-- ARGS]
#
# The benchmark source is taken from the working tree (default benchmarks/bench_model.cpp), so both revisions run
# the same benchmark code; it must compile against both. Each revision is exported with `git archive` into a
# temporary directory (or DIR/a and DIR/b, kept afterwards: a second call with the same revisions reuses the builds)
# and built there (Release, -march=native); nothing in the working tree changes. The default
# filter selects the hot paths: decode and prefill in float and bf16, and one training step. ARGS go to the
# benchmark binary. --dry-run prints the commands instead of running them. The thread count is the binaries'
# default (OMP_NUM_THREADS); on a machine shared with other jobs, OMP_NUM_THREADS=1 makes CPU time the steadier
# figure.
set -euo pipefail

runs=5
source_file=benchmarks/bench_model.cpp
filter='^(BM_Decode|BM_DecodeBf16|BM_Forward/256/8|BM_ForwardBf16/256/8|BM_TrainStep/128/4/2)$'
dry_run=0
work=
revisions=()
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --source) source_file="$2"; shift 2 ;;
        --filter) filter="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) revisions+=("$1"); shift ;;
    esac
done
if [[ ${#revisions[@]} -ne 2 ]]; then
    echo "usage: $0 [--runs N] [--source FILE] [--filter REGEX] [--work DIR] [--dry-run] <rev-a> <rev-b> [-- ARGS]" >&2
    exit 2
fi
repository=$(git rev-parse --show-toplevel)
cd "$repository"
[[ -f "$source_file" ]] || { echo "no such benchmark source: $source_file" >&2; exit 2; }
for revision in "${revisions[@]}"; do
    git rev-parse --verify --quiet "$revision^{commit}" >/dev/null || { echo "not a revision: $revision" >&2; exit 2; }
done
target=$(basename "$source_file" .cpp)
if [[ -z "$work" ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/c3-before-after.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
work=$(realpath -m "$work")

run() {  # prints the command; runs it unless --dry-run
    echo "+ $*" >&2
    if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

binaries=()
for side in a b; do
    revision=${revisions[$([[ $side == a ]] && echo 0 || echo 1)]}
    tree="$work/$side"
    commit=$(git rev-parse "$revision^{commit}")
    if [[ $dry_run -eq 1 ]]; then
        echo "+ git archive $commit | tar -x -C $tree" >&2
    elif [[ "$(cat "$tree/.c3-revision" 2>/dev/null)" != "$commit" ]]; then
        # A kept tree of another revision is replaced; one of the same revision is reused as it is.
        rm -rf "$tree" && mkdir -p "$tree"
        git archive "$commit" | tar -x -m -C "$tree"
        echo "$commit" > "$tree/.c3-revision"
    fi
    if ! cmp -s "$source_file" "$tree/benchmarks/$target.cpp"; then
        run cp "$source_file" "$tree/benchmarks/$target.cpp"
    fi
    run cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DC3_BUILD_BENCHMARKS=ON \
        -DC3_BUILD_TESTS=OFF -DC3_INSTALL=OFF
    run cmake --build "$tree/build" --target "$target"
    binaries+=("$tree/build/benchmarks/$target")
done

# Interleaved: a, b, a, b, ... so that a slow spell of a shared machine hits both.
for ((index = 0; index < runs; ++index)); do
    for side in 0 1; do
        run "${binaries[$side]}" --benchmark_filter="$filter" --benchmark_format=json \
            --benchmark_out="$work/run-$side-$index.json" --benchmark_out_format=json "${extra[@]}" >/dev/null
    done
done
[[ $dry_run -eq 1 ]] && exit 0

python3 - "$work" "$runs" "${revisions[0]}" "${revisions[1]}" <<'EOF'
import json
import statistics
import sys

work, runs, name_a, name_b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
times = {}  # benchmark -> side -> ([wall seconds], [CPU seconds]) per iteration
for side in (0, 1):
    for index in range(runs):
        with open(f"{work}/run-{side}-{index}.json") as handle:
            for entry in json.load(handle)["benchmarks"]:
                if entry.get("run_type", "iteration") != "iteration":
                    continue
                unit = scale[entry.get("time_unit", "ns")]
                wall, cpu = times.setdefault(entry["name"], ([[], []], [[], []]))[side]
                wall.append(entry["real_time"] * unit)
                cpu.append(entry["cpu_time"] * unit)
print(f"a = {name_a}, b = {name_b}; median of {runs} interleaved runs, seconds per iteration")
print(f"{'benchmark':32s} {'wall a':>10s} {'wall b':>10s} {'b/a':>6s} {'CPU a':>10s} {'CPU b':>10s} {'b/a':>6s}")
for name, sides in times.items():
    wall_a, wall_b = (statistics.median(sides[side][0]) for side in (0, 1))
    cpu_a, cpu_b = (statistics.median(sides[side][1]) for side in (0, 1))
    print(f"{name:32s} {wall_a:10.3e} {wall_b:10.3e} {wall_b / wall_a:6.3f} {cpu_a:10.3e} {cpu_b:10.3e} "
          f"{cpu_b / cpu_a:6.3f}")
EOF
