"""The workflows guide's Python block (docs/guides/workflows.md), run as written against a real
server on each test database, with the client's URL and key from the environment."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, Api

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "workflows.md"
BLOCK = re.compile(r"^<!-- test: run -->\n```python\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def test_the_guides_python_block_runs_and_prints_what_it_says(
    live_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    (code,) = [m["code"] for m in BLOCK.finditer(GUIDE.read_text())]
    monkeypatch.setenv("TASKMANAGER_API_URL", live_api.url)
    monkeypatch.setenv("TASKMANAGER_API_KEY", ADMIN_KEY)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(GUIDE), "exec"), {})
    assert printed.getvalue() == "2 2\n"
