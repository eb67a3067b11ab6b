"""The embedded mode: a queue in a local SQLite file, with no server at all.

    python examples/embedded_queue.py [DATABASE_URL]     # default sqlite:///embedded_queue.db

``TaskManagerClient("sqlite:///...")`` runs the server's own app in this process, with no network:
the same methods, answers, errors, deduplication and retries, on a file. Useful for scripts, tests,
and producers that must queue work while the central server is out of reach.
"""

import sys

from taskmanager import TaskManagerClient

DEFAULT_URL = "sqlite:///embedded_queue.db"


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL
    with TaskManagerClient(url, worker_id="local-worker") as queue:
        queue.register_task_type(
            "example.resize",
            "1",
            {"type": "object", "properties": {"width": {"type": "integer"}}, "required": ["width"]},
        )
        for width in (640, 1280, 1920, 640):  # the second 640 is deduplicated
            created = queue.create_task("example.resize", {"width": width})
            note = " (duplicate: not queued again)" if created.duplicate else ""
            print(f"queued task {created.id}: resize to {width}{note}")

        done = 0
        while (task := queue.claim_task("example.resize")) is not None:
            result = {"resized_to": task.params["width"]}
            queue.complete_task(task.id, result)  # the lease token of the claim is sent for us
            print(f"claimed and completed task {task.id}: {result}")
            done += 1

        pending = queue.list_tasks_page("pending", "example.resize").total
        completed = queue.list_tasks_page("completed", "example.resize").total
        print(f"done: {done} tasks this run; {completed} completed and {pending} pending in {url}")


if __name__ == "__main__":
    main()
