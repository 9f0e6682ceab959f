#!/usr/bin/env python3
"""ctest: `pipepool tiers --workload spin` reproduces the published Lambda throttling.

Published (pwrdrvr/lambda-throttling, 2025, a spin loop on real Lambda): throttled 92.8 % of wall
time at 128 MB, 86.9 % at 256, 71.1 % at 512, 42.1 % at 1024, 3.2 % at 1769. The emulation's
throttled_fraction (the tier cgroup's own cpu.stat) must be within 5 points of each.

On Lambda the function has its vCPUs to itself. On a machine whose other processes keep every CPU
busy, the spinning loop also waits for the CPU after each unthrottle (it is then paused, not
throttled, and the counter reads lower while the CPU time it gets is still exactly the quota).
Such an attempt is repeated, up to three in all; if every one was contended, the test accepts the
loop's own measure of its pauses (the in-function method of the published measurement) for the
contended tiers, within the same 5 points, and says so. It is skipped (exit 77) only without root
or cgroups.
Usage: tiers_spin_test.py PIPEPOOL [SECONDS_PER_TIER]
"""
import json
import os
import subprocess
import sys

PUBLISHED = {128: 0.928, 256: 0.869, 512: 0.711, 1024: 0.421, 1769: 0.032}
TOLERANCE = 0.05
SKIP = 77


def attempt(pipepool, seconds):
    tiers = ",".join(str(mb) for mb in PUBLISHED)
    run = subprocess.run([pipepool, "tiers", "--workload", "spin", "--tiers", tiers, "--seconds",
                          seconds, "--json", "--quiet"], capture_output=True, text=True, timeout=120)
    if run.returncode == 3:
        print("SKIP: cgroups cannot be written here:", run.stderr.strip())
        sys.exit(SKIP)
    if run.returncode != 0:
        print("FAIL: exit", run.returncode, run.stderr.strip())
        sys.exit(1)
    rows = json.loads(run.stdout)["runs"]
    failures, contended = [], {}
    for row in rows:
        mb, got = row["tier_mb"], row["throttled_fraction"]
        want = PUBLISHED[mb]
        paused = row["paused_fraction"]
        line = (f"{mb:5d} MB: throttled {100 * got:5.1f} %  (published {100 * want:4.1f} %, "
                f"loop paused {100 * paused:5.1f} %)")
        print(line)
        if abs(got - want) > TOLERANCE:
            failures.append(line)
            # Paused well beyond throttled: the CPU was taken by other processes, not the quota.
            if paused - got > 0.01:
                contended[mb] = abs(paused - want) <= TOLERANCE
    return failures, contended


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root to create cgroups")
        return SKIP
    pipepool = sys.argv[1]
    seconds = sys.argv[2] if len(sys.argv) > 2 else "1.5"
    for number in range(1, 4):
        print(f"attempt {number}:")
        failures, contended = attempt(pipepool, seconds)
        if not failures:
            print("ok: every tier within 5 points of the published figure")
            return 0
        if len(contended) < len(failures):
            print("FAIL: off by more than 5 points without contention:")
            print("\n".join(failures))
            return 1
        print(f"contended (other processes held the CPUs at {sorted(contended)} MB); again")
    if all(contended.values()):
        print("ok, by the loop's measure: every attempt was contended by other load on this "
              "machine, so the cgroup counter read low, but the loop's pauses are within 5 points "
              f"of the published figures at {sorted(contended)} MB")
        return 0
    print("FAIL: contended, and the loop's pauses are off by more than 5 points too")
    return 1


if __name__ == "__main__":
    sys.exit(main())
