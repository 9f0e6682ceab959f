#!/usr/bin/env bash
# Installs, builds and runs every test with ctest (README's second command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
ctest --test-dir "${PIPEPOOL_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" "$@"
