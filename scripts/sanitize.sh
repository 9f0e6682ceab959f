#!/usr/bin/env bash
# The suite again under sanitizers (issue 6): everything under AddressSanitizer with
# UndefinedBehaviorSanitizer, and the pool's threaded parts under ThreadSanitizer. Separate build
# trees; the 1 GiB payload tests are left to the plain run (PIPEPOOL_SKIP_HUGE=1), where they
# fit the memory and time budget.
#   scripts/sanitize.sh [asan|tsan|all]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
export PIPEPOOL_SKIP_HUGE=1

if [[ $which == asan || $which == all ]]; then
  PIPEPOOL_BUILD_DIR=build-asan scripts/bootstrap.sh -DPIPEPOOL_SANITIZE=address,undefined \
    -DPIPEPOOL_BUILD_BENCH=OFF
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -E 'install_consumer'
fi
if [[ $which == tsan || $which == all ]]; then
  PIPEPOOL_BUILD_DIR=build-tsan scripts/bootstrap.sh -DPIPEPOOL_SANITIZE=thread \
    -DPIPEPOOL_BUILD_BENCH=OFF
  # The threaded parts: the pool's I/O thread against user threads, callbacks, terminate.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -j"$(nproc)" \
    -R '^(PoolApi|PoolUsability|Strategies|Schedulers|KnownFailures|CustomScheduler|Faults|Leaks)'
fi
