"""Register the task type ``example.greet``: a name, a version and a JSON Schema for its params.

    python examples/register_task_type.py

Reads TASKMANAGER_API_URL and TASKMANAGER_API_KEY. Registering again replaces the version and
the schema (the type keeps its id).
"""

from taskmanager import TaskManagerClient

TASK_TYPE = "example.greet"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "greeting": {"type": "string", "default": "Hello"},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def main() -> None:
    with TaskManagerClient() as client:
        task_type = client.register_task_type(TASK_TYPE, "1.0.0", SCHEMA, max_attempts=3, retry_delay=1)
        action = "registered" if task_type.get("created") else "updated"
        print(f"{action} task type {task_type.name} v{task_type.version} (id {task_type.id})")


if __name__ == "__main__":
    main()
