"""Mistakes a person makes with ``taskmanager``: each is one line on stderr, exit 1 (2 for usage),
no traceback unless ``--debug``."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Command
from tests.conftest import ADMIN_KEY, Api, free_port


def test_a_wrong_key_says_so(taskmanager: Command) -> None:
    refused = taskmanager("tasks", "list", key="not-the-key")
    assert refused.code == 1
    line = refused.one_error_line()
    assert "refused the API key (401)" in line
    assert "TASKMANAGER_API_KEY" in line


def test_a_key_without_the_scope_says_403(live_api: Api, taskmanager: Command) -> None:
    key = live_api.post("/api/api-keys", json={"name": "reader", "scopes": ["types:read"]}).json()["data"][
        "key"
    ]
    refused = taskmanager("tasks", "list", key=key)
    assert refused.code == 1
    assert "(403)" in refused.one_error_line()


def test_an_unreachable_server_names_its_url(taskmanager: Command) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    refused = taskmanager("types", "list", "--url", url, connect=False)
    assert refused.code == 1
    assert refused.one_error_line().startswith(f"taskmanager: cannot reach the server at {url}: ")


def test_url_and_key_come_from_the_environment(
    live_api: Api, taskmanager: Command, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("TASKMANAGER_URL", live_api.url)
    monkeypatch.setenv("TASKMANAGER_API_KEY", ADMIN_KEY)
    listed = taskmanager("types", "list", "--json", connect=False)
    assert listed.code == 0, listed.err
    assert listed.json()["count"] == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["tasks", "show"], "Missing argument 'ID'"),
        (["tasks", "list", "--limit", "many"], "Invalid value for '--limit'"),
        (["tasks", "list", "--nope"], "No such option"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_mistakes_exit_2_with_one_line(taskmanager: Command, args: list[str], said: str) -> None:
    refused = taskmanager(*args, connect=False)
    assert refused.code == 2
    line = refused.one_error_line()
    assert said in line
    assert line.endswith("--help)")


def test_a_bad_setting_is_one_line(taskmanager: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMANAGER_CLAIM_TIMEOUT", "soon")
    refused = taskmanager("db", "current", "--database-url", "sqlite:///:memory:", connect=False)
    assert refused.code == 1
    assert refused.one_error_line().startswith("taskmanager: bad setting TASKMANAGER_CLAIM_TIMEOUT: ")


def test_an_unreachable_database_is_one_line(taskmanager: Command) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    refused = taskmanager("keys", "list", "--database-url", url, connect=False)
    assert refused.code == 1
    assert refused.one_error_line().startswith("taskmanager: Database unavailable: ")


def test_debug_shows_the_traceback(taskmanager: Command) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    with pytest.raises(Exception, match="Database unavailable"):
        taskmanager("--debug", "keys", "list", "--database-url", url, connect=False)


def test_the_clients_url_variable_is_read_when_taskmanager_url_is_unset(
    live_api: Api, taskmanager: Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKMANAGER_URL", raising=False)
    monkeypatch.setenv("TASKMANAGER_API_URL", f"{live_api.url}/api")
    listed = taskmanager("types", "list", "--json", "--api-key", ADMIN_KEY, connect=False)
    assert listed.code == 0, listed.err
