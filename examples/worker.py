"""A complete worker on the ``Worker`` runtime: a blocking handler and an async one, progress
reports, and a failure that the server retries.

    python examples/worker.py                    # or: cd examples && taskmanager worker worker:worker

Reads TASKMANAGER_API_URL and TASKMANAGER_API_KEY. On start it registers its two task types,
then long-polls for their tasks and runs up to 4 at once. Ctrl-C (or SIGTERM) stops claiming,
lets the running tasks finish, and exits 0. Feed it with, for example::

    python examples/register_task_type.py && python examples/create_task.py Ada
    python -c "from taskmanager import TaskManagerClient as C; C().create_task('example.count', {'to': 3})"
"""

import asyncio
import time

from taskmanager import TaskContext, Worker

worker = Worker(concurrency=4)


@worker.task(
    "example.greet",
    version="1.0.0",
    schema={
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "greeting": {"type": "string", "default": "Hello"},
        },
        "required": ["name"],
        "additionalProperties": False,
    },
    max_attempts=3,
    retry_delay=1,
    timeout=30,
)
def greet(ctx: TaskContext) -> dict[str, str]:
    """A blocking handler: it runs in a thread of its own, so it may call blocking libraries."""
    ctx.progress(10, "looking up the greeting")
    time.sleep(0.1)  # stands for real blocking work: a database query, a file, an HTTP call
    message = f"{ctx.params.get('greeting', 'Hello')}, {ctx.params['name']}!"
    ctx.progress(90, "greeting written")
    print(f"[greet] task {ctx.task_id}: {message}", flush=True)
    return {"message": message}


@worker.task(
    "example.count",
    schema={
        "type": "object",
        "properties": {"to": {"type": "integer", "minimum": 1, "maximum": 100}},
        "required": ["to"],
    },
    max_attempts=3,  # two retries after the first failure...
    retry_delay=1,  # ... the first one 1 s after it, then 2 s (doubling)
    timeout=60,
)
async def count(ctx: TaskContext) -> dict[str, int]:
    """An async handler: it runs on the worker's event loop, so it must not block."""
    if ctx.attempt == 1:
        # A transient failure: raising reports the attempt as failed (with the traceback as its
        # error); the server sends the task back to pending and another claim runs it again.
        print(f"[count] task {ctx.task_id}: attempt 1 fails on purpose", flush=True)
        raise ConnectionError("the upstream service is not ready yet")
    to = ctx.params["to"]
    for step in range(1, to + 1):
        await asyncio.sleep(0.05)
        await ctx.progress(step * 100 // to, f"counted {step} of {to}")
    print(f"[count] task {ctx.task_id}: counted to {to} on attempt {ctx.attempt}", flush=True)
    return {"counted": to, "attempt": ctx.attempt}


if __name__ == "__main__":
    raise SystemExit(worker.run())
