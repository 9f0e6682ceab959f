#!/usr/bin/env bash
# bench/run.sh: the whole benchmark suite in one command (see bench/README.md).
#
#   bench/run.sh [--quick|--full|--smoke] [--build-dir DIR] [--out DIR]
#                [--no-build] [--no-python] [--no-plots] [--filter REGEX]
#
#   --quick      (default) about a minute: every family, fewer sizes
#   --full       every size and shape, 3 repetitions, Python's unscaled head-of-line durations
#   --smoke      a few seconds; also checks that every benchmark produced a figure or an explicit
#                deadlock mark (the ctest bench_smoke)
#   --build-dir  CMake build directory (default: <repo>/build); configured if new (Release,
#                PIPEPOOL_WERROR=OFF) and the pipepool_bench target built, unless --no-build
#   --out        where results go (default: <build-dir>/bench-results)
#   --filter     only the C++ benchmarks matching REGEX (--benchmark_filter)
#
# Writes to the output directory: machine.txt, mode.json, expected.txt (registered benchmarks),
# pipepool.json + pipepool.txt (Google Benchmark), peers.json + peers.txt (python_peers.py),
# summary.md (report.py) and *.png (plot.py).
#
# PYTHON selects the interpreter (default /usr/bin/python3, which has Debian's matplotlib);
# PIPEPOOL_SOURCE_COMMIT names the commit in machine.txt when the tree is not a git checkout.
#
# Exit status: 0 when everything ran; 1 when a step failed (the summary is still written when
# possible); 2 for bad arguments or a missing plotting library.
set -u -o pipefail

mode=quick
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build_dir="$root/build"
out_dir=""
do_build=1
do_python=1
do_plots=1
filter=""

usage() { sed -n '2,/^set /{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --full) mode=full ;;
    --smoke) mode=smoke ;;
    --build-dir) build_dir=$2; shift ;;
    --out) out_dir=$2; shift ;;
    --no-build) do_build=0 ;;
    --no-python) do_python=0 ;;
    --no-plots) do_plots=0 ;;
    --filter) filter=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ -n "$out_dir" ] || out_dir="$build_dir/bench-results"

# Debian's python3 has python3-matplotlib; a pyenv or venv python3 earlier in PATH may not.
if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

case "$mode" in
  smoke) time_limit=240 ;;
  quick) time_limit=900 ;;
  full) time_limit=5400 ;;
esac

say() { echo "run.sh: $*" >&2; }
failures=()

if [ "$do_build" = 1 ]; then
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    # Release for measuring. Warnings stay warnings here: enforcing them is CI's job, and a
    # compiler's false positive elsewhere in the tree must not stop a measurement.
    say "configuring $build_dir (Release)"
    cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DPIPEPOOL_WERROR=OFF \
      >/dev/null || exit 1
  fi
  say "building pipepool_bench"
  cmake --build "$build_dir" --target pipepool_bench imap_memory whole_job -j "$(nproc)" >/dev/null || {
    say "build failed (run: cmake --build $build_dir --target pipepool_bench)"
    exit 1
  }
fi
bin="$build_dir/bench/pipepool_bench"
if [ ! -x "$bin" ]; then
  say "no benchmark binary at $bin (build it, or drop --no-build)"
  exit 1
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt" 2>/dev/null)
case "$build_type" in
  Release|RelWithDebInfo) ;;
  *) say "warning: $build_dir is a '${build_type:-unset}' build: numbers mean little" ;;
esac

mkdir -p "$out_dir" || exit 1
{
  echo "date:           $(date -Iseconds)"
  echo "nproc:          $(nproc)"
  echo "cpu:            $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "kernel:         $(uname -sr) $(uname -m)"
  echo "memory:         $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "pipe-max-size:  $(cat /proc/sys/fs/pipe-max-size 2>/dev/null) bytes"
  echo "load average:   $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "compiler:       $(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt" 2>/dev/null) ($build_type)"
  echo "python:         $("$PYTHON" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)"
  if [ -n "${PIPEPOOL_SOURCE_COMMIT:-}" ]; then  # a run from an exported tree (git archive)
    echo "commit:         $PIPEPOOL_SOURCE_COMMIT"
  elif git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    echo "commit:         $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- || echo ' (with uncommitted changes)')"
  else
    echo "commit:         unknown (not a git checkout)"
  fi
} >"$out_dir/machine.txt"

"$bin" --pipepool_mode="$mode" --pipepool_describe_mode >"$out_dir/mode.json" || exit 1
list_args=(--pipepool_mode="$mode" --benchmark_list_tests)
[ -n "$filter" ] && list_args+=(--benchmark_filter="$filter")
"$bin" "${list_args[@]}" >"$out_dir/expected.txt" || exit 1

say "running $(wc -l <"$out_dir/expected.txt") C++ benchmarks ($mode) -> $out_dir/pipepool.json"
bench_args=(--pipepool_mode="$mode" --benchmark_out="$out_dir/pipepool.json"
            --benchmark_out_format=json)
[ -n "$filter" ] && bench_args+=(--benchmark_filter="$filter")
timeout --kill-after=10 "$time_limit" "$bin" "${bench_args[@]}" 2>&1 | tee "$out_dir/pipepool.txt"
status=${PIPESTATUS[0]}
if [ "$status" != 0 ]; then
  failures+=("pipepool_bench exited with $status (see $out_dir/pipepool.txt)")
fi

# Peak memory of imap (chunksize 1) over 10 million items: first result, whole input.
if [ -x "$build_dir/bench/imap_memory" ]; then
  imap_items=10000000
  [ "$mode" = smoke ] && imap_items=100000
  say "running imap_memory ($imap_items items) -> $out_dir/imap_memory.txt"
  timeout --kill-after=10 "$time_limit" "$build_dir/bench/imap_memory" "$imap_items" 2>&1 \
    | tee "$out_dir/imap_memory.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || failures+=("imap_memory failed (see $out_dir/imap_memory.txt)")
else
  failures+=("no imap_memory binary in $build_dir/bench")
fi

# Whole jobs, each a process in a memory cgroup of its own: wall time and peak memory (issue 11).
jobs_args=()
if [ -x "$build_dir/bench/whole_job" ]; then
  job_rounds=1 job_divisor=1
  [ "$mode" = smoke ] && job_divisor=64
  [ "$mode" = full ] && job_rounds=3
  whole_args=(--binary "$build_dir/bench/whole_job" --out "$out_dir/jobs.json"
              --rounds "$job_rounds" --divisor "$job_divisor")
  [ "$do_python" = 1 ] || whole_args+=(--no-python)
  say "running the whole jobs ($job_rounds round(s), sizes / $job_divisor) -> $out_dir/jobs.json"
  timeout --kill-after=10 "$time_limit" "$PYTHON" "$here/whole_jobs.py" "${whole_args[@]}" 2>&1 \
    | tee "$out_dir/jobs.txt"
  if [ "${PIPESTATUS[0]}" = 0 ]; then
    jobs_args=(--jobs "$out_dir/jobs.json")
  else
    failures+=("whole_jobs.py failed (see $out_dir/jobs.txt)")
  fi
else
  failures+=("no whole_job binary in $build_dir/bench")
fi

results=("$out_dir/pipepool.json")
if [ "$do_python" = 1 ]; then
  say "running the Python peers -> $out_dir/peers.json"
  # A B A B: each peer measurement right after pipepool's own case of the same workload.
  rounds=2
  [ "$mode" = smoke ] && rounds=1
  [ "$mode" = full ] && rounds=3
  timeout --kill-after=10 "$time_limit" "$PYTHON" "$here/python_peers.py" \
    --mode-file "$out_dir/mode.json" --out "$out_dir/peers.json" \
    --interleave "$bin" --rounds "$rounds" \
    --compare "$out_dir/pipepool.json" 2>&1 | tee "$out_dir/peers.txt"
  if [ "${PIPESTATUS[0]}" = 0 ]; then
    results+=("$out_dir/peers.json")
  else
    failures+=("python_peers.py failed (see $out_dir/peers.txt)")
  fi
fi

if [ -s "$out_dir/pipepool.json" ]; then
  report_args=(--results "${results[@]}" --machine "$out_dir/machine.txt"
               --out "$out_dir/summary.md" "${jobs_args[@]}")
  if [ "$mode" = smoke ]; then
    report_args+=(--check "$out_dir/expected.txt")
    [ "$do_python" = 1 ] && report_args+=(--require-peers)
  fi
  "$PYTHON" "$here/report.py" "${report_args[@]}" || failures+=("report.py failed or its check failed")
else
  failures+=("no benchmark results to report")
fi

plot_status=0
if [ "$do_plots" = 1 ] && [ -s "$out_dir/pipepool.json" ]; then
  "$PYTHON" "$here/plot.py" --results "${results[@]}" --out-dir "$out_dir"
  plot_status=$?
  [ "$plot_status" = 0 ] || failures+=("plot.py failed (see the message above; --no-plots skips plots)")
fi

say "results in $out_dir (summary.md, *.png, *.json)"
if [ ${#failures[@]} -gt 0 ]; then
  for failure in "${failures[@]}"; do say "FAILED: $failure"; done
  if [ ${#failures[@]} = 1 ] && [ "$plot_status" = 2 ]; then exit 2; fi
  exit 1
fi
say "done"
