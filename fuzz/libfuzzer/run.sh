#!/bin/sh
# The libFuzzer targets, for ctest and by hand.
#   run.sh build DIR              configure and build them with clang++ in DIR
#   run.sh run DIR TARGET [ARGS]  run DIR/TARGET_fuzzer over the committed corpus plus fresh inputs
#                                 (PIPEPOOL_LIBFUZZER_RUNS, default 20000, at most
#                                 PIPEPOOL_LIBFUZZER_SECONDS, default 10); ARGS go to libFuzzer
# A failure leaves the input that caused it in DIR/artifacts/ and prints its path; rerun it with
# `DIR/TARGET_fuzzer FILE`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
what=$1
dir=$2
case $what in
  build)
    launcher=
    if command -v ccache >/dev/null 2>&1; then launcher=-DCMAKE_CXX_COMPILER_LAUNCHER=ccache; fi
    cmake -S "$here" -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      $launcher >/dev/null
    cmake --build "$dir" -j2
    ;;
  run)
    target=$3
    shift 3
    mkdir -p "$dir/new/$target" "$dir/artifacts"
    # Fresh inputs go to DIR/new/TARGET (listed first); the committed corpus is only read.
    exec "$dir/${target}_fuzzer" -runs="${PIPEPOOL_LIBFUZZER_RUNS:-20000}" \
      -max_total_time="${PIPEPOOL_LIBFUZZER_SECONDS:-10}" -max_len=4096 -timeout=10 \
      -malloc_limit_mb=64 -rss_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix="$dir/artifacts/$target-" "$@" \
      "$dir/new/$target" "$here/../corpus/$target"
    ;;
  *)
    echo "usage: run.sh build DIR | run.sh run DIR TARGET [LIBFUZZER ARGS]" >&2
    exit 2
    ;;
esac
