"""Dramatiq on its Redis broker: ``dramatiq bench.systems.dramatiq_app --processes K --threads 8``."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.systems.counting import broker_url, hit

broker = RedisBroker(url=broker_url(3))
dramatiq.set_broker(broker)


def prepare() -> None:
    broker.client.ping()


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(created: float | None = None) -> None:
    hit(created)


def enqueue_one(created: float | None) -> None:
    noop.send(created)


enqueue_batch = None  # no bulk enqueue: a dramatiq.group sends one message per task
