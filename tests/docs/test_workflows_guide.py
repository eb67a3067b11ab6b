"""The workflows guide's Python blocks (docs/guides/workflows.md), each run as written against a
real server on each test database, with the client's URL and key from the environment."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, Api

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "workflows.md"
BLOCK = re.compile(r"^<!-- test: run -->\n```python\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


#: What each runnable block prints, in the guide's order.
PRINTED = ["2 2\n", "True True\ncancelled True\n"]


def test_the_guides_python_blocks_run_and_print_what_they_say(
    live_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = [m["code"] for m in BLOCK.finditer(GUIDE.read_text())]
    assert len(blocks) == len(PRINTED)
    monkeypatch.setenv("TASKMANAGER_API_URL", live_api.url)
    monkeypatch.setenv("TASKMANAGER_API_KEY", ADMIN_KEY)
    for code, expected in zip(blocks, PRINTED, strict=True):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(GUIDE), "exec"), {})
        assert printed.getvalue() == expected
