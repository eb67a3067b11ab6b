"""Celery on Redis, configured as its documentation's optimizing guide says for short tasks:
results ignored, no gossip/mingle/heartbeat (worker flags), ``solo`` pool, one process each."""

from __future__ import annotations

from celery import Celery

from bench.systems.counting import broker_url, hit

app = Celery("bench", broker=broker_url(1))
app.conf.update(
    task_ignore_result=True,
    task_default_queue="bench",
    worker_prefetch_multiplier=64,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(created: float | None = None) -> None:
    hit(created)


def enqueue_one(created: float | None) -> None:
    noop.delay(created)


enqueue_batch = None  # Celery has no bulk-publish call (a group publishes one message per task)
