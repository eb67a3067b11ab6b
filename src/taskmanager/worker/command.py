"""What ``taskmanager worker module:attr`` does: load the ``Worker``, apply the command's options,
set up logging and run it."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from taskmanager.worker.app import Worker
from taskmanager.worker.logs import configure_logging

log = logging.getLogger("taskmanager.worker")

#: Exit code when ``module:attr`` does not name a Worker.
EXIT_BAD_TARGET = 2


def load_worker(target: str) -> Worker:
    """``package.module:attr`` (``attr`` defaults to ``worker``), imported from the working
    directory like ``python -m`` would."""
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    found = getattr(module, attr or "worker", None)
    if not isinstance(found, Worker):
        raise TypeError(f"{target} is not a taskmanager.Worker (found {type(found).__name__})")
    return found


def run_worker(
    target: str,
    *,
    concurrency: int | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
    worker_id: str | None = None,
    lease_seconds: int | None = None,
    task_timeout: float | None = None,
    claim_wait: float | None = None,
    retries: int | None = None,
    log_level: str = "info",
    log_format: str = "text",
) -> int:
    """Run the worker at ``target`` until signalled; its exit code."""
    configure_logging(log_level, log_format)
    try:
        worker = load_worker(target)
    except (ImportError, TypeError) as exc:
        log.error("cannot load the worker %s: %s", target, exc)
        return EXIT_BAD_TARGET
    if concurrency is not None:
        if concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        worker.concurrency = concurrency
    for name, value in {
        "api_url": api_url,
        "api_key": api_key,
        "worker_id": worker_id,
        "lease_seconds": lease_seconds,
        "task_timeout": task_timeout,
        "claim_wait": claim_wait,
        "retries": retries,
    }.items():
        if value is not None:
            setattr(worker, name, value)
    return worker.run()


__all__ = ["load_worker", "run_worker"]
