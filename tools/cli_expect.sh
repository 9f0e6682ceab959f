#!/usr/bin/env bash
# tools/cli_expect.sh: runs a command and checks how it ends, for the ctest tests of `pipepool`.
#   cli_expect.sh STATUS STREAM LINES REGEX -- COMMAND [ARGS...]
# STATUS: the exit status wanted. STREAM: stdout or stderr, the stream REGEX (grep -E) must match.
# LINES: how many lines that stream must have ("any" for no check). A usage error is 2 stderr 1.
set -u
want_status=$1 stream=$2 want_lines=$3 regex=$4
shift 4
[[ $1 == -- ]] && shift
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" >"$out" 2>"$err"
status=$?
file=$out
[[ $stream == stderr ]] && file=$err
lines=$(wc -l <"$file")
fail() {
  echo "FAIL: $*"
  echo "--- command: $*" >/dev/null
  echo "--- stdout:"; head -c 3000 "$out"
  echo "--- stderr:"; head -c 3000 "$err"
  exit 1
}
[[ $status == "$want_status" ]] || fail "exit status $status, wanted $want_status"
[[ $want_lines == any || $lines == "$want_lines" ]] || fail "$stream has $lines lines, wanted $want_lines"
grep -Eq -- "$regex" "$file" || fail "$stream does not match /$regex/"
echo "ok: exit $status, $stream: $(head -n 1 "$file")"
