"""``taskmanager worker``'s options reach the ``Worker`` it runs (the workers guide lists them):
a module whose worker records what it was given instead of running."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmanager.cli import app
from taskmanager.cli.failures import run

MODULE = """
from taskmanager import Worker

class Recording(Worker):
    seen = {}

    def run(self):
        Recording.seen.update(
            retries=self.retries, claim_wait=self.claim_wait, concurrency=self.concurrency
        )
        return 0

worker = Recording(api_url="http://127.0.0.1:9", concurrency=1)
"""


@pytest.fixture
def recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "recording_worker.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "recording_worker:worker"
    sys.modules.pop("recording_worker", None)


def test_retries_claim_wait_and_concurrency_reach_the_worker(recording: str) -> None:
    code = run(app, ["worker", recording, "--retries", "0", "--claim-wait", "2", "-c", "4"])
    assert code == 0
    assert sys.modules["recording_worker"].Recording.seen == {"retries": 0, "claim_wait": 2, "concurrency": 4}


def test_a_negative_retries_is_a_usage_error(recording: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(app, ["worker", recording, "--retries", "-1"]) == 2
    assert "--retries" in capsys.readouterr().err
