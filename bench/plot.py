#!/usr/bin/python3
"""Draws bench/suite's figures from its JSON: one PNG per workload, kernel and ustack side by side.

Usage: /usr/bin/python3 bench/plot.py [LATEST_JSON [OUT_DIR]]
  (defaults: bench/results/latest.json, and the folder it is in)

Writes rr.png (requests/s against connections), rr_latency.png (p50/p99/p99.9 per connection
count), cps.png, bulk.png (Gbit/s and CPU cycles per byte), idle.png (server memory per
connection and the active connections' latency against the number of idle connections, log x)
and udp.png. A point that failed or was not run is left out of its plot. Needs matplotlib
(Debian's python3-matplotlib).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

THOUSANDS = FuncFormatter(lambda v, _: f"{v:,.0f}")

# One colour per setup, the same in every plot: ustack in warm colours, the kernel in cool ones.
COLOURS = {"ustack-memif": "#d62728", "ustack-tap": "#ff7f0e", "kernel-veth": "#1f77b4", "kernel-lo": "#17becf"}
MARKERS = {"ustack-memif": "o", "ustack-tap": "s", "kernel-veth": "^", "kernel-lo": "v"}


def ok(r):
    return r is not None and not r.get("failed") and not r.get("errors")


def value(res, setup, point, key):
    r = res.get(setup, {}).get(point)
    return r[key] if ok(r) and r.get(key) is not None else None


def subtitle(doc):
    return (f"bench/suite: {doc['host']['cpus']} CPUs, Linux {doc['host']['kernel']}; {doc['seconds_per_run']:g} s per "
            f"run, median of {doc['runs_per_point']}; load average {doc['host']['load_before'].split()[0]} before; "
            f"{doc['date'][:10]}")


def bars(ax, setups, values, spec, ylabel):
    """One bar per setup (a missing value leaves its place empty), each labelled with its value
    (formatted by the format spec `spec`, e.g. ",.0f")."""
    xs = range(len(setups))
    heights = [v if v is not None else 0 for v in values]
    rects = ax.bar(xs, heights, color=[COLOURS.get(s, "grey") for s in setups])
    for rect, v in zip(rects, values):
        ax.annotate("n/a" if v is None else format(v, spec), (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(setups)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    if spec.startswith(","):
        ax.yaxis.set_major_formatter(THOUSANDS)


def save(fig, out_dir, name, doc):
    fig.text(0.99, 0.005, subtitle(doc), ha="right", va="bottom", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def plot_rr(doc, out_dir):
    res, setups, conns = doc["results"], doc["setups_run"], [1, 16, 256]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for s in setups:
        pts = [(c, value(res, s, f"rr{c}", "requests_per_s")) for c in conns]
        pts = [(c, v) for c, v in pts if v is not None]
        if pts:
            drawn = True
            ax.plot([c for c, _ in pts], [v for _, v in pts], marker=MARKERS.get(s, "o"), color=COLOURS.get(s),
                    label=s)
    if not drawn:
        return plt.close(fig)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(conns)
    ax.set_xticklabels([str(c) for c in conns])
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.set_xlabel("connections")
    ax.set_ylabel("requests/s (64-byte request/response)")
    ax.set_title("Request/response rate: kernel vs ustack")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save(fig, out_dir, "rr.png", doc)


def plot_rr_latency(doc, out_dir):
    res, setups, conns = doc["results"], doc["setups_run"], [1, 16, 256]
    pcts = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]
    fig, axes = plt.subplots(1, len(conns), figsize=(12, 4.5), sharey=True)
    drawn = False
    for ax, c in zip(axes, conns):
        for s in setups:
            pts = [(j, value(res, s, f"rr{c}", key)) for j, (key, _) in enumerate(pcts)]
            pts = [(j, v) for j, v in pts if v is not None]
            if not pts:
                continue
            drawn = True
            ax.plot([j for j, _ in pts], [v for _, v in pts], marker=MARKERS.get(s, "o"), color=COLOURS.get(s), label=s)
        ax.set_xticks(range(len(pcts)))
        ax.set_xticklabels([n for _, n in pcts])
        ax.set_xlim(-0.3, len(pcts) - 0.7)
        ax.set_yscale("log")
        ax.set_xlabel("percentile")
        ax.set_title(f"{c} connection{'s' if c > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        return plt.close(fig)
    axes[0].set_ylabel("latency, µs (log)")
    axes[0].legend(fontsize=8)
    fig.suptitle("64-byte request/response latency percentiles")
    save(fig, out_dir, "rr_latency.png", doc)


def plot_rate_bars(doc, out_dir, workload, key, ylabel, title, filename):
    """One bar per setup: a rate of one workload."""
    res, setups = doc["results"], doc["setups_run"]
    vals = [value(res, s, workload, key) for s in setups]
    if all(v is None for v in vals):
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars(ax, setups, vals, ",.0f", ylabel)
    ax.set_title(title)
    save(fig, out_dir, filename, doc)


def plot_cps(doc, out_dir):
    plot_rate_bars(doc, out_dir, "cps", "requests_per_s", "connections/s (connect, 64-byte echo, close; 8 in flight)",
                   "Short connections", "cps.png")


def plot_bulk(doc, out_dir):
    res, setups = doc["results"], doc["setups_run"]
    gbit = [value(res, s, "bulk", "gbit_per_s") for s in setups]
    cpb = [value(res, s, "bulk", "cycles_per_byte") for s in setups]
    if all(v is None for v in gbit):
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    bars(a, setups, gbit, ".2f", "Gbit/s echoed (one way)")
    a.set_title("Bulk, one connection: throughput")
    bars(b, setups, cpb, ".1f", "CPU cycles per byte echoed (client + server + softirq)")
    b.set_title("Bulk: CPU cost")
    save(fig, out_dir, "bulk.png", doc)


def plot_idle(doc, out_dir):
    res, setups = doc["results"], doc["setups_run"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    drawn = False
    for s in setups:
        idle = res.get(s, {}).get("idle", {})
        ns = sorted(int(n) for n in idle)
        mem = [(n, idle[str(n)].get("bytes_per_conn")) for n in ns if n > 0]
        mem = [(n, v) for n, v in mem if v is not None]
        if mem:
            drawn = True
            a.plot([n for n, _ in mem], [v for _, v in mem], marker=MARKERS.get(s, "o"), color=COLOURS.get(s), label=s)
        for key, style, name in (("p50_us", "-", "p50"), ("p99_us", "--", "p99")):
            lat = []
            for n in ns:
                g = idle[str(n)].get("loadgen")
                if ok(g) and g.get(key) is not None:
                    lat.append((max(n, 1), g[key]))  # N = 0 drawn at 1 on the log axis
            if lat:
                drawn = True
                b.plot([n for n, _ in lat], [v for _, v in lat], style, marker=MARKERS.get(s, "o"),
                       color=COLOURS.get(s), label=f"{s} {name}")
    if not drawn:
        return plt.close(fig)
    skipped = [f"{s}: N = {int(n):,} not run" for s in setups for n, r in res.get(s, {}).get("idle", {}).items()
               if r.get("skipped")]
    if skipped:  # why is in the JSON (e.g. RLIMIT_NOFILE)
        a.text(0.02, 0.02, "\n".join(skipped) + "\n(see latest.json)", transform=a.transAxes, fontsize=7, color="grey")
    a.set_xscale("log")
    a.set_ylim(bottom=0)
    a.set_xlabel("idle connections (N)")
    a.set_ylabel("server memory per connection, bytes")
    a.set_title("Memory per idle connection")
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("idle connections (N; 0 drawn at 1)")
    b.set_ylabel(f"latency of the {doc.get('idle', {}).get('active', '')} active connections, µs")
    b.set_title("64-byte request/response beside N idle connections")
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=7)
    save(fig, out_dir, "idle.png", doc)


def plot_udp(doc, out_dir):
    plot_rate_bars(doc, out_dir, "udp", "echoed_per_s", "64-byte datagrams echoed per second",
                   "UDP packet rate (at most 128 unanswered)", "udp.png")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                              "latest.json")
    if path in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        doc = json.load(f)
    for plot in (plot_rr, plot_rr_latency, plot_cps, plot_bulk, plot_idle, plot_udp):
        plot(doc, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
