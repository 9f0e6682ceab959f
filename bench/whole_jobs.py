#!/usr/bin/env python3
"""Whole jobs, each in a process (and a memory cgroup) of its own: wall time and peak memory.

Jobs (sizes divided by --divisor, for the smoke test):
  echo16  map an identity function over 8 distinct 16 MiB values, 4 times, on 2 workers:
          pipepool (whole_job echo16 pool: std::string, default Options) against Python's
          multiprocessing.Pool(2).map and ProcessPoolExecutor(2).map on bytes
  gib     one 1 GiB value in and back out on 1 worker: pipepool's Pool(1).apply against the raw
          pipe (whole_job gib raw: a forked child reads the whole message and writes it back)

Cases run in rounds, A B A B, so that every ratio compares measurements taken seconds apart.
Peak memory is the cgroup's high-water mark of everything the job's processes charged (their
memory, pipe buffers, page cache they brought in): cgroup v1 memory.max_usage_in_bytes or v2
memory.peak, in a fresh cgroup per case (needs root; without it peak_bytes is null and the
summary says why). Seconds are the job's own, printed by the job: from before its pool (or raw
child) exists until every result is back and checked, interpreter start-up excluded.

Usage:
  whole_jobs.py --binary build/bench/whole_job --out jobs.json [--rounds N] [--divisor K]
                [--jobs echo16,gib] [--no-python]
  whole_jobs.py --child JOB IMPL [DIVISOR]     (what the runner starts for Python's cases)
Exit status 0 when every case ran and checked its result, 1 otherwise, 2 for bad arguments.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import time

MiB = 1 << 20

# (job, impl): who runs it. "binary": the C++ whole_job; "python": this script's --child.
CASES = [("echo16", "pool", "binary"), ("echo16", "mp_pool", "python"),
         ("echo16", "mp_executor", "python"), ("gib", "raw", "binary"), ("gib", "pool", "binary")]


def identity(value):
    return value


def child(job, impl, divisor):
    """Python's side of echo16, in this process; prints the same JSON line as whole_job."""
    if job != "echo16" or impl not in ("mp_pool", "mp_executor"):
        print(f"whole_jobs.py: no Python case {job} {impl}", file=sys.stderr)
        return 2
    size = 16 * MiB // divisor
    items = [bytes([ord("a") + i]) * size for i in range(8)]
    rounds = 4
    start = time.perf_counter()
    ok = True
    if impl == "mp_pool":
        with multiprocessing.get_context("fork").Pool(2) as pool:
            for _ in range(rounds):
                ok = ok and pool.map(identity, items) == items
    else:
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            for _ in range(rounds):
                ok = ok and list(pool.map(identity, items)) == items
    seconds = time.perf_counter() - start
    print(json.dumps({"job": job, "impl": impl, "seconds": round(seconds, 6),
                      "bytes": 2 * rounds * len(items) * size}))
    return 0 if ok else 1


class Cgroup:
    """A fresh memory cgroup (v1 or v2) whose peak a case's processes are charged to."""

    V1 = "/sys/fs/cgroup/memory"
    V2 = "/sys/fs/cgroup"

    def __init__(self, name):
        self.path = self.peak_file = None
        self.why_not = None
        if os.path.isfile(os.path.join(self.V1, "memory.max_usage_in_bytes")):
            root, peak = self.V1, "memory.max_usage_in_bytes"
        elif os.path.isfile(os.path.join(self.V2, "cgroup.controllers")):
            root, peak = self.V2, "memory.peak"
        else:
            self.why_not = "no memory cgroup hierarchy is mounted"
            return
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
        except OSError as error:
            self.why_not = f"cannot create {path}: {error.strerror} (peak memory needs root)"
            return
        if not os.path.isfile(os.path.join(path, peak)):
            os.rmdir(path)
            self.why_not = f"{root} has no {peak} (memory controller not enabled there)"
            return
        self.path, self.peak_file = path, os.path.join(path, peak)

    def enter(self):
        """In the child, before exec: join the cgroup."""
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def peak(self):
        if not self.peak_file:
            return None
        with open(self.peak_file) as f:
            return int(f.read())

    def remove(self):
        if not self.path:
            return
        for _ in range(100):  # a job's last processes may still be exiting
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.05)


def run_case(binary, job, impl, runner, divisor, serial):
    if runner == "binary":
        command = [binary, job, impl, str(divisor)]
    else:
        command = [sys.executable, os.path.abspath(__file__), "--child", job, impl, str(divisor)]
    cgroup = Cgroup(f"pipepool-whole-job-{os.getpid()}-{serial}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, preexec_fn=cgroup.enter,
                              timeout=600)
        peak = cgroup.peak()
    finally:
        cgroup.remove()
    entry = {"job": job, "impl": impl, "status": "ok", "seconds": None, "bytes": None,
             "peak_bytes": peak, "peak_unmeasured_because": cgroup.why_not}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        entry["status"] = "error"
        entry["error"] = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return entry
    reported = json.loads(lines[-1])
    entry["seconds"], entry["bytes"] = reported["seconds"], reported["bytes"]
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    parser.add_argument("--binary", help="the whole_job binary (build/bench/whole_job)")
    parser.add_argument("--out", help="where to write the JSON results")
    parser.add_argument("--rounds", type=int, default=2, help="A-B rounds (default 2)")
    parser.add_argument("--divisor", type=int, default=1, help="divide every size by this")
    parser.add_argument("--jobs", default="echo16,gib", help="comma-separated (default all)")
    parser.add_argument("--no-python", action="store_true", help="skip Python's cases")
    args = parser.parse_args()
    if args.child:
        if len(args.child) not in (2, 3):
            parser.error("--child JOB IMPL [DIVISOR]")
        divisor = int(args.child[2]) if len(args.child) == 3 else 1
        return child(args.child[0], args.child[1], divisor)
    if not args.binary or not args.out:
        parser.error("--binary and --out are required")
    if args.rounds < 1 or args.divisor < 1:
        parser.error("--rounds and --divisor must be at least 1")
    if not os.access(args.binary, os.X_OK):
        parser.error(f"{args.binary} is not an executable (build the whole_job target)")
    jobs = args.jobs.split(",")
    unknown = sorted(set(jobs) - {job for job, _, _ in CASES})
    if unknown:
        parser.error(f"unknown job(s): {', '.join(unknown)}")
    results, serial, failed = [], 0, False
    for round_index in range(args.rounds):
        for job, impl, runner in CASES:
            if job not in jobs or (runner == "python" and args.no_python):
                continue
            serial += 1
            entry = run_case(args.binary, job, impl, runner, args.divisor, serial)
            entry["round"] = round_index
            results.append(entry)
            failed = failed or entry["status"] != "ok"
            peak = entry["peak_bytes"]
            print(f"round {round_index + 1}: {job:7} {impl:12} "
                  + (f"{entry['seconds']:8.3f} s" if entry["seconds"] is not None
                     else f"error: {entry.get('error')}")
                  + (f", peak {peak / MiB:8.1f} MiB" if peak is not None else ""), flush=True)
    with open(args.out, "w") as f:
        json.dump({"divisor": args.divisor, "rounds": args.rounds, "jobs": results}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
