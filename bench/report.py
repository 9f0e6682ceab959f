#!/usr/bin/env python3
"""summary.md from pipepool_bench's JSON and python_peers.py's JSON: ratios, targets, deadlocks.

Usage:
  report.py --results pipepool.json peers.json [--machine machine.txt] [--out summary.md]
            [--check expected.txt]

Every figure in the summary is a ratio of two measurements from the same run (the machine is
shared and noisy; absolute numbers move, ratios much less). With repetitions, rates are the best
repetition and paired fractions the median (see BEST_IS_HIGHEST).

--check FILE  (the smoke test) FILE lists the benchmark names the binary registered
              (--benchmark_list_tests). Fails (exit 1) unless each produced a number or an
              explicit deadlock mark, every strategy produced at least one number, and the Python
              peers produced every echo and task-rate figure they were asked for.

Only the standard library is used (no matplotlib needed here).
"""

import argparse
import json
import statistics
import sys

# Segments of a Google Benchmark name that describe how it ran, not what it measured.
RUN_KEYS = {"min_time", "repeats", "iterations", "threads", "real_time", "manual_time",
            "min_warmup_time"}

STRATEGIES = ["epoll", "batched", "unbatched", "zerocopy"]
PEER_NAMES = {"mp_pool": "multiprocessing.Pool", "mp_executor": "ProcessPoolExecutor"}

# With repetitions, a rate is the best repetition (noise on a shared machine only ever slows a run
# down, and the terms of a pool-versus-Python ratio are not measured at the same moment); paired
# figures (fraction_of_raw, measured within one case) and everything else are the median.
BEST_IS_HIGHEST = {"bytes_per_second", "items_per_second", "ops_per_second", "steps_per_second",
                   "pipe_ops_per_second", "schedules_per_second", "raw_bytes_per_second"}
BEST_IS_LOWEST = {"real_time", "cpu_time"}

# The targets of issue 11 (the data path); the PipeModel's is issue 5's.
RAW_FRACTION_TARGET = 0.8        # Epoll, default options, echo at 64 KiB, 1 MiB, 16 MiB vs raw
RAW_FRACTION_SIZES = (64 << 10, 1 << 20, 16 << 20)
SMALL_RAW_FRACTION_TARGET = 0.5  # 64-byte echo vs raw
SMALL_ECHO_SIZE = 64
ECHO_PEER_TARGET = 3.0           # 16 MiB echo, 2 workers, vs each Python pool
ECHO_PEER_SIZE, ECHO_PEER_WORKERS = 16 << 20, 2
GIB_RAW_TIME_TARGET = 2.0        # 1 GiB in and out on Pool(1): at most 2x the raw pipe's time
ZERO_COPY_TARGET = 1.5           # the zero-copy strategy vs raw, >= 1 MiB
ZERO_COPY_STRATEGY = "zerocopy"
TASK_RATE_CHUNK1_TARGET = 10.0   # "must not fall": 10-13x multiprocessing.Pool when issue 11 was filed
TASK_RATE_DEFAULT_TARGET = 1.0
PIPE_MODEL_OPS_TARGET = 1e6
MiB = 1 << 20


# ---- loading ----------------------------------------------------------------------------------

class ReportError(Exception):
    """A results file that cannot be read: reported in one line, without a traceback."""


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as error:
        raise ReportError(f"{path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); did the "
                          "run that writes it crash or time out?") from None


def parse_name(name):
    """'echo/impl:pool/size:64/min_time:0.050/real_time' -> ('echo', {'impl': 'pool', 'size': '64'})"""
    parts = name.split("/")
    params = {}
    for part in parts[1:]:
        if ":" in part:
            key, value = part.split(":", 1)
            if key not in RUN_KEYS:
                params[key] = value
    return parts[0], params


def load_results(paths):
    """One dict per benchmark (repetitions folded into their median), from GB-style JSON files."""
    groups = {}
    order = []
    for path in paths:
        data = read_json(path)
        for entry in data.get("benchmarks", []):
            key = entry.get("run_name", entry["name"])
            if entry.get("run_type") == "aggregate":
                continue  # mean/median/stddev rows: recomputed below from the repetitions
            if key not in groups:
                groups[key] = {"iterations": []}
                order.append(key)
            groups[key]["iterations"].append(entry)
    results = []
    for key in order:
        runs = groups[key]["iterations"]
        family, params = parse_name(key)
        result = {"name": key, "family": family, "params": params, "status": "ok",
                  "message": "", "repetitions": len(runs)}
        errors = [r for r in runs if r.get("error_occurred")]
        if errors:
            message = errors[0].get("error_message", "")
            result["status"] = "deadlock" if message.startswith("deadlock") else "error"
            result["message"] = message
        elif not runs:
            result["status"] = "error"
            result["message"] = "no iteration reported"
        else:
            numeric = {}
            for field in set().union(*(r.keys() for r in runs)):
                values = [r[field] for r in runs if isinstance(r.get(field), (int, float))
                          and not isinstance(r.get(field), bool)]
                if not values:
                    continue
                if field in BEST_IS_HIGHEST:
                    numeric[field] = max(values)
                elif field in BEST_IS_LOWEST:
                    numeric[field] = min(values)
                else:
                    numeric[field] = statistics.median(values)
            result.update(numeric)
            paired = [r for r in runs if r.get("fraction_of_raw") and r.get("raw_bytes_per_second")]
            if paired:
                # The repetition of median fraction (the lower one of an even count: a real run):
                # a cell shows its rate, its fraction and its paired raw rate, which agree with
                # each other (rate = fraction x raw), whatever the best-of figures elsewhere are.
                paired.sort(key=lambda r: r["fraction_of_raw"])
                middle = paired[(len(paired) - 1) // 2]
                result["paired_run"] = {k: middle[k] for k in
                                        ("bytes_per_second", "raw_bytes_per_second",
                                         "fraction_of_raw") if k in middle}
            peer_pairs = [r for r in runs if r.get("pool_over_peer") and r.get("paired_pool_rate")]
            if peer_pairs:
                # python_peers.py --interleave: the pair of median ratio, shown whole (peer rate,
                # pipepool's rate beside it, their ratio), so that the three agree.
                peer_pairs.sort(key=lambda r: r["pool_over_peer"])
                middle = peer_pairs[(len(peer_pairs) - 1) // 2]
                rate_field = ("bytes_per_second" if middle.get("bytes_per_second")
                              and family == "echo" else "items_per_second")
                result["peer_pair"] = {"peer_rate": middle[rate_field],
                                       "pool_rate": middle["paired_pool_rate"],
                                       "pool_over_peer": middle["pool_over_peer"],
                                       "pairs": len(peer_pairs)}
        results.append(result)
    return results


def select(results, family, **params):
    """Results of `family` whose params include every given key=value (values compared as str)."""
    wanted = {k: str(v) for k, v in params.items()}
    return [r for r in results if r["family"] == family
            and all(r["params"].get(k) == v for k, v in wanted.items())]


def one(results, family, **params):
    found = select(results, family, **params)
    return found[0] if found else None


# ---- formatting -------------------------------------------------------------------------------

def size_text(size):
    size = int(size)
    for unit, scale in (("MiB", MiB), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def rate_text(value, unit="B/s"):
    if value is None:
        return "-"
    if unit == "B/s":
        for name, scale in (("GiB/s", 1 << 30), ("MiB/s", MiB), ("KiB/s", 1024)):
            if value >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value:.0f} B/s"
    for name, scale in (("G/s", 1e9), ("M/s", 1e6), ("k/s", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {name}"
    return f"{value:.3g} /s"


def cell(result, field, reference=None, unit="B/s"):
    """'1.66 GiB/s (0.39 of paired raw 4.26 GiB/s)' or 'deadlock' or 'error' or '-'. The
    parentheses always name what the figure is a fraction of, so that it can be checked against
    the cell: the result's own paired raw iterations when it has them (fraction_of_raw, and the
    raw rate of those pairs, raw_bytes_per_second), else the reference column ("of raw column":
    the raw pipe's own benchmark in the same row)."""
    if result is None:
        return "-"
    if result["status"] == "deadlock":
        return "**deadlock**"
    if result["status"] != "ok":
        return "error"
    paired = result.get("paired_run")
    if paired and field in paired:
        return (f"{rate_text(paired[field], unit)} ({paired['fraction_of_raw']:.2f} of paired raw "
                f"{rate_text(paired['raw_bytes_per_second'], unit)})")
    text = rate_text(result.get(field), unit)
    if reference is not None and reference["status"] == "ok" and reference.get(field):
        text += f" ({result.get(field) / reference[field]:.2f} of raw column)"
    return text


def fraction_of_raw(pool, raw):
    """Pool rate / raw-pipe rate: from the pool case's paired raw iterations when present."""
    if pool and pool["status"] == "ok" and pool.get("fraction_of_raw"):
        return pool["fraction_of_raw"]
    return ratio(pool, raw, "bytes_per_second")


def ratio(result, reference, field):
    if not result or not reference or result["status"] != "ok" or reference["status"] != "ok":
        return None
    if not reference.get(field) or result.get(field) is None:
        return None
    return result[field] / reference[field]


def pool_over_peer(pool, peer, field):
    """pipepool / a Python peer: the median A-B pair when the peers ran interleaved, else the
    ratio of the two separate runs' figures."""
    if peer and peer["status"] == "ok" and peer.get("peer_pair"):
        return peer["peer_pair"]["pool_over_peer"]
    return ratio(pool, peer, field)


def verdict(value, target, unit=""):
    if value is None:
        return "no data"
    if value >= target:
        return "met"
    return (f"**missed**: {value:.2f}{unit} vs {target:g}{unit} needed "
            f"({value / target:.0%} of the target)")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- sections ---------------------------------------------------------------------------------

def pool_echo(results, strategy, options, calls, **load):
    """options: "round_robin" (two tasks per worker in flight, as the raw pipe) or "default"."""
    return one(results, "echo", impl="pool", strategy=strategy, options=options, calls=calls,
               **load)


def echo_loads(results):
    """(shape, workers, pipe, size) of every raw-pipe echo, in run order."""
    return [(r["params"]["shape"], r["params"]["workers"], r["params"]["pipe"],
             int(r["params"]["size"])) for r in select(results, "echo", impl="raw_pipe")]


def targets_section(results, jobs=None):
    rows = []
    loads = echo_loads(results)
    symmetric = sorted({(w, size) for shape, w, pipe, size in loads
                        if shape == "symmetric" and pipe == "enlarged"})
    for workers, size in symmetric:
        if size not in RAW_FRACTION_SIZES and size != SMALL_ECHO_SIZE:
            continue
        load = dict(shape="symmetric", workers=workers, pipe="enlarged", size=size)
        raw = one(results, "echo", impl="raw_pipe", **load)
        value = fraction_of_raw(pool_echo(results, "epoll", "default", 1, **load), raw)
        target = SMALL_RAW_FRACTION_TARGET if size == SMALL_ECHO_SIZE else RAW_FRACTION_TARGET
        rows.append([f"Epoll echo, default options / raw pipe, enlarged pipes, {workers} "
                     f"worker(s), {size_text(size)}", fmt_ratio(value), f">= {target:g}",
                     verdict(value, target)])
    for workers, size in symmetric:
        if size < MiB:
            continue
        load = dict(shape="symmetric", workers=workers, pipe="enlarged", size=size)
        zero = (pool_echo(results, ZERO_COPY_STRATEGY, "default", 1, **load)
                or pool_echo(results, ZERO_COPY_STRATEGY, "round_robin", 1, **load))
        if zero is None and not any(r["params"].get("strategy") == ZERO_COPY_STRATEGY
                                    for r in results):
            continue
        value = fraction_of_raw(zero, one(results, "echo", impl="raw_pipe", **load))
        rows.append([f"zero-copy echo / raw pipe, enlarged pipes, {workers} worker(s), "
                     f"{size_text(size)}", fmt_ratio(value), f">= {ZERO_COPY_TARGET:g}",
                     verdict(value, ZERO_COPY_TARGET)])
    load = dict(shape="symmetric", workers=ECHO_PEER_WORKERS, size=ECHO_PEER_SIZE)
    pool = pool_echo(results, "epoll", "default", 1, pipe="enlarged", **load)
    for peer, peer_name in PEER_NAMES.items():
        other = one(results, "echo", impl=peer, **load)
        if pool is None and other is None:
            continue
        value = pool_over_peer(pool, other, "bytes_per_second")
        rows.append([f"echo {size_text(ECHO_PEER_SIZE)}, {ECHO_PEER_WORKERS} workers, default "
                     f"options / {peer_name}", fmt_ratio(value, "x"),
                     f">= {ECHO_PEER_TARGET:g}x", verdict(value, ECHO_PEER_TARGET)])
    for r in select(results, "task_rate", impl="pool", in_flight="default"):
        call, chunk = r["params"]["call"], r["params"]["chunksize"]
        peer = one(results, "task_rate", impl="mp_pool", call=call, chunksize=chunk)
        target = TASK_RATE_CHUNK1_TARGET if chunk == "1" else TASK_RATE_DEFAULT_TARGET
        value = pool_over_peer(r, peer, "items_per_second")
        rows.append([f"task rate, {call}, chunksize {chunk} / multiprocessing.Pool",
                     fmt_ratio(value, "x"), f">= {target:g}x", verdict(value, target)])
    if jobs:
        rows += job_target_rows(jobs)
    for r in select(results, "pipe_model"):
        value = r.get("ops_per_second") if r["status"] == "ok" else None
        rows.append([f"PipeModel write+read of {size_text(r['params']['size'])}, ops/s (CPU)",
                     rate_text(value, "ops"), "> 1 M/s",
                     verdict(None if value is None else value / 1e6, PIPE_MODEL_OPS_TARGET / 1e6,
                             " M/s")])
    if not rows:
        return ""
    return "## Targets\n\n" + table(["target", "measured", "required", "verdict"], rows) + "\n"


# ---- whole jobs (whole_jobs.py) ----------------------------------------------------------------

def job_entries(jobs, job, impl):
    return [e for e in jobs["jobs"] if e["job"] == job and e["impl"] == impl]


def job_pairs(jobs, job, impl, reference, field):
    """impl's `field` / reference's, per round (the two ran seconds apart), sorted."""
    by_round = {}
    for e in jobs["jobs"]:
        if e["job"] == job and e["status"] == "ok" and e.get(field) is not None:
            by_round.setdefault(e["round"], {})[e["impl"]] = e[field]
    return sorted(r[impl] / r[reference] for r in by_round.values()
                  if impl in r and reference in r and r[reference])


def median_or_none(values):
    return statistics.median(values) if values else None


def at_most_verdict(value, limit, unit=""):
    if value is None:
        return "no data"
    if value <= limit:
        return "met"
    return f"**missed**: {value:.2f}{unit} vs at most {limit:g}{unit}"


def job_target_rows(jobs):
    """The targets are about the real sizes: none for a scaled-down run (the smoke test)."""
    rows = []
    if jobs.get("divisor", 1) != 1:
        return rows
    value = median_or_none(job_pairs(jobs, "gib", "pool", "raw", "seconds"))
    if value is not None or job_entries(jobs, "gib", "pool"):
        rows.append(["1 GiB in and out on Pool(1): time / the raw pipe's", fmt_ratio(value, "x"),
                     f"<= {GIB_RAW_TIME_TARGET:g}x", at_most_verdict(value, GIB_RAW_TIME_TARGET,
                                                                    "x")])
    for peer, peer_name in PEER_NAMES.items():
        value = median_or_none(job_pairs(jobs, "echo16", "pool", peer, "peak_bytes"))
        if value is None and not job_entries(jobs, "echo16", peer):
            continue
        rows.append([f"peak memory, 8 x 16 MiB echo on 2 workers: pipepool / {peer_name}",
                     fmt_ratio(value, "x"), "<= 1x", at_most_verdict(value, 1.0, "x")])
    return rows


def jobs_section(jobs):
    if not jobs:
        return ""
    names = {"pool": "pipepool", "raw": "raw pipe", **PEER_NAMES}
    rows = []
    for job, what in (("echo16", "8 x 16 MiB identity map, 4 times, 2 workers"),
                      ("gib", "1 GiB in and out, 1 worker")):
        for impl in ("pool", "raw", *PEER_NAMES):
            entries = job_entries(jobs, job, impl)
            if not entries:
                continue
            ok = [e for e in entries if e["status"] == "ok"]
            seconds = [e["seconds"] for e in ok]
            peaks = [e["peak_bytes"] for e in ok if e.get("peak_bytes") is not None]
            rows.append([what, names[impl],
                         f"{min(seconds):.3f} s" if seconds else "error",
                         f"{statistics.median(seconds):.3f} s" if seconds else "-",
                         f"{min(peaks) / MiB:.0f} MiB" if peaks else "-",
                         f"{len(ok)} of {len(entries)}"])
    unmeasured = {e.get("peak_unmeasured_because") for e in jobs["jobs"]} - {None}
    note = (f" Peak memory not measured: {'; '.join(sorted(unmeasured))}." if unmeasured else "")
    scale = (f" Every size divided by {jobs['divisor']}." if jobs.get("divisor", 1) != 1 else "")
    return ("## Whole jobs\n\n"
            "Each job is a process of its own, run by `whole_jobs.py` in rounds (A B A B), in a "
            "fresh memory cgroup whose high-water mark is the peak: the job's processes, their "
            "pipe buffers and page cache they brought in. Seconds exclude the interpreter's start "
            "and include making the pool." + scale + note + "\n\n"
            + table(["job", "by", "best time", "median time", "lowest peak memory", "runs ok"],
                    rows) + "\n")


def fmt_ratio(value, suffix=""):
    return "-" if value is None else f"{value:.2f}{suffix}"


def echo_section(results, shape):
    loads = [l for l in echo_loads(results) if l[0] == shape]
    if not loads:
        return ""
    columns = [("epoll", "round_robin", 1), ("epoll", "round_robin", 2),
               ("batched", "round_robin", 1), ("batched", "round_robin", 2),
               ("unbatched", "round_robin", 1), ("unbatched", "round_robin", 2),
               ("epoll", "default", 1)]
    if shape != "symmetric":
        columns = [c for c in columns if c[2] == 1]
    title = {"symmetric": "Echo throughput (size in, size out)",
             "large_in": "Large in, small out (size in, 8 B out)",
             "large_out": "Small in, large out (8 B in, size out)"}[shape]
    text = [f"## {title}\n",
            "Payload bytes per second, in + out. In parentheses, what the figure is a fraction "
            "of: `of paired raw R` is the raw pipe (same pipes, same bytes in flight, no pool) "
            "timed in iterations between the case's own, whose rate R it names (figure = fraction "
            "x R; the targets use it); `of raw column` is the raw pipe's own benchmark in the "
            "`raw pipe` column of the same row, run earlier (for the Python pools, which are not "
            "paired). Strategy columns use the RoundRobin "
            "scheduler: two tasks per worker in flight, as for the raw pipe; `1 call`: one "
            "map_async of all tasks, `2 calls`: two map_async back to back; `defaults`: Epoll "
            "with the default Options (the Demand scheduler decides what is in flight)."]
    if shape == "symmetric":
        text[-1] += " Python's pools always use 64 KiB pipes."
    text[-1] += "\n"
    groups = []
    for _, workers, pipe, _ in loads:
        if (workers, pipe) not in groups:
            groups.append((workers, pipe))
    for workers, pipe in groups:
        header = ["size", "raw pipe"] + [
            (f"{s} defaults" if f == "default" else f"{s} {'2 calls' if c == 2 else '1 call'}")
            for s, f, c in columns]
        peers = [p for p in PEER_NAMES if select(results, "echo", impl=p, shape=shape)]
        header += [PEER_NAMES[p] for p in peers]
        rows = []
        for _, w, p, size in loads:
            if (w, p) != (workers, pipe):
                continue
            load = dict(shape=shape, workers=workers, pipe=pipe, size=size)
            raw = one(results, "echo", impl="raw_pipe", **load)
            row = [size_text(size), cell(raw, "bytes_per_second")]
            row += [cell(pool_echo(results, s, f, c, **load), "bytes_per_second", raw)
                    for s, f, c in columns]
            row += [cell(one(results, "echo", impl=peer, shape=shape, workers=workers, size=size),
                         "bytes_per_second", raw) for peer in peers]
            rows.append(row)
        capacity = "64 KiB (kernel default)" if pipe == "default" else "enlarged (pipe-max-size)"
        text.append(f"### {workers} worker(s), pipes {capacity}\n")
        text.append(table(header, rows) + "\n")
    return "\n".join(text)


def peer_cells(pool, other, field, unit):
    """[peer rate, pipepool rate, pipepool / peer] for one peer: one A-B pair (the median one)
    when the peers ran interleaved, else the two separate runs."""
    pair = other.get("peer_pair") if other and other["status"] == "ok" else None
    if pair:
        return [rate_text(pair["peer_rate"], unit), rate_text(pair["pool_rate"], unit),
                fmt_ratio(pair["pool_over_peer"], "x")]
    return [rate_text(other.get(field) if other else None, unit),
            rate_text(pool.get(field) if pool else None, unit),
            fmt_ratio(ratio(pool, other, field), "x")]


def peer_comparison_rows(results):
    rows = []
    for shape, workers, pipe, size in echo_loads(results):
        if pipe != "enlarged":
            continue
        pool = pool_echo(results, "epoll", "default", 1, shape=shape, workers=workers, pipe=pipe,
                         size=size)
        row = [f"echo {shape} {size_text(size)}, {workers} worker(s)"]
        for peer in PEER_NAMES:
            other = one(results, "echo", impl=peer, shape=shape, workers=workers, size=size)
            row += peer_cells(pool, other, "bytes_per_second", "B/s")
        rows.append(row)
    for r in select(results, "task_rate", impl="pool", in_flight="default"):
        call, chunk = r["params"]["call"], r["params"]["chunksize"]
        row = [f"task rate {call}, chunksize {chunk}"]
        for peer in PEER_NAMES:
            other = one(results, "task_rate", impl=peer, call=call, chunksize=chunk)
            row += peer_cells(r, other, "items_per_second", "")
        rows.append(row)
    return rows


def peer_comparison_text(results):
    header = ["workload"]
    for peer in PEER_NAMES.values():
        header += [peer, "pipepool beside it", "pipepool / it"]
    return table(header, peer_comparison_rows(results))


def interleaved_pairs(results):
    """How many A-B pairs each peer figure is the median of (0: not interleaved)."""
    counts = {r["peer_pair"]["pairs"] for r in results if r.get("peer_pair")}
    return max(counts) if counts else 0


def peers_section(results):
    if not any(r["params"].get("impl") in PEER_NAMES for r in results):
        return ("## Python peers\n\nNot run (run.sh --no-python, or python_peers.py failed).\n")
    pairs = interleaved_pairs(results)
    how = (f"Measured interleaved, A B A B: for each workload and peer, pipepool's case (one "
           f"repetition) ran right before the peer's ({pairs} pair{'s' if pairs != 1 else ''} "
           "per figure); each row shows the pair whose ratio is the median, whole (the peer's rate, pipepool's rate beside it, their "
           "ratio), so the three agree."
           if pairs else
           "Measured apart (not interleaved: python_peers.py ran without --interleave): "
           "pipepool's figure is from the C++ run above, the peer's from its own run.")
    return ("## Against Python's pools\n\n"
            "pipepool with default options (Epoll, enlarged pipes, Demand scheduler) against "
            "Python's standard pools on the same workload, as multiples of each (higher is "
            "better for pipepool). " + how + "\n\n" + peer_comparison_text(results) + "\n")


def task_rate_section(results):
    calls = select(results, "task_rate", impl="pool", in_flight="default")
    if not calls:
        return ""
    deep = sorted({r["params"]["in_flight"] for r in select(results, "task_rate", impl="pool")}
                  - {"default"}, key=int)
    rows = []
    for r in calls:
        call, chunk = r["params"]["call"], r["params"]["chunksize"]
        rows.append([call, chunk, f"{r.get('chunksize', 0):.0f}" if r["status"] == "ok" else "-",
                     cell(r, "items_per_second", unit="")]
                    + [cell(one(results, "task_rate", impl="pool", call=call, chunksize=chunk,
                                in_flight=d), "items_per_second", unit="") for d in deep]
                    + [cell(one(results, "task_rate", impl=p, call=call, chunksize=chunk),
                            "items_per_second", unit="") for p in PEER_NAMES])
    header = (["call", "chunksize", "items per task", "pipepool (defaults)"]
              + [f"pipepool, in_flight {d}" for d in deep] + list(PEER_NAMES.values()))
    workers = calls[0]["params"].get("workers", "?")
    return (f"## Task rate (square(int), {workers} workers)\n\n"
            "Tasks per second. `defaults`: Options with only processes set. `in_flight N`: "
            "demand_max_in_flight = N: with 1 a worker waits a round trip for each task, with 16 "
            "it has up to 16 queued.\n\n"
            + table(header, rows) + "\n")


def head_of_line_section(results):
    found = select(results, "head_of_line")
    if not found:
        return ""
    rows = []
    for r in found:
        p = r["params"]
        if r["status"] != "ok":
            rows.append([p["scheduler"], "-", "-", r["status"]])
            continue
        rows.append([p["scheduler"], f"{r['makespan_s']:.3f} s", f"{r['optimum_s']:.3f} s",
                     f"{r['makespan_over_optimum']:.2f}"])
    p = found[0]["params"]
    note = ("(Python's original durations)" if p.get("long_ms") == "2000"
            else "(Python's [2.0] + [0.1] * 7 scaled down to save time)")
    return (f"## Head of line: one {p.get('long_ms')} ms task then 7 of {p.get('short_ms')} ms, "
            f"2 workers {note}\n\nOptimum = the long task (the short ones fit on the other "
            "worker).\n\n" + table(["scheduler", "makespan", "optimum", "makespan / optimum"],
                                   rows) + "\n")


def simulator_section(results):
    rows = []
    for r in select(results, "pipe_model"):
        rows.append([f"PipeModel write + read, {size_text(r['params']['size'])}",
                     rate_text(r.get("ops_per_second"), "ops") if r["status"] == "ok"
                     else r["status"], "ops/s of CPU time"])
    for r in select(results, "simulator"):
        params = r["params"]
        if "exhaustive" in params:  # simulator/exhaustive:STRATEGY/SCHEDULER/workers:W/map_async:N
            what = (f"simulator exhaustive (bound 2), {params['exhaustive']}, "
                    f"{params.get('workers', '?')} workers, map_async {params.get('map_async', '?')}"
                    " 70000 70000")
            if r["status"] != "ok":
                rows.append([what, r["status"], r.get("message", "")])
                continue
            rows.append([what,
                         f"{rate_text(r.get('schedules_per_second'), '')} schedules, "
                         f"{rate_text(r.get('distinct_states_per_second'), '')} distinct states",
                         ("certified complete" if r.get("complete") else "NOT complete at its "
                          "run limit") + f", {int(r.get('schedules', 0))} schedules"])
            continue
        if r["status"] != "ok":
            rows.append([f"simulator, {params.get('scenario', '?')}", r["status"],
                         r.get("message", "")])
            continue
        rows.append([f"simulator explore (random), {r['params']['scenario']}",
                     f"{rate_text(r.get('steps_per_second'), '')} steps, "
                     f"{rate_text(r.get('pipe_ops_per_second'), '')} pipe ops, "
                     f"{rate_text(r.get('schedules_per_second'), '')} schedules",
                     f"{r.get('deadlocked_fraction', 0):.0%} of runs deadlocked"])
    if not rows:
        return ("## Simulator\n\nNot built (no pipepool_sim target in this tree).\n")
    return "## Simulator speed (one core)\n\n" + table(["what", "rate", "note"], rows) + "\n"


def deadlock_section(results):
    dead = [r for r in results if r["status"] == "deadlock"]
    errors = [r for r in results if r["status"] == "error"]
    text = []
    if dead:
        text.append(f"## Deadlocks ({len(dead)} cases)\n")
        text.append("Expected for Unbatched and Batched beyond their threshold; each was stopped "
                    "by the watchdog and the pool terminated. Where each process slept:\n")
        for r in dead:
            text.append(f"- `{short_name(r)}`: {r['message']}")
        text.append("")
    if errors:
        text.append(f"## Errors ({len(errors)} cases)\n")
        for r in errors:
            text.append(f"- `{short_name(r)}`: {r['message']}")
        text.append("")
    return "\n".join(text)


def short_name(result):
    return result["family"] + "/" + "/".join(f"{k}:{v}" for k, v in result["params"].items())


def render(results, machine_text, contexts, jobs=None):
    context = contexts[0] if contexts else {}
    parts = ["# pipepool benchmark summary\n"]
    parts.append(f"Mode `{context.get('pipepool_mode', '?')}`, run {context.get('date', '?')}, "
                 f"load average at start {context.get('load_avg', '?')}. Regenerate with "
                 "`bench/run.sh`; bench/README.md explains each table.\n")
    if machine_text:
        parts.append("Machine:\n\n```\n" + machine_text.strip() + "\n```\n")
    if context.get("library_build_type") == "debug":
        parts.append("(Google Benchmark reports that its own library was built as debug; "
                     "this does not affect the code measured.)\n")
    for section in (targets_section(results, jobs), echo_section(results, "symmetric"),
                    echo_section(results, "large_in"), echo_section(results, "large_out"),
                    peers_section(results), task_rate_section(results),
                    head_of_line_section(results), jobs_section(jobs),
                    simulator_section(results), deadlock_section(results)):
        if section:
            parts.append(section)
    return "\n".join(parts)


# ---- the smoke check --------------------------------------------------------------------------

def check(results, expected_names, require_peers):
    problems = []
    by_name = {r["name"]: r for r in results}
    for name in expected_names:
        r = by_name.get(name)
        if r is None:
            problems.append(f"no result for {name}")
        elif r["status"] == "error":
            problems.append(f"{name}: error: {r['message']}")
        elif r["status"] == "ok" and not any(
                r.get(f) for f in ("bytes_per_second", "items_per_second", "makespan_s",
                                   "ops_per_second", "steps_per_second")):
            problems.append(f"{name}: no figure")
    for strategy in STRATEGIES:
        if not any(r["status"] == "ok" for r in select(results, "echo", strategy=strategy)):
            problems.append(f"strategy {strategy}: no echo figure at all")
    if require_peers:
        for peer in PEER_NAMES:
            for family, field in (("echo", "bytes_per_second"), ("task_rate", "items_per_second")):
                found = select(results, family, impl=peer)
                if not found:
                    problems.append(f"peer {peer}: no {family} result")
                problems += [f"{r['name']}: {r['status']} {r['message']}" for r in found
                             if r["status"] != "ok" or not r.get(field)]
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", nargs="+", required=True, help="JSON files")
    parser.add_argument("--machine", help="text file describing the machine")
    parser.add_argument("--out", help="write the markdown here (default: stdout)")
    parser.add_argument("--jobs", help="whole_jobs.py's JSON (optional)")
    parser.add_argument("--check", help="benchmark names that must all have a figure")
    parser.add_argument("--require-peers", action="store_true",
                        help="with --check: the Python peers must have run too")
    args = parser.parse_args()

    try:
        results = load_results(args.results)
        contexts = [read_json(path).get("context", {}) for path in args.results]
        jobs = read_json(args.jobs) if args.jobs else None
    except ReportError as error:
        print(f"report.py: error: {error}", file=sys.stderr)
        return 1
    machine_text = ""
    if args.machine:
        with open(args.machine) as f:
            machine_text = f.read()
    text = render(results, machine_text, contexts, jobs)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)

    if args.check:
        with open(args.check) as f:
            expected = [line.strip() for line in f if line.strip()]
        problems = check(results, expected, args.require_peers)
        if jobs:
            problems += [f"whole job {e['job']} {e['impl']} (round {e['round'] + 1}): "
                         f"{e.get('error', e['status'])}" for e in jobs["jobs"]
                         if e["status"] != "ok"]
        if problems:
            print(f"report.py: check FAILED ({len(problems)} problems):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        dead = sum(1 for r in results if r["status"] == "deadlock")
        print(f"report.py: check passed: {len(expected)} benchmarks, each a figure or a deadlock "
              f"mark ({dead} deadlocks)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
