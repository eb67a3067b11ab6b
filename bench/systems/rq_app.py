"""RQ: jobs enqueued with ``Queue.enqueue`` (one) or ``Queue.enqueue_many`` (one pipeline),
run by ``rq worker -w rq.worker.SimpleWorker`` (no fork per job)."""

from __future__ import annotations

from redis import Redis
from rq import Queue

from bench.systems.counting import broker_url, hit

_queue: Queue | None = None


def queue() -> Queue:
    global _queue
    if _queue is None:
        _queue = Queue("bench", connection=Redis.from_url(broker_url(2)))
    return _queue


def prepare() -> None:
    queue().connection.ping()


def noop(created: float | None = None) -> None:
    hit(created)


def enqueue_one(created: float | None) -> None:
    queue().enqueue(noop, created)


def enqueue_batch(count: int) -> None:
    q = queue()
    q.enqueue_many([Queue.prepare_data(noop, (None,)) for _ in range(count)])
