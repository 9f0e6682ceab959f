#!/usr/bin/env python3
"""Draws the PNG of `pipepool tiers --plot FILE` from its JSON (the --json output).

    python3 tools/tiers_plot.py tiers.json tiers.png

Left: the throttled fraction of wall time per tier (the cgroup's cpu.stat), with the published
Lambda figures for a spin loop. Right: the workload's own figure per tier: payload MB/s (echo),
tasks/s (rate), or the fraction of wall time the spinning loop saw itself paused (spin).
Tiers this machine cannot emulate faithfully (Lambda shows more CPUs there) are drawn hollow.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PUBLISHED = {128: 0.928, 256: 0.869, 512: 0.711, 1024: 0.421, 1769: 0.032}


def series(runs):
    """Runs grouped by strategy (and payload size), in tier order."""
    groups = {}
    for run in runs:
        label = run["strategy"] if run["strategy"] != "none" else run["workload"]
        if "payload_bytes" in run:
            size = run["payload_bytes"]
            label += f" {size // 1024} KiB" if size >= 1024 else f" {size} B"
        groups.setdefault(label, []).append(run)
    return {k: sorted(v, key=lambda r: r["tier_mb"]) for k, v in groups.items()}


def plot_line(axis, runs, key, label, scale=1.0):
    xs = [r["tier_mb"] for r in runs if key in r]
    ys = [r[key] * scale for r in runs if key in r]
    line, = axis.plot(xs, ys, "-", label=label)
    for r in runs:
        if key in r:
            axis.plot(r["tier_mb"], r[key] * scale, "o", color=line.get_color(),
                      fillstyle="full" if r["emulated_faithfully"] else "none")


def main():
    data = json.load(open(sys.argv[1]))
    runs = data["runs"]
    workload = data["workload"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    groups = series(runs)
    for label, group in groups.items():
        plot_line(left, group, "throttled_fraction", label, 100)
    if workload == "spin":
        left.plot(list(PUBLISHED), [100 * v for v in PUBLISHED.values()], "kx", markersize=9,
                  label="published (real Lambda)")
    left.set(xscale="log", xlabel="tier (MB)", ylabel="throttled, % of wall time",
             title="throttling (cgroup cpu.stat)", ylim=(-2, 102))
    figure = {"echo": ("bytes_per_s", 1e-6, "payload MB/s", "log"),
              "rate": ("tasks_per_s", 1, "tasks/s", "log"),
              "spin": ("paused_fraction", 100, "loop paused, % of wall time", "linear")}
    key, scale, ylabel, yscale = figure.get(workload, ("wall_s", 1, "wall time (s)", "linear"))
    for label, group in groups.items():
        plot_line(right, group, key, label, scale)
    if workload == "spin":
        right.plot(list(PUBLISHED), [100 * v for v in PUBLISHED.values()], "kx", markersize=9,
                   label="published (real Lambda)")
    right.set(xscale="log", yscale=yscale, xlabel="tier (MB)", ylabel=ylabel, title=workload)
    for axis in (left, right):
        tiers = sorted({r["tier_mb"] for r in runs})
        axis.set_xticks(tiers)
        axis.set_xticklabels([str(mb) for mb in tiers], rotation=45)
        axis.minorticks_off()
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(f"pipepool tiers: emulated Lambda tiers, cgroup {data['cgroup_version']}, "
                 f"{data['machine_cpus']} CPUs (hollow: more vCPUs than this machine has)")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
