#!/usr/bin/env bash
# seam_check_rejects_a_violation: check_seam.sh must fail on the planted violation, naming each of
# its four faults. Usage: expect_rejected.sh CHECK_SEAM PLANTED_ARCHIVE PLANTED_SOURCE_DIR
set -uo pipefail
out=$("$1" --archive "$2" --sources "$3")
rc=$?
echo "$out"
[[ $rc == 1 ]] || { echo "FAIL: check_seam.sh exited $rc on a planted violation, expected 1"; exit 1; }
for needle in 'references write$' 'steady_clock::now' 'pipepool::os::read_some' \
              'planted_violation.cpp:[0-9]+:#include "os/io.hpp"' 'planted_violation.cpp:[0-9]+:#include <unistd.h>'; do
  grep -qE "$needle" <<<"$out" || { echo "FAIL: no violation matching /$needle/"; exit 1; }
done
echo "seam check rejected the planted violation, naming each of its faults"
