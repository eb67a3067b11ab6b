"""Do the work of the task ``claim_task.py`` claimed, and report it complete.

    python examples/complete_task.py [--claim claimed_task.json]

Sends the worker id and the lease token of the claim: if the lease had expired and another
worker had taken the task over, the server would answer 409 ``lease_lost`` instead.
"""

import argparse
import json

from taskmanager import TaskManagerClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claim", default="claimed_task.json", help="the file claim_task.py wrote")
    args = parser.parse_args()
    with open(args.claim) as saved:
        claim = json.load(saved)

    params = claim["params"]
    message = f"{params.get('greeting', 'Hello')}, {params['name']}!"

    with TaskManagerClient() as client:
        done = client.complete_task(
            claim["task_id"],
            {"message": message},
            worker_id=claim["worker_id"],
            lease_token=claim["lease_token"],
        )
        task = client.get_task(claim["task_id"])
    print(f"task {done.id} {done.status}: result {task.result}")


if __name__ == "__main__":
    main()
