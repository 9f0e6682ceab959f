#!/usr/bin/env bash
# ctest: an interrupted `pipepool tiers` leaves no cgroup behind and exits 128 + the signal.
#   tiers_interrupt_test.sh PIPEPOOL SIGNAL
set -u
pipepool=$1 signal=${2:-INT}
if [[ $(id -u) != 0 ]]; then echo "SKIP: needs root to create cgroups"; exit 77; fi
"$pipepool" tiers --workload echo --tiers 128,256 --seconds 5 --quiet >/dev/null 2>/tmp/tiers_interrupt.$$ &
pid=$!
# Wait until its first cgroup exists, so that the signal lands mid-run.
for _ in $(seq 100); do
  [[ -n $(find /sys/fs/cgroup -maxdepth 4 -name "pipepool-tiers-$pid-*" 2>/dev/null) ]] && break
  sleep 0.05
done
if [[ -z $(find /sys/fs/cgroup -maxdepth 4 -name "pipepool-tiers-$pid-*" 2>/dev/null) ]]; then
  wait $pid; status=$?
  if [[ $status == 3 ]]; then echo "SKIP: $(cat /tmp/tiers_interrupt.$$)"; rm -f /tmp/tiers_interrupt.$$; exit 77; fi
  echo "FAIL: no cgroup appeared (exit $status): $(cat /tmp/tiers_interrupt.$$)"; exit 1
fi
sleep 1.5
kill -s "$signal" $pid
wait $pid
status=$?
left=$(find /sys/fs/cgroup -maxdepth 4 -name "pipepool-tiers-$pid-*" 2>/dev/null)
echo "exit $status; stderr: $(cat /tmp/tiers_interrupt.$$)"
rm -f /tmp/tiers_interrupt.$$
if [[ -n $left ]]; then echo "FAIL: cgroups left behind: $left"; exit 1; fi
want=$((128 + $(kill -l "$signal")))
if [[ $status != "$want" ]]; then echo "FAIL: exit $status, wanted $want"; exit 1; fi
echo "ok: no cgroup left after SIG$signal"
