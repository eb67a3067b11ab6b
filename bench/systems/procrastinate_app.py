"""procrastinate on PostgreSQL (psycopg 3): ``procrastinate --app bench.systems.procrastinate_app.app
worker``; ``task.defer`` (one) and ``task.batch_defer`` (one statement for many)."""

from __future__ import annotations

import os

import procrastinate

from bench.systems.counting import hit

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PROCRASTINATE_DSN"]),
)


@app.task(name="noop", queue="bench")
async def noop(created: float | None = None) -> None:
    hit(created)


def prepare() -> None:
    app.open()


def enqueue_one(created: float | None) -> None:
    noop.defer(created=created)


def enqueue_batch(count: int) -> None:
    noop.batch_defer(*({"created": None} for _ in range(count)))
