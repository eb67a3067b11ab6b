"""Create one ``example.greet`` task (run ``register_task_type.py`` first).

    python examples/create_task.py [NAME]

Prints the new task's id. The same params twice give the same task back, marked as a duplicate:
the server deduplicates on a hash of the type and the params.
"""

import sys

from taskmanager import TaskManagerClient


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "world"
    with TaskManagerClient() as client:
        task = client.create_task("example.greet", {"name": name}, priority=5)
        if task.duplicate:
            print(f"task {task.id} already exists ({task.status}): not queued twice")
        else:
            print(f"created task {task.id} ({task.status}) with params {{'name': {name!r}}}")


if __name__ == "__main__":
    main()
