"""The side-by-side benchmark (issue 6): TaskManager against Celery, RQ, Dramatiq and procrastinate.

    python -m bench run            # every figure of docs/performance.md (~1 hour)
    python -m bench run --quick    # a smoke check, under 5 minutes
    python -m bench report         # print the tables of bench/results/side_by_side.json again
    python -m bench plots          # redraw docs/img/bench_*.png from it

``run`` creates the bench environment (``.bench-venv``, from ``bench/requirements.txt``) if it is
missing, measures every system on this machine's PostgreSQL and Redis in one run — then the claim
latency as the table grows, TaskManager's end-to-end throughput with the CPU each process spends
per task, its long-poll latency (issue 4) and a py-spy profile of its server (``bench.profile``,
also written to ``profile_postgresql.json`` beside the results) — writes
``bench/results/side_by_side.json`` (``--output``) and its tables as markdown next to it, draws
the plots into ``docs/img/`` and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import raw_pg, raw_sqlite, report, venv

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUTPUT = RESULTS / "side_by_side.json"
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "img"

FULL = {
    "tasks": 10_000,
    "runs": 3,
    "processes": [1, 2],
    "scaling_processes": [4, 8],
    "latency_tasks": 1_000,
    "latency_rate": 100.0,
    "table_rows": [10_000, 100_000, 1_000_000],
    "claims": 3_000,
    "long_poll_rounds": 50,
    "long_poll_tasks": 500,
    "profile_tasks": 3_000,
}
QUICK = {
    "tasks": 500,
    "runs": 1,
    "processes": [2],  # a smoke check: every system with several worker processes, once
    "scaling_processes": [],
    "latency_tasks": 100,
    "latency_rate": 100.0,
    "table_rows": [10_000],
    "claims": 300,
    "long_poll_rounds": 10,
    "long_poll_tasks": 50,
    "profile_tasks": 300,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timeout(tasks: int) -> float:
    return 120 + tasks / 20


def measure_system(
    system: Any, config: dict[str, Any], processes: list[int], out: dict[str, Any], *, enqueue: bool = True
) -> None:
    """One run of one system: enqueue and process with each process count, then latency."""
    tasks = config["tasks"]
    for index, count in enumerate(processes):
        # The first cycle measures one call per task, the second the batch call (where there is
        # one); the others fill the queue the fastest way without recording it.
        mode = ("single", "batch")[index] if index < 2 and enqueue and system.measure_enqueue else "fill"
        if mode == "batch" and not system.batch:
            mode = "fill"
        with system.session() as session:
            call = ("batch" if system.batch else "single") if mode == "fill" else mode
            enqueued = session.enqueue(call, tasks)
            if mode != "fill":
                out.setdefault(f"enqueue_{mode}", []).append(enqueued)
            rate = session.process(tasks, count, _timeout(tasks))
            out.setdefault("process", {}).setdefault(str(count), []).append(rate)
            log(f"  {system.name}: {count} proc {rate:,.0f}/s (enqueue {call} {enqueued:,.0f}/s)")
    if not config["latency_tasks"]:
        return
    with system.session() as session:
        samples = session.latency(config["latency_tasks"], config["latency_rate"], _timeout(tasks))
    summary = {f"p{q}": percentile(samples, q / 100) for q in (50, 95, 99)}
    summary["max"] = max(samples)
    out.setdefault("latency_ms", []).append(summary)
    log(f"  {system.name}: latency p50 {summary['p50']:.1f} ms p95 {summary['p95']:.1f} ms")


def table_size_scaling(config: dict[str, Any], errors: list[str]) -> list[dict[str, Any]]:
    from bench import claim_latency

    rows = []
    for size in config["table_rows"]:
        try:
            result = asyncio.run(claim_latency.measure(size, config["claims"], 16))
        except Exception as exc:  # e.g. the 1 M-row fill outlasting the store's statement timeout
            log(f"  {size:,} rows FAILED: {exc!r}")
            errors.append(f"table size {size:,}: {exc!r}")
            continue
        # 16 claimers each waiting mean_ms per claim: claims per second through the store.
        result["claims_per_s"] = round(16 * 1000 / result["mean_ms"])
        log(f"  {size:,} rows: claim p95 {result['p95_ms']} ms, ~{result['claims_per_s']} claims/s")
        rows.append(result)
    return rows


def issue4_figures(config: dict[str, Any], errors: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The figures issue 4 asks for, measured by the same run: end-to-end throughput with the CPU
    each process group spends per task (``bench.throughput``), and long-poll latency, bare and
    through a worker (``bench.long_poll``)."""
    from bench import long_poll, throughput

    figures: dict[str, list[dict[str, Any]]] = {"throughput": [], "long_poll": [], "long_poll_worker": []}
    steps: list[tuple[str, str, Any]] = []
    for kind in ("sqlite", "postgresql"):
        steps.append(("throughput", kind, lambda k=kind: throughput.measure(k, config["tasks"], 2, 8)))
        steps.append(("long_poll", kind, lambda k=kind: long_poll.measure(k, config["long_poll_rounds"])))
        for concurrency in (1, 100):
            steps.append(
                (
                    "long_poll_worker",
                    kind,
                    lambda k=kind, c=concurrency: long_poll.measure_worker(
                        k, config["long_poll_tasks"], config["latency_rate"], c
                    ),
                )
            )
    for key, kind, measure in steps:
        try:
            result = measure()
        except Exception as exc:
            log(f"  {key} on {kind} FAILED: {exc!r}")
            errors.append(f"{key}, {kind}: {exc!r}")
            traceback.print_exc()
            continue
        log(f"  {key} on {kind}: {result}")
        figures[key].append(result)
    return figures


def server_profile(config: dict[str, Any], directory: Path, errors: list[str]) -> dict[str, Any]:
    """``bench.profile``'s statement counts and py-spy profiles of the server under each load
    (also written to ``profile_postgresql.json`` beside the results)."""
    from bench import profile

    try:
        return profile.record("postgresql", config["profile_tasks"], directory)
    except Exception as exc:
        log(f"  profile FAILED: {exc!r}")
        errors.append(f"profile: {exc!r}")
        traceback.print_exc()
        return {}


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "load average at start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{mem:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def server_versions() -> dict[str, str]:
    import taskmanager

    versions = {"taskmanager": taskmanager.__version__}
    pg = subprocess.run(
        ["psql", os.environ.get("TASKMANAGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
         "-Atc", "SHOW server_version"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    versions["postgresql"] = pg.stdout.strip().split()[0] if pg.returncode == 0 else "unknown"
    from bench.systems.counting import Redis

    redis = Redis()
    info = redis.execute(("INFO", "server"))[0]
    redis.close()
    versions["redis"] = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("redis_version")),
        "unknown",
    )
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        versions["taskmanager_commit"] = commit.stdout.strip()
    except OSError:
        pass
    return versions


def run(args: argparse.Namespace) -> int:
    config = dict(QUICK if args.quick else FULL)
    for key in ("tasks", "runs", "latency_tasks"):
        if getattr(args, key):
            config[key] = getattr(args, key)
    venv.ensure()
    from bench.systems.drivers import all_systems

    systems = [s for s in all_systems() if not args.systems or s.name in args.systems.split(",")]
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench run" + (" --quick" if args.quick else ""),
        "config": config,
        "machine": machine(),
        "versions": {**server_versions(), **venv.versions()},
        "systems": {s.name: {"label": s.label, "family": s.family, "batch": s.batch} for s in systems},
        "raw_pg": {},
        "raw_sqlite": {},
        "errors": [],
    }
    started = time.monotonic()
    with ExitStack() as stack:
        for system in systems:
            system.setup(stack)
        for run_index in range(config["runs"]):
            log(f"run {run_index + 1} of {config['runs']}")
            for system in systems:
                try:
                    measure_system(system, config, config["processes"], results["systems"][system.name])
                except Exception as exc:
                    log(f"  {system.name} FAILED: {exc!r}")
                    results["errors"].append(f"run {run_index + 1}, {system.name}: {exc!r}")
                    traceback.print_exc()
            log("  raw PostgreSQL ceiling")
            for key, value in raw_pg.measure(config["tasks"]).items():
                results["raw_pg"].setdefault(key, []).append(value)
                log(f"  raw PostgreSQL {key}: {value:,.0f}")
            log("  raw SQLite ceiling")
            for key, value in raw_sqlite.measure(config["tasks"]).items():
                results["raw_sqlite"].setdefault(key, []).append(value)
                log(f"  raw SQLite {key}: {value:,.0f}")
        if config["scaling_processes"]:
            log(f"workers scaling: {config['scaling_processes']} processes, one run")
            for system in systems:
                try:
                    # Processing only: the enqueue columns are the runs' (median of ``runs``).
                    scaling = {**config, "latency_tasks": 0}
                    measure_system(
                        system,
                        scaling,
                        config["scaling_processes"],
                        results["systems"][system.name],
                        enqueue=False,
                    )
                except Exception as exc:
                    log(f"  {system.name} FAILED: {exc!r}")
                    results["errors"].append(f"scaling, {system.name}: {exc!r}")
                    traceback.print_exc()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")  # kept if what follows fails
    if not args.skip_table_size:
        log("claim latency as the table grows")
        results["table_size"] = table_size_scaling(config, results["errors"])
    if not args.skip_issue4 and not args.systems:
        log("issue 4: throughput with CPU per task, long-poll latency")
        results["issue4"] = issue4_figures(config, results["errors"])
    if not args.skip_profile and not args.systems:
        log("py-spy profile of the server on PostgreSQL (bench.profile)")
        results["profile"] = server_profile(config, output.parent, results["errors"])
    results["seconds"] = round(time.monotonic() - started)
    results["machine"]["load average at end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results["summary"] = report.summarize(results)
    output.write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.markdown(results)
    output.with_suffix(".md").write_text(markdown)
    print(markdown)
    if not args.no_plots:
        plots(output, Path(args.images))
    log(f"done in {results['seconds']} s; results in {output}")
    return 1 if results["errors"] else 0


def plots(source: Path, images: Path) -> None:
    subprocess.run(
        [str(venv.BIN / "python"), "-m", "bench.plots", str(source), str(images)],
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="measure every system")
    run_parser.add_argument("--quick", action="store_true", help="a smoke check: 500 tasks, one run")
    run_parser.add_argument("--tasks", type=int, help="tasks per measurement")
    run_parser.add_argument("--runs", type=int, help="runs (the tables show median and spread)")
    run_parser.add_argument("--latency-tasks", type=int, help="tasks of the latency probe (at 100/s)")
    run_parser.add_argument("--systems", help="comma-separated subset, e.g. celery,taskmanager-pg-worker")
    run_parser.add_argument("--skip-table-size", action="store_true", help="no 10k → 1M rows claim latency")
    run_parser.add_argument(
        "--skip-issue4",
        action="store_true",
        help="no throughput/CPU and long-poll figures (bench.throughput, bench.long_poll)",
    )
    run_parser.add_argument(
        "--skip-profile", action="store_true", help="no py-spy profile of the server (bench.profile)"
    )
    run_parser.add_argument("--no-plots", action="store_true")
    run_parser.add_argument("--images", default=str(IMAGES), help="where the PNG plots go")
    run_parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    for name in ("report", "plots"):
        sub = commands.add_parser(name, help=f"{name} from a results file")
        sub.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args()
    if args.command == "run":
        return run(args)
    results = json.loads(Path(args.output).read_text())
    if args.command == "report":
        results["summary"] = report.summarize(results)
        print(report.markdown(results))
    else:
        plots(Path(args.output), IMAGES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
