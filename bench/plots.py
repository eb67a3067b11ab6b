"""PNG plots of a side-by-side run (runs in the bench environment, where matplotlib is):

.bench-venv/bin/python -m bench.plots bench/results/side_by_side.json docs/img
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "taskmanager": ["#1f4e79", "#2e75b6", "#5b9bd5", "#9dc3e6"],
    # Celery, RQ, Dramatiq; the same three on the durable Redis (lighter); procrastinate; spare.
    "other": ["#c55a11", "#548235", "#7f6000", "#f4b183", "#a9d18e", "#ffd966", "#7030a0", "#a5a5a5"],
}


def _colors(systems: dict[str, Any]) -> dict[str, str]:
    out, tm, other = {}, iter(COLORS["taskmanager"]), iter(COLORS["other"])
    for name, system in systems.items():
        out[name] = next(tm if system["family"] == "taskmanager" else other)
    return out


def _errors(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return 0.0, 0.0, 0.0
    mid = statistics.median(values)
    return mid, mid - min(values), max(values) - mid


def _bars(ax: Any, systems: dict[str, Any], groups: list[str], get: Any, colors: dict[str, str]) -> None:
    width = 0.8 / max(1, len(systems))
    for i, (name, system) in enumerate(systems.items()):
        mids, lows, highs = zip(*(_errors(get(system, g)) for g in groups), strict=True)
        xs = [g + (i - (len(systems) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, mids, width, yerr=[lows, highs], capsize=2, label=system["label"], color=colors[name])
    ax.set_xticks(range(len(groups)))


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend below the axes included
    plt.close(fig)


def _legend_below(ax: Any) -> None:
    """The legend under the plot: with eleven systems it would hide the bars inside it."""
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)


def throughput(results: dict[str, Any], out: Path) -> None:
    systems = results["systems"]
    procs = results["config"]["processes"] + results["config"].get("scaling_processes", [])
    colors = _colors(systems)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    _bars(ax, systems, [str(p) for p in procs], lambda s, p: s.get("process", {}).get(p, []), colors)
    ax.set_xticklabels([f"{p} worker process{'es' if p > 1 else ''}" for p in procs])
    raw = results.get("raw_pg", {}).get("cycle_per_s")
    if raw:
        ax.axhline(statistics.median(raw), color="black", linestyle="--", linewidth=1)
        label = " raw PostgreSQL create+claim+complete"
        ax.text(-0.45, statistics.median(raw), label, va="bottom", fontsize=8)
    ax.set_ylabel("no-op tasks processed per second")
    tasks = results["config"]["tasks"]
    ax.set_title(f"Processing rate, {tasks:,} no-op tasks (median; bars: min-max of runs)")
    _legend_below(ax)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out / "bench_throughput.png")


def enqueue(results: dict[str, Any], out: Path) -> None:
    systems = results["systems"]
    colors = _colors(systems)
    fig, ax = plt.subplots(figsize=(11, 5))
    _bars(ax, systems, ["enqueue_single", "enqueue_batch"], lambda s, k: s.get(k, []), colors)
    ax.set_xticklabels(["one call per task", "batch call (where the system has one)"])
    ax.set_yscale("log")
    ax.set_ylabel("tasks enqueued per second (log)")
    ax.set_title("Enqueue rate from one process")
    _legend_below(ax)
    ax.grid(axis="y", alpha=0.3, which="both")
    _save(fig, out / "bench_enqueue.png")


def latency(results: dict[str, Any], out: Path) -> None:
    systems = results["systems"]
    colors = _colors(systems)
    fig, ax = plt.subplots(figsize=(11, 5))
    _bars(
        ax,
        systems,
        ["p50", "p95", "p99"],
        lambda s, q: [r[q] for r in s.get("latency_ms", []) if q in r],
        colors,
    )
    ax.set_xticklabels(["p50", "p95", "p99"])
    ax.set_yscale("log")
    ax.axhline(50, color="black", linestyle="--", linewidth=1)
    ax.set_ylabel("ms from create to handler start (log)")
    ax.set_title(f"End-to-end latency at {results['config']['latency_rate']:.0f} tasks/s")
    _legend_below(ax)
    ax.grid(axis="y", alpha=0.3, which="both")
    _save(fig, out / "bench_latency.png")


def scaling(results: dict[str, Any], out: Path) -> None:
    systems = results["systems"]
    procs = results["config"]["processes"] + results["config"].get("scaling_processes", [])
    colors = _colors(systems)
    fig, axes = plt.subplots(1, 2 if results.get("table_size") else 1, figsize=(12, 4.5), squeeze=False)
    ax = axes[0][0]
    for name, system in systems.items():
        points = [(p, statistics.median(v)) for p in procs if (v := system.get("process", {}).get(str(p)))]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=system["label"], color=colors[name])
    ax.set_xscale("log", base=2)
    ax.set_xticks(procs, [str(p) for p in procs])
    ax.set_xlabel("worker processes")
    ax.set_ylabel("tasks/s")
    ax.set_title("Processing rate as workers grow")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if results.get("table_size"):
        ax = axes[0][1]
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            points = [(r["rows"], r[key]) for r in results["table_size"] if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=key.replace("_ms", ""))
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("rows in the tasks table")
        ax.set_ylabel("ms per claim (16 claimers)")
        ax.set_title("TaskManager claim latency as the table grows (PostgreSQL)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, out / "bench_scaling.png")


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    results = json.loads(source.read_text())
    out.mkdir(parents=True, exist_ok=True)
    for draw in (throughput, enqueue, latency, scaling):
        draw(results, out)


if __name__ == "__main__":
    main()
