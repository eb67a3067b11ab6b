"""The side-by-side benchmark's smoke check: ``python -m bench run --quick`` works end to end.

It asserts nothing about speed: only that the harness exits 0 and records every system and every
figure of docs/performance.md (issue 4's throughput and long-poll tables and the server's profile
included). The
first run creates the bench environment (``.bench-venv``: Celery, RQ, Dramatiq, procrastinate,
matplotlib from PyPI), which takes a minute or two; the run itself stays under five minutes.
Needs PostgreSQL on 5432 and Redis on 6379.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark's smoke run: docs/development.md

ROOT = Path(__file__).resolve().parents[2]


def _redis_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.timeout(1200)
def test_quick_bench_runs_every_system(tmp_path: Path) -> None:
    if not _redis_answers():
        pytest.fail("the benchmark needs Redis on 127.0.0.1:6379 (scripts/services.sh)")
    output = tmp_path / "side_by_side.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--output", str(output), "--images", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1150,
    )
    assert run.returncode == 0, run.stderr[-5000:]
    results = json.loads(output.read_text())
    from bench.systems.drivers import all_systems

    assert set(results["systems"]) == {system.name for system in all_systems()}
    for name, system in results["systems"].items():
        assert system.get("process"), f"{name} processed nothing"
        assert system.get("latency_ms"), f"{name} has no latency samples"
    assert results["raw_pg"]["cycle_per_s"]
    assert results["raw_sqlite"]["cycle_per_s"]
    assert "**Raw SQLite ceiling**" in output.with_suffix(".md").read_text()
    issue4 = results["issue4"]  # the figures bench.throughput and bench.long_poll give alone
    assert [row["database"] for row in issue4["throughput"]] == ["sqlite", "postgresql"]
    for row in issue4["throughput"]:
        rates = ("worker_runtime_per_s", "single_requests_per_s", "single_requests_httpx_per_s")
        assert all(row[rate] > 0 for rate in rates), row
        assert row["single_client_us_per_task"] > 0
        assert row["single_httpx_client_us_per_task"] > 0
    assert [row["database"] for row in issue4["long_poll"]] == ["sqlite", "postgresql"]
    assert len(issue4["long_poll_worker"]) == 4
    profile = results["profile"]  # bench.profile's, written beside the results too
    assert profile["statements_per_task"]["claim (one task)"] >= 1
    assert profile["work-single"]["samples"] > 0, "py-spy sampled the server"
    assert json.loads((tmp_path / "profile_postgresql.json").read_text()) == profile
    markdown = output.with_suffix(".md").read_text()
    assert "**End-to-end throughput**" in markdown
    assert "**Where the server's CPU goes**" in markdown
    assert (tmp_path / "bench_throughput.png").exists()
