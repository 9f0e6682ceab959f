#!/usr/bin/env python3
"""The same workloads as pipepool_bench, on Python's standard process pools.

Peers (standard library only):
  mp_pool      multiprocessing.Pool (fork start method, 64 KiB pipes: Python never enlarges them)
  mp_executor  concurrent.futures.ProcessPoolExecutor

Workloads, mirrored from the benchmark binary's mode (`pipepool_bench --pipepool_describe_mode`):
  echo       per iteration, 2 x workers messages of `size` bytes sent with map(chunksize=1) and
             returned (symmetric), or size in / 8 bytes out (large_in), or 8 in / size out
             (large_out); bytes/s count payload in + out, as the C++ benchmark does.
  task_rate  square(x) over task_items integers via map, imap, imap_unordered and apply_async
             (all submitted, then every get()), with chunksize 1 and with the default chunking
             (Python's map rule; imap and imap_unordered get the same value explicitly). The
             executor has map (chunksize 1 and default) and submit (reported as apply_async).

Output: Google Benchmark's JSON layout ({"context": ..., "benchmarks": [...]}) with the fields
bench/report.py reads: name, run_name, run_type, iterations, real_time, cpu_time, time_unit (ms),
bytes_per_second or items_per_second. Names use the C++ benchmark's key:value scheme, e.g.
"echo/impl:mp_pool/pipe:default/workers:1/shape:symmetric/size:1048576".

Usage:
  python_peers.py --mode-file mode.json --out peers.json [--compare pipepool.json]
                  [--interleave build/bench/pipepool_bench [--rounds N]]
  python_peers.py --mode quick --out peers.json     (without the binary: built-in copy of quick)

--interleave BIN  pairs every peer measurement with pipepool's own case of the same workload, run
                  (one repetition, BIN --pipepool_repetitions=1) right before it: A B A B, N
                  rounds (default: the mode's repetitions, at least 2). Each peer iteration entry
                  then also holds `paired_pool_rate` (pipepool's rate in that pair) and
                  `pool_over_peer` (their ratio), which report.py uses for every pool-versus-
                  Python figure: both terms of a ratio are measured seconds apart, not minutes.
                  The pipepool counterpart of a peer's echo is Epoll with default Options
                  (enlarged pipes, Demand) on the same load; of a task rate, the default pool.

--compare prints this pool's figures as multiples of the peers' (report.py does the same in
summary.md).
"""

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time

SMALL_SIDE_BYTES = 8

# Used only without --mode-file; the binary's own description is the reference.
BUILTIN_MODES = {
    "smoke": {"echo_sizes_bytes": [1024, 262144], "asymmetric_sizes_bytes": [262144],
              "echo_workers": [1], "messages_per_worker": 2, "task_items": 200,
              "task_workers": 2, "min_time_seconds": 0.01, "repetitions": 1},
    "quick": {"echo_sizes_bytes": [64, 4096, 65536, 1048576, 16777216],
              "asymmetric_sizes_bytes": [1048576], "echo_workers": [1, 2],
              "messages_per_worker": 2, "task_items": 2000, "task_workers": 2,
              "min_time_seconds": 0.05, "repetitions": 1},
}


# ---- task functions (module level: the workers find them by name) ----------------------------

def echo(payload):
    return payload


def keep_first_bytes(payload):
    return payload[:SMALL_SIDE_BYTES]


def make_bytes(size):
    return b"r" * size


def square(x):
    return x * x


# ---- measuring --------------------------------------------------------------------------------

def measure(run_once, min_time_seconds, repetitions):
    """Runs run_once() until min_time has passed (at least once), after one warm-up call.
    Returns one (iterations, real_seconds, cpu_seconds) per repetition."""
    run_once()
    runs = []
    for _ in range(repetitions):
        iterations = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        while True:
            run_once()
            iterations += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_seconds:
                break
        runs.append((iterations, elapsed, time.process_time() - cpu_start))
    return runs


def entries(name, runs, bytes_per_iteration=None, items_per_iteration=None):
    out = []
    for index, (iterations, real_seconds, cpu_seconds) in enumerate(runs):
        entry = {
            "name": name, "run_name": name, "run_type": "iteration",
            "repetitions": len(runs), "repetition_index": index, "threads": 1,
            "iterations": iterations,
            "real_time": real_seconds / iterations * 1e3,
            "cpu_time": cpu_seconds / iterations * 1e3,
            "time_unit": "ms",
        }
        if bytes_per_iteration is not None:
            entry["bytes_per_second"] = bytes_per_iteration * iterations / real_seconds
        if items_per_iteration is not None:
            entry["items_per_second"] = items_per_iteration * iterations / real_seconds
        out.append(entry)
    return out


class Interleave:
    """Runs pipepool's own case of a workload, one repetition, in the benchmark binary."""

    def __init__(self, binary, mode_name):
        self.binary = binary
        self.mode_name = mode_name

    def rate(self, name_prefix, field):
        """pipepool's `field` for the case whose name starts with name_prefix + '/min_time'.
        Raises RuntimeError (one line) if the case is missing, failed, or deadlocked."""
        command = [self.binary, f"--pipepool_mode={self.mode_name}", "--pipepool_repetitions=1",
                   f"--benchmark_filter=^{name_prefix}/min_time", "--benchmark_format=json"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name_prefix}: pipepool_bench took over 600 s") from None
        try:
            data = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"{name_prefix}: pipepool_bench exited with {done.returncode} "
                               f"and no JSON: {done.stderr.strip()[-200:]}") from None
        runs = [b for b in data.get("benchmarks", []) if b.get("run_type") != "aggregate"]
        if not runs:
            raise RuntimeError(f"{name_prefix}: no such pipepool case in mode {self.mode_name}")
        if runs[0].get("error_occurred"):
            raise RuntimeError(f"{name_prefix}: {runs[0].get('error_message', 'error')}")
        if not runs[0].get(field):
            raise RuntimeError(f"{name_prefix}: no {field}")
        return runs[0][field]


def measure_paired(run_once, mode, interleave, pool_name, field, rounds):
    """A B A B: pipepool's case, then the peer's measurement, `rounds` times. Returns the peer's
    runs (one per round) and pipepool's rate before each."""
    runs, pool_rates = [], []
    for _ in range(rounds):
        pool_rates.append(interleave.rate(pool_name, field))
        runs += measure(run_once, mode["min_time_seconds"], 1)
    return runs, pool_rates


def pair_fields(entry_list, pool_rates, field):
    for entry, pool_rate in zip(entry_list, pool_rates):
        entry["paired_pool_rate"] = pool_rate
        entry["pool_over_peer"] = pool_rate / entry[field]
    return entry_list


class Peer:
    """One kind of pool: how to start it and how to run each call on it."""

    def __init__(self, name):
        self.name = name

    def start(self, workers):
        if self.name == "mp_pool":
            return multiprocessing.get_context("fork").Pool(workers)
        return concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"))

    @staticmethod
    def stop(pool):
        if isinstance(pool, concurrent.futures.Executor):
            pool.shutdown(wait=True)
        else:
            pool.close()
            pool.join()

    def calls(self):
        if self.name == "mp_pool":
            return ["map", "imap", "imap_unordered", "apply_async"]
        return ["map", "apply_async"]

    def run(self, pool, call, function, items, chunksize):
        if isinstance(pool, concurrent.futures.Executor):
            if call == "map":
                return list(pool.map(function, items, chunksize=chunksize))
            futures = [pool.submit(function, x) for x in items]
            return [f.result() for f in futures]
        if call == "map":
            return pool.map(function, items, chunksize)
        if call == "imap":
            return list(pool.imap(function, items, chunksize))
        if call == "imap_unordered":
            return list(pool.imap_unordered(function, items, chunksize))
        results = [pool.apply_async(function, (x,)) for x in items]
        return [r.get() for r in results]


def default_chunksize(items, workers):
    """multiprocessing.Pool.map's rule."""
    chunksize, extra = divmod(items, workers * 4)
    return chunksize + 1 if extra else max(chunksize, 1)


def echo_benchmarks(peer, mode, log, interleave=None, rounds=1):
    out = []
    per_worker = mode.get("messages_per_worker", 2)
    loads = [("symmetric", size) for size in mode["echo_sizes_bytes"]]
    loads += [(shape, size) for shape in ("large_in", "large_out")
              for size in mode["asymmetric_sizes_bytes"]]
    for workers in mode["echo_workers"]:
        pool = peer.start(workers)
        try:
            for shape, size in loads:
                messages = per_worker * workers
                in_bytes = SMALL_SIDE_BYTES if shape == "large_out" else size
                out_bytes = SMALL_SIDE_BYTES if shape == "large_in" else size
                if shape == "large_out":
                    function, items = make_bytes, [size] * messages
                else:
                    function = echo if shape == "symmetric" else keep_first_bytes
                    items = [bytes([97 + i % 26]) * size for i in range(messages)]
                name = (f"echo/impl:{peer.name}/pipe:default/workers:{workers}"
                        f"/shape:{shape}/size:{size}")
                log(name)

                def once(function=function, items=items, out_bytes=out_bytes):
                    results = peer.run(pool, "map", function, items, 1)
                    assert all(len(r) == out_bytes for r in results)

                per_iteration = messages * (in_bytes + out_bytes)
                if interleave is None:
                    runs = measure(once, mode["min_time_seconds"], mode.get("repetitions", 1))
                    out += entries(name, runs, bytes_per_iteration=per_iteration,
                                   items_per_iteration=messages)
                    continue
                pool_name = (f"echo/impl:pool/strategy:epoll/options:default/calls:1"
                             f"/pipe:enlarged/workers:{workers}/shape:{shape}/size:{size}")
                runs, pool_rates = measure_paired(once, mode, interleave, pool_name,
                                                  "bytes_per_second", rounds)
                out += pair_fields(entries(name, runs, bytes_per_iteration=per_iteration,
                                           items_per_iteration=messages),
                                   pool_rates, "bytes_per_second")
        finally:
            Peer.stop(pool)
    return out


def task_rate_benchmarks(peer, mode, log, interleave=None, rounds=1):
    out = []
    workers = mode["task_workers"]
    items = list(range(mode["task_items"]))
    expected = sum(x * x for x in items)
    pool = peer.start(workers)
    try:
        for call in peer.calls():
            for chunking in ("1", "default"):
                if call == "apply_async" and chunking == "default":
                    continue
                chunksize = 1 if chunking == "1" else default_chunksize(len(items), workers)
                name = (f"task_rate/impl:{peer.name}/call:{call}/chunksize:{chunking}"
                        f"/workers:{workers}")
                log(name)

                def once(call=call, chunksize=chunksize):
                    assert sum(peer.run(pool, call, square, items, chunksize)) == expected

                if interleave is None:
                    runs = measure(once, mode["min_time_seconds"], mode.get("repetitions", 1))
                    out += entries(name, runs, items_per_iteration=len(items))
                    continue
                pool_name = (f"task_rate/impl:pool/call:{call}/chunksize:{chunking}"
                             f"/in_flight:default/workers:{workers}")
                runs, pool_rates = measure_paired(once, mode, interleave, pool_name,
                                                  "items_per_second", rounds)
                out += pair_fields(entries(name, runs, items_per_iteration=len(items)),
                                   pool_rates, "items_per_second")
    finally:
        Peer.stop(pool)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mode-file", help="JSON from pipepool_bench --pipepool_describe_mode")
    source.add_argument("--mode", choices=sorted(BUILTIN_MODES))
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--compare", help="pipepool_bench JSON: print the pool's multiples")
    parser.add_argument("--interleave", metavar="BIN",
                        help="pipepool_bench: run pipepool's case right before each peer's")
    parser.add_argument("--rounds", type=int, help="with --interleave: A-B pairs per workload")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.rounds is not None and (args.rounds < 1 or not args.interleave):
        parser.error("--rounds takes a count >= 1, and needs --interleave")
    if args.interleave and not os.access(args.interleave, os.X_OK):
        parser.error(f"--interleave: {args.interleave} is not an executable")

    if args.mode_file:
        with open(args.mode_file) as f:
            mode = json.load(f)
    else:
        mode = dict(BUILTIN_MODES[args.mode], mode=args.mode)

    def log(name):
        if not args.quiet:
            print(f"python_peers: {name}", file=sys.stderr, flush=True)

    interleave = Interleave(args.interleave, mode.get("mode", "quick")) if args.interleave else None
    rounds = args.rounds or max(2, mode.get("repetitions", 1))
    benchmarks = []
    try:
        for peer in (Peer("mp_pool"), Peer("mp_executor")):
            benchmarks += echo_benchmarks(peer, mode, log, interleave, rounds)
            benchmarks += task_rate_benchmarks(peer, mode, log, interleave, rounds)
    except RuntimeError as error:
        print(f"python_peers: error: {error}", file=sys.stderr)
        sys.exit(1)

    result = {
        "context": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "executable": sys.executable,
            "python_version": platform.python_version(),
            "num_cpus": os.cpu_count(),
            "pipepool_mode": mode.get("mode", "?"),
            "start_method": "fork",
            "interleaved_rounds": rounds if interleave else 0,
        },
        "benchmarks": benchmarks,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)

    if args.compare:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import report  # noqa: E402 (same folder; only needed for the comparison)
        try:
            results = report.load_results([args.compare, args.out])
        except report.ReportError as error:
            print(f"python_peers: no comparison: {error}", file=sys.stderr)
            return
        print(report.peer_comparison_text(results))


if __name__ == "__main__":
    main()
