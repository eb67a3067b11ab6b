"""Claim the next ``example.greet`` task as a worker, and save what ``complete_task.py`` needs.

    python examples/claim_task.py [WORKER_ID] [--save claimed_task.json]

The task is leased to the worker (for the type's ``claim_timeout``, 300 s by default). The
claim's ``lease_token`` proves the worker still holds it; ``complete_task.py`` sends it back.
Exits 1 when there is nothing to claim.
"""

import argparse
import json
import sys

from taskmanager import TaskManagerClient


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worker_id", nargs="?", default="example-worker-1")
    parser.add_argument("--save", default="claimed_task.json", help="where to write the claim")
    args = parser.parse_args()
    with TaskManagerClient() as client:
        task = client.claim_task("example.greet", args.worker_id)
    if task is None:
        print("no task to claim")
        return 1
    claim = {
        "task_id": task.id,
        "worker_id": args.worker_id,
        "lease_token": task.lease_token,
        "params": task.params,
    }
    with open(args.save, "w") as saved:
        json.dump(claim, saved)
    print(
        f"claimed task {task.id} as {args.worker_id} (attempt {task.attempts}/{task.max_attempts}, "
        f"lease until {task.lease_expires_at:%H:%M:%S} UTC); saved to {args.save}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
