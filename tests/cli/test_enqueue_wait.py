"""``taskmanager enqueue TYPE --wait``: create, wait for the end (GET /tasks/{id}/wait), print it."""

from __future__ import annotations

from tests.api.conftest import OPEN_SCHEMA, register
from tests.cli.conftest import Command
from tests.client.test_wait import complete_soon
from tests.conftest import Api


def test_enqueue_wait_prints_the_result(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA)
    worker = complete_soon(live_api, {"answer": 42})
    done = taskmanager("enqueue", "demo.echo", "--params", '{"n": 1}', "--wait")
    worker.join(10)
    assert done.code == 0, done.err
    first, result = done.out.strip().splitlines()
    assert first.endswith(": completed")
    assert result == '{"answer": 42}'


def test_enqueue_wait_json_and_a_timeout(live_api: Api, taskmanager: Command) -> None:
    register(live_api, schema=OPEN_SCHEMA)
    waited = taskmanager("enqueue", "demo.echo", "--wait", "--wait-timeout", "0.2", "--json")
    assert waited.code == 1  # not completed (yet)
    data = waited.json()
    assert (data["done"], data["status"]) == (False, "pending")
    plain = taskmanager("enqueue", "demo.echo", "--params", '{"n": 2}', "--wait", "--wait-timeout", "0.2")
    assert plain.code == 1
    assert plain.out.strip().splitlines()[-1] == "not finished yet (--wait-timeout ran out)"
