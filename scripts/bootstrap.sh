#!/usr/bin/env bash
# Installs what pipepool needs (Debian packages; run as root) and configures and builds it in
# build/. Idempotent: installs only what is missing, rebuilds only what changed.
#   scripts/bootstrap.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."

# clang and libclang-rt-14-dev (libFuzzer's runtime, only recommended by clang, and installs here
# go without recommends): the libFuzzer targets of fuzz/libfuzzer/.
packages=(cmake g++ make libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
          libcli11-dev nlohmann-json3-dev systemtap-sdt-dev bpftrace clang libclang-rt-14-dev
          python3 python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_dir=${PIPEPOOL_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${PIPEPOOL_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
