"""Tables (markdown) and the issue's targets, from ``bench/results/side_by_side.json``."""

from __future__ import annotations

import statistics
from typing import Any

TM_BATCHED = "taskmanager-pg-worker"
TM_SINGLE = "taskmanager-pg-single"
TM_SQLITE_SINGLE = "taskmanager-sqlite-single"


def spread(values: list[float], digits: int = 0, unit: str = "") -> str:
    """``median (min-max)`` of the runs, or the one value."""
    if not values:
        return "—"

    def fmt(v: float) -> str:
        return f"{v:,.{digits}f}{unit}"

    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def best_per_run(system: dict[str, Any], runs: int) -> list[float]:
    """Per run, the system's best processing rate over the process counts measured in every run
    (the scaling counts, measured once, are left out so that each ratio compares one run)."""
    process = [v for v in system.get("process", {}).values() if len(v) >= runs]
    return [max(v[r] for v in process) for r in range(runs)] if process else []


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios taken within each run, and whether each "Done when" target is met (median of runs)."""
    systems = results["systems"]
    competitors = {n: s for n, s in systems.items() if s["family"] != "taskmanager"}
    runs = results["config"]["runs"]
    best = {name: best_per_run(s, runs) for name, s in systems.items()}
    out: dict[str, Any] = {"best_per_run": best, "targets": []}
    if not runs:
        return out
    top = [max((best[n][r] for n in competitors if len(best[n]) > r), default=0.0) for r in range(runs)]
    top_name = [
        max((n for n in competitors if len(best[n]) > r), key=lambda n, r=r: best[n][r], default="")
        for r in range(runs)
    ]
    out["best_competitor"] = top_name
    ratios: dict[str, list[float]] = {}

    def ratio(name: str, num: list[float], den: list[float]) -> None:
        values = [a / b for a, b in zip(num, den, strict=False) if b]
        if values:
            ratios[name] = values

    if best.get(TM_BATCHED):
        ratio("batched / best competitor", best[TM_BATCHED], top)
    if best.get(TM_SINGLE) and best.get("celery"):
        ratio("single / Celery", best[TM_SINGLE], best["celery"])
    cycles = results.get("raw_pg", {}).get("cycle_per_s", [])
    if best.get(TM_SINGLE) and cycles:
        ratio("raw PostgreSQL / single", cycles, best[TM_SINGLE])
    sqlite_cycles = results.get("raw_sqlite", {}).get("cycle_per_s", [])
    if best.get(TM_SQLITE_SINGLE) and sqlite_cycles:
        ratio("SQLite single / raw SQLite", best[TM_SQLITE_SINGLE], sqlite_cycles)

    # Also against every configuration measured, the scaling ones (one run) included: medians.
    def best_median(system: dict[str, Any]) -> float:
        return max((statistics.median(v) for v in system.get("process", {}).values() if v), default=0.0)

    top_any = max(competitors, key=lambda n: best_median(competitors[n]), default="")
    if top_any and systems.get(TM_BATCHED, {}).get("process"):
        out["best_competitor_any"] = top_any
        ratios["batched / best competitor, any process count (medians)"] = [
            best_median(systems[TM_BATCHED]) / best_median(competitors[top_any])
        ]
    out["ratios"] = ratios
    targets = [
        ("batched worker path >= 3x the fastest competitor", "batched / best competitor", 3.0, True),
        (
            "same, against every process count measured (1-8, medians)",
            "batched / best competitor, any process count (medians)",
            3.0,
            True,
        ),
        ("single-request path >= 1x Celery", "single / Celery", 1.0, True),
        ("raw PostgreSQL within 1.5x of the single-request path", "raw PostgreSQL / single", 1.5, False),
        (
            "SQLite single requests >= 25% of the raw SQLite ceiling",
            "SQLite single / raw SQLite",
            0.25,
            True,
        ),
    ]
    for label, key, bound, at_least in targets:
        if key in ratios:
            value = statistics.median(ratios[key])
            met = value >= bound if at_least else value <= bound
            out["targets"].append({"target": label, "ratio": key, "value": value, "met": met})
    out["targets"] += _issue19_targets(systems, ratios)
    for system in systems.values():
        if system["family"] == "taskmanager" and system.get("latency_ms"):
            p95 = statistics.median(s["p95"] for s in system["latency_ms"])
            out["targets"].append(
                {"target": f"p95 latency under 50 ms at 100 tasks/s: {system['label']}",
                 "ratio": "p95 ms", "value": p95, "met": p95 < 50}
            )  # fmt: skip
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _issue19_targets(systems: dict[str, Any], ratios: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Issue 19's targets against the durable peers (``*-durable``: Redis with appendfsync
    always), as medians of the runs; each ratio is also kept in ``ratios``."""
    found: list[dict[str, Any]] = []

    def target(label: str, key: str, value: float | None, bound: float) -> None:
        if value is not None:
            ratios[key] = [value]
            found.append({"target": label, "ratio": key, "value": value, "met": value >= bound})

    def rate(name: str, processes: str) -> float | None:
        return _median(systems.get(name, {}).get("process", {}).get(processes, []))

    def enqueue(name: str) -> float | None:
        return _median(systems.get(name, {}).get("enqueue_single", []))

    def over(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    celery = "celery-durable"
    for processes in ("1", "2"):
        for tm, db in (("taskmanager-sqlite-single", "SQLite"), (TM_SINGLE, "PostgreSQL")):
            target(
                f"{db} single requests >= 1x durable Celery, {processes} proc",
                f"{db} single / durable Celery, {processes} proc",
                over(rate(tm, processes), rate(celery, processes)),
                1.0,
            )
        target(
            f"worker runtime (PostgreSQL) >= 1x Dramatiq, {processes} proc",
            f"batched / Dramatiq, {processes} proc",
            over(rate(TM_BATCHED, processes), rate("dramatiq", processes)),
            1.0,
        )
    target(
        "single creates on SQLite >= 1x durable Celery's single enqueue",
        "SQLite creates / durable Celery enqueues",
        over(enqueue("taskmanager-sqlite-worker"), enqueue(celery)),
        1.0,
    )
    target(
        "single creates on PostgreSQL >= 1x procrastinate's",
        "PostgreSQL creates / procrastinate defers",
        over(enqueue(TM_BATCHED), enqueue("procrastinate")),
        1.0,
    )
    # The peers of the same durability: the durable Redis ones and procrastinate (PostgreSQL).
    durable = [s for n, s in systems.items() if n.endswith("-durable") or s["family"] == "postgresql"]
    peers = [s for s in durable if s.get("latency_ms")]
    best = min((statistics.median(x["p95"] for x in s["latency_ms"]) for s in peers), default=None)
    for name, db in (("taskmanager-sqlite-single", "SQLite"), (TM_SINGLE, "PostgreSQL")):
        mine = systems.get(name, {}).get("latency_ms")
        if mine and best:
            p95 = statistics.median(x["p95"] for x in mine)
            target(
                f"create -> handler p95 <= the best peer's, {db}",
                f"best peer p95 / {db} p95",
                best / p95,
                1.0,
            )
    return found


def markdown(results: dict[str, Any]) -> str:
    systems = results["systems"]
    config = results["config"]
    procs = config["processes"] + config.get("scaling_processes", [])
    lines = [f"Note: {results['note']}.", ""] if results.get("note") else []
    lines += [
        f"Run of {results['date']}: `{results['command']}` — {config['tasks']:,} no-op tasks per "
        f"measurement, {config['runs']} run(s), median (min-max) over the runs; "
        f"{results.get('seconds', 0) // 60} min in all.",
        "",
        "Machine: " + ", ".join(f"{k}: {v}" for k, v in results["machine"].items()) + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".",
        "",
        "**Processing rate** (tasks/s, first handler call to last, N worker processes"
        + (
            "; the scaling columns, "
            + ", ".join(str(p) for p in config.get("scaling_processes", []))
            + " processes, are one run"
            if config.get("scaling_processes")
            else ""
        )
        + "):",
        "",
        "| system | " + " | ".join(f"{p} proc" for p in procs) + " |",
        "|---|" + "---|" * len(procs),
    ]
    for system in systems.values():
        process = system.get("process", {})
        cells = " | ".join(spread(process.get(str(p), [])) for p in procs)
        lines.append(f"| {system['label']} | {cells} |")
    lines += [
        "",
        "**Enqueue rate** (tasks/s from one process):",
        "",
        "| system | one call per task | batch call |",
        "|---|---|---|",
    ]
    for system in systems.values():
        batch = "no batch call"
        if system["batch"]:
            batch = f"{spread(system.get('enqueue_batch', []))} (`{system['batch']}`)"
        lines.append(f"| {system['label']} | {spread(system.get('enqueue_single', []))} | {batch} |")
    lines += [
        "",
        f"**End-to-end latency** (create → handler start, ms; {config['latency_tasks']:,} tasks at "
        f"{config['latency_rate']:.0f}/s, one worker process waiting):",
        "",
        "| system | p50 | p95 | p99 |",
        "|---|---|---|---|",
    ]
    for system in systems.values():
        latency = system.get("latency_ms", [])
        cells = [spread([s[q] for s in latency if q in s], 1) for q in ("p50", "p95", "p99")]
        lines.append(f"| {system['label']} | " + " | ".join(cells) + " |")
    raw = results.get("raw_pg", {})
    if raw:
        lines += [
            "",
            "**Raw PostgreSQL ceiling** (asyncpg, 4 connections, no queue): "
            f"{spread(raw.get('cycle_per_s', []))} create + claim + complete cycles/s (one INSERT, "
            "one `FOR UPDATE SKIP LOCKED` claim, one UPDATE per task); "
            f"{spread(raw.get('batch_rows_per_s', []))} rows/s claimed and completed 100 at a time.",
        ]
    raw_sqlite = results.get("raw_sqlite", {})
    if raw_sqlite.get("cycle_per_s"):
        lines += [
            "",
            "**Raw SQLite ceiling** (`bench.raw_sqlite`: the stdlib driver, WAL, `synchronous=NORMAL`, "
            f"one thread, no queue): {spread(raw_sqlite['cycle_per_s'])} create + claim + complete "
            "cycles/s (an INSERT, a pick and UPDATE, an UPDATE per task, each its own transaction).",
        ]
    summary = results.get("summary", {})
    if summary.get("targets"):
        lines += [
            "",
            "**Targets** (ratios taken within each run; median (min-max) over the runs):",
            "",
            "| target | measured | met |",
            "|---|---|---|",
        ]
        for target in summary["targets"]:
            values = summary.get("ratios", {}).get(target["ratio"])
            measured = f"{spread(values, 2)}x" if values else f"{target['value']:.1f} ms"
            lines.append(f"| {target['target']} | {measured} | {'yes' if target['met'] else '**no**'} |")
        names = [n for n in summary.get("best_competitor", []) if n]
        if names:
            labels = ", ".join(systems[n]["label"] for n in names if n)
            lines += ["", f"Fastest competitor (1 or 2 processes) in each run: {labels}."]
        if summary.get("best_competitor_any"):
            label = systems[summary["best_competitor_any"]]["label"]
            lines += ["", f"Fastest competitor configuration over every process count: {label}."]
    if results.get("table_size"):
        lines += [
            "",
            "**Claim latency as the table grows** (`bench.claim_latency`: 16 claimers through the "
            "engine, no HTTP; 90% of the rows completed history):",
            "",
            "| rows | p50 | p95 | p99 | claims/s |",
            "|---|---|---|---|---|",
        ]
        for row in results["table_size"]:
            cells = [f"{row[k]} ms" if k in row else "-" for k in ("p50_ms", "p95_ms", "p99_ms")]
            lines.append(f"| {row['rows']:,} | " + " | ".join(cells) + f" | {row['claims_per_s']:,} |")
    lines += _issue4(results.get("issue4", {}), config)
    lines += _profile(results.get("profile", {}))
    if results.get("errors"):
        lines += ["", "Errors: " + "; ".join(results["errors"])]
    return "\n".join(lines) + "\n"


def _cpu(row: dict[str, Any], prefix: str, middle: str) -> str:
    """``server / workers-or-load-generator / PostgreSQL`` µs per task of one path, or —."""
    values = [row.get(f"{prefix}{k}_us_per_task") for k in ("server", middle, "postgres")]
    if values[0] is None:
        return "—"
    return " / ".join(str(v or "—") for v in values) + " µs"


def _issue4(figures: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Issue 4's tables: throughput with CPU per task, long-poll latency bare and via a worker."""
    lines: list[str] = []
    if figures.get("throughput"):
        lines += [
            "",
            f"**End-to-end throughput** (`bench.throughput`: {config['tasks']:,} no-op tasks created with "
            "`POST /tasks/batch`, then processed by 2 worker processes, or by 8 threads doing one claim "
            "and one complete request per task — over keep-alive sockets (a lean load generator) or "
            "over `httpx`; `taskmanager serve --workers 2`; CPU per task while the workers ran, as server / "
            "workers or load generator / PostgreSQL):",
            "",
            "| database | batch create | worker runtime | single requests | single requests, httpx "
            "| CPU per task: worker runtime | single | single, httpx |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in figures["throughput"]:
            rates = [
                row.get(k)
                for k in (
                    "worker_runtime_create_per_s",
                    "worker_runtime_per_s",
                    "single_requests_per_s",
                    "single_requests_httpx_per_s",
                )
            ]
            cpu = [
                _cpu(row, prefix, middle)
                for prefix, middle in (("", "workers"), ("single_", "client"), ("single_httpx_", "client"))
            ]
            lines.append(
                f"| {row['database']} | "
                + " | ".join("—" if r is None else f"{r:,} tasks/s" for r in rates)
                + " | "
                + " | ".join(cpu)
                + " |"
            )
    if figures.get("long_poll"):
        lines += [
            "",
            "**Long-poll wake-up** (`bench.long_poll`: a claim waits, then a task is created; create "
            "request start → claim answer):",
            "",
            "| database | rounds | p50 | p95 | max |",
            "|---|---|---|---|---|",
        ]
        for row in figures["long_poll"]:
            lines.append(
                f"| {row['database']} | {row['rounds']} | {row['p50_ms']} ms | {row['p95_ms']} ms | "
                f"{row['max_ms']} ms |"
            )
    if figures.get("long_poll_worker"):
        lines += [
            "",
            "**Create → handler start through a worker** (`bench.long_poll --worker-runtime`: tasks "
            "created one request each at the given rate, one `taskmanager worker` waiting):",
            "",
            "| database | concurrency | tasks | p50 | p95 | p99 |",
            "|---|---|---|---|---|---|",
        ]
        for row in figures["long_poll_worker"]:
            lines.append(
                f"| {row['database']} | {row['concurrency']} | {row['tasks']:,} at {row['rate']:.0f}/s | "
                f"{row['p50_ms']} ms | {row['p95_ms']} ms | {row['p99_ms']} ms |"
            )
    return lines


#: The loads of ``bench.profile``, in the order the report shows them.
PROFILE_LOADS = ("create-single", "create-batch", "work-single", "work-batched")


def _profile(profile: dict[str, Any]) -> list[str]:
    """``bench.profile``: where the server's CPU goes under each load (py-spy, by package of the
    innermost frame), and the SQL statements each route sends per task."""
    loads = [name for name in PROFILE_LOADS if profile.get(name, {}).get("samples")]
    if not loads:
        return []
    lines = [
        "",
        "**Where the server's CPU goes** (`bench.profile`: one `taskmanager serve --workers 1` on "
        "PostgreSQL, py-spy at 100 Hz; share of samples by package of the innermost frame, top 6):",
        "",
        "| load | tasks/s (profiled) | server CPU per task | by package |",
        "|---|---|---|---|",
    ]
    for name in loads:
        row = profile[name]
        shares = ", ".join(f"{pkg} {pct}%" for pkg, pct in list(row["by_package_pct"].items())[:6])
        lines.append(f"| {name} | {row['per_s']:,} | {row['server_cpu_ms_per_task']} ms | {shares} |")
    counts = profile.get("statements_per_task", {})
    if counts:
        lines += ["", "SQL statements per task: " + "; ".join(f"{k} {v:g}" for k, v in counts.items()) + "."]
    return lines
