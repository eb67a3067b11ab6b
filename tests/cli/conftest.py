"""Run ``taskmanager`` as its entry point does (``failures.run`` over the typer app), in-process,
against a real server (``live_api``): its exit status, stdout and stderr."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from taskmanager.cli import app
from taskmanager.cli.failures import run
from tests.conftest import ADMIN_KEY, Api


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_error_line(self) -> str:
        """The failure's line on stderr: exactly one, and no traceback."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


class Command:
    """``taskmanager ARGS`` with ``--url``/``--api-key`` of the live server added after the
    subcommand's words (``connect=False`` leaves them out)."""

    def __init__(self, api: Api, capsys: pytest.CaptureFixture[str]) -> None:
        self.api = api
        self.capsys = capsys

    def __call__(self, *args: str, key: str | None = ADMIN_KEY, connect: bool = True) -> Outcome:
        extra = ["--url", self.api.url, *(["--api-key", key] if key else [])] if connect else []
        self.capsys.readouterr()
        code = run(app, [*args, *extra])
        out, err = self.capsys.readouterr()
        return Outcome(code, out, err)


@pytest.fixture
def taskmanager(live_api: Api, capsys: pytest.CaptureFixture[str]) -> Command:
    return Command(live_api, capsys)
