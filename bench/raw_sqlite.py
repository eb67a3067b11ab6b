"""The raw SQLite ceiling (issue 19): what a task's life costs in SQLite without any queue.

On a fresh file in WAL mode with ``synchronous=NORMAL`` (TaskManager's settings) and a ``tasks``
table shaped like TaskManager's (same claim index), one thread loops through the stdlib driver,
each step its own ``BEGIN IMMEDIATE`` transaction as a server request's would be:

* **cycle** — one ``INSERT``; one claim (the first pending row by the claim order, then an
  ``UPDATE`` of it); one ``UPDATE`` to completed: create + claim + complete per task.

One thread because SQLite has one writer: more threads or processes only queue on its lock.

    python -m bench.raw_sqlite [--tasks 10000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status VARCHAR(16) NOT NULL DEFAULT 'pending',
    params TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    worker_id VARCHAR(255),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    claimed_at TEXT,
    completed_at TEXT
);
CREATE INDEX ix_tasks_claim ON tasks (status, priority DESC, created_at, id);
"""
NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
INSERT = "INSERT INTO tasks (params) VALUES (?)"
PICK = "SELECT id FROM tasks WHERE status = 'pending' ORDER BY priority DESC, created_at, id LIMIT 1"
CLAIM = f"UPDATE tasks SET status = 'claimed', worker_id = ?, claimed_at = {NOW} WHERE id = ?"
COMPLETE = f"UPDATE tasks SET status = 'completed', completed_at = {NOW} WHERE id = ?"


def _write(conn: sqlite3.Connection, sql: str, *args: object) -> None:
    """One statement in a transaction of its own, with the write lock taken at BEGIN."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(sql, args)
    conn.execute("COMMIT")


def cycles(path: Path, tasks: int) -> float:
    """Create + claim + complete cycles per second, each step one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        started = time.perf_counter()
        for _ in range(tasks):
            _write(conn, INSERT, '{"n": 0}')
            conn.execute("BEGIN IMMEDIATE")
            (task_id,) = conn.execute(PICK).fetchone()
            conn.execute(CLAIM, ("w", task_id))
            conn.execute("COMMIT")
            _write(conn, COMPLETE, task_id)
        return tasks / (time.perf_counter() - started)
    finally:
        conn.close()


def measure(tasks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return {"cycle_per_s": cycles(Path(tmp) / "raw.db", tasks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps({k: round(v) for k, v in measure(args.tasks).items()}))


if __name__ == "__main__":
    main()
