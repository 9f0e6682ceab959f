#!/usr/bin/env python3
"""PNG plots of a benchmark run (matplotlib).

Usage:
  plot.py --results pipepool.json peers.json --out-dir DIR

Writes:
  echo_throughput.png   symmetric echo, bytes/s against payload size: one panel per worker count
                        and pipe capacity, one line per strategy (and calls pattern), the raw
                        pipe as a dashed black line, Python's multiprocessing.Pool dotted; a
                        deadlocked case is a red x on the panel's floor.
  echo_vs_raw.png       each case's fraction of the raw pipe (from its paired raw iterations),
                        with the 0.8 target line.
  task_rate.png         items/s per call and chunking, pipepool against Python's pools.

Exits 2 with one line on stderr (no traceback) when matplotlib is missing or plotting fails.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

STYLES = {  # (strategy, options, calls) -> label, color, line style
    ("epoll", "round_robin", "1"): ("epoll", "tab:blue", "-"),
    ("epoll", "round_robin", "2"): ("epoll, 2 calls", "tab:blue", "--"),
    ("epoll", "default", "1"): ("epoll, default options", "tab:cyan", "-"),
    ("batched", "round_robin", "1"): ("batched", "tab:orange", "-"),
    ("batched", "round_robin", "2"): ("batched, 2 calls", "tab:orange", "--"),
    ("unbatched", "round_robin", "1"): ("unbatched", "tab:green", "-"),
    ("unbatched", "round_robin", "2"): ("unbatched, 2 calls", "tab:green", "--"),
    ("zerocopy", "round_robin", "1"): ("zerocopy", "tab:red", "-"),
    ("zerocopy", "round_robin", "2"): ("zerocopy, 2 calls", "tab:red", "--"),
    ("zerocopy", "default", "1"): ("zerocopy, default options", "tab:pink", "-"),
}
GiB = float(1 << 30)


def fail(message):
    print(f"plot.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def panels(results):
    loads = [l for l in report.echo_loads(results) if l[0] == "symmetric"]
    workers = sorted({w for _, w, _, _ in loads}, key=int)
    pipes = [p for p in ("default", "enlarged") if any(l[2] == p for l in loads)]
    return loads, workers, pipes


def series(results, workers, pipe, field="bytes_per_second", **params):
    """[(size, field's value or None for a deadlock)] for one line of one panel."""
    points = []
    for r in report.select(results, "echo", shape="symmetric", workers=workers, **params):
        # Python's pools always have 64 KiB pipes: they are drawn on every panel.
        if r["params"].get("impl") not in report.PEER_NAMES and r["params"]["pipe"] != pipe:
            continue
        size = int(r["params"]["size"])
        if r["status"] == "ok" and r.get(field) is not None:
            points.append((size, r[field]))
        elif r["status"] == "deadlock":
            points.append((size, None))
    return sorted(points)


def echo_figures(plt, ticker, results, out_dir):
    loads, workers, pipes = panels(results)
    if not loads:
        return []
    written = []
    for kind in ("throughput", "vs_raw"):
        fig, axes = plt.subplots(len(workers), len(pipes), squeeze=False, sharex=True,
                                 figsize=(5.2 * len(pipes), 3.4 * len(workers)))
        for row, w in enumerate(workers):
            for col, pipe in enumerate(pipes):
                ax = axes[row][col]
                raw = dict(series(results, w, pipe, impl="raw_pipe"))
                field = "bytes_per_second" if kind == "throughput" else "fraction_of_raw"
                lines = [(STYLES[key], series(results, w, pipe, field, impl="pool",
                                              strategy=key[0], options=key[1], calls=key[2]))
                         for key in STYLES]
                peer = series(results, w, pipe, impl="mp_pool")
                if kind == "throughput":
                    if raw:
                        ax.plot(list(raw), [v / GiB for v in raw.values()], "k--", lw=2,
                                label="raw pipe")
                    if peer:
                        ax.plot([s for s, v in peer if v], [v / GiB for s, v in peer if v],
                                ":", color="tab:purple", marker=".",
                                label="mp.Pool (64 KiB pipes)")
                for (label, color, style), points in lines:
                    ok = [(s, v if kind == "vs_raw" else v / GiB) for s, v in points if v]
                    if ok:
                        ax.plot(*zip(*ok), style, color=color, marker="o", ms=3, label=label)
                    dead = [s for s, v in points if v is None]
                    if dead:  # on the panel's floor, whatever the y scale
                        ax.plot(dead, [0.04] * len(dead), "x", color="red", ms=8, mew=2,
                                transform=ax.get_xaxis_transform(), label="deadlock")
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(
                    lambda x, _: report.size_text(x) if x >= 1 else ""))
                ax.tick_params(axis="x", labelsize=7)
                if kind == "throughput":
                    ax.set_yscale("log")
                    ax.set_ylabel("GiB/s (in + out)")
                else:
                    ax.axhline(report.RAW_FRACTION_TARGET, color="gray", lw=1, ls=":")
                    ax.set_ylim(0, 1.2)
                    ax.set_ylabel("fraction of raw pipe")
                capacity = "64 KiB pipes" if pipe == "default" else "enlarged pipes"
                ax.set_title(f"{w} worker(s), {capacity}", fontsize=10)
                ax.grid(True, which="major", alpha=0.3)
                if row == len(workers) - 1:
                    ax.set_xlabel("payload bytes per message")
        handles, labels = {}, []
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                if label not in handles:
                    handles[label] = handle
                    labels.append(label)
        fig.legend([handles[l] for l in labels], labels, loc="lower center",
                   ncol=min(5, len(labels)), fontsize=8, frameon=False)
        title = ("Echo throughput, 2 messages per worker" if kind == "throughput"
                 else "Echo throughput as a fraction of the raw pipe (target 0.8 dotted)")
        fig.suptitle(title, fontsize=11)
        fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(labels) // 5), 1, 0.97))
        path = os.path.join(out_dir, f"echo_{kind}.png")
        fig.savefig(path, dpi=72)
        plt.close(fig)
        written.append(path)
    return written


def task_rate_figure(plt, results, out_dir):
    pool = report.select(results, "task_rate", impl="pool", in_flight="default")
    if not pool:
        return []
    groups = [(r["params"]["call"], r["params"]["chunksize"]) for r in pool]
    impls = [("pool:default", "pipepool (default options)", "tab:blue"),
             ("pool:1", "pipepool, in_flight 1", "tab:green"),
             ("pool:16", "pipepool, in_flight 16", "tab:cyan")] + [
        (p, name, color) for (p, name), color in zip(report.PEER_NAMES.items(),
                                                     ("tab:purple", "tab:gray"))]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / len(impls)
    for i, (impl, name, color) in enumerate(impls):
        xs, ys = [], []
        for g, (call, chunk) in enumerate(groups):
            if impl.startswith("pool"):
                r = report.one(results, "task_rate", impl="pool", call=call, chunksize=chunk,
                               in_flight=impl.split(":")[1])
            else:
                r = report.one(results, "task_rate", impl=impl, call=call, chunksize=chunk)
            if r and r["status"] == "ok":
                xs.append(g + (i - (len(impls) - 1) / 2) * width)
                ys.append(r["items_per_second"])
        if xs:
            ax.bar(xs, ys, width, label=name, color=color)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{c}\nchunksize {k}" for c, k in groups], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("tasks per second")
    ax.set_title("Task rate, square(int), 2 workers", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "task_rate.png")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return [path]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", nargs="+", required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker as ticker
    except ImportError as error:
        fail(f"matplotlib is not available to {sys.executable} ({error}); install it "
             "(Debian: apt-get install python3-matplotlib) or run bench/run.sh --no-plots")
    try:
        results = report.load_results(args.results)
    except report.ReportError as error:
        fail(str(error))
    try:
        os.makedirs(args.out_dir, exist_ok=True)
        written = echo_figures(plt, ticker, results, args.out_dir)
        written += task_rate_figure(plt, results, args.out_dir)
    except Exception as error:  # one clear line instead of a traceback
        fail(f"plotting failed: {type(error).__name__}: {error}")
    for path in written:
        print(f"plot.py: wrote {path}")


if __name__ == "__main__":
    main()
