"""The callbacks guide's client block (docs/guides/callbacks.md), run as written against a real
server with a webhook secret and the loopback network allowed, on each test database. (The
guide's ``verify`` snippet is run by ``tests/unit/test_callbacks.py``.)"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, ServerFactory

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "callbacks.md"
BLOCK = re.compile(r"^<!-- test: run -->\n```python\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def test_the_guides_client_block_runs_and_prints_what_it_says(
    make_live_api: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_live_api(webhook_secret="guide-secret", webhook_allow_networks="127.0.0.1/32")
    (code,) = [m["code"] for m in BLOCK.finditer(GUIDE.read_text())]
    monkeypatch.setenv("TASKMANAGER_API_URL", api.url)
    monkeypatch.setenv("TASKMANAGER_API_KEY", ADMIN_KEY)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(GUIDE), "exec"), {})
    said = re.search(r"^It prints `(?P<line>[^`]*)`", GUIDE.read_text(), re.MULTILINE)
    assert said is not None
    assert printed.getvalue() == said["line"] + "\n"
