"""The operator's commands the README and the command line reference show run as written (the id
of the task shown replaced by a real one), against a live server."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.api.conftest import OPEN_SCHEMA, ok, register
from tests.cli.conftest import Command
from tests.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```bash\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def documented_lines() -> list[str]:
    readme = (
        (ROOT / "README.md").read_text().split("## Operating a running server", 1)[1].split("\n## ", 1)[0]
    )
    reference = (ROOT / "docs" / "reference" / "cli.md").read_text()
    blocks = FENCE.findall(readme) + FENCE.findall(reference)
    return [line for block in blocks for line in block.splitlines() if line.startswith("taskmanager ")]


def test_the_documented_operator_commands_run(live_api: Api, taskmanager: Command) -> None:
    lines = documented_lines()
    assert len(lines) >= 6, lines
    register(live_api, "PrismQ.Script.Generate", schema=OPEN_SCHEMA, max_attempts=1)
    task_id = ok(live_api.post("/api/tasks", json={"type": "PrismQ.Script.Generate", "params": {}}))["id"]
    for line in lines:
        words = shlex.split(line.replace(" 42 ", f" {task_id} "), comments=True)[1:]
        done = taskmanager(*words)
        assert done.code == 0, f"{line}\n{done.err}"
