"""Embedded mode as a user starts it: a database URL instead of a server URL, nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from taskmanager import (
    AsyncTaskManagerClient,
    LeaseLostError,
    TaskManagerClient,
    TaskManagerNotFoundError,
    TaskManagerValidationError,
)


def test_a_sqlite_url_runs_the_engine_in_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    with TaskManagerClient(url, worker_id="local") as client:
        assert client.health_check().database == "connected"
        client.register_task_type("local.job", "1", {"type": "object"})
        created = client.create_task("local.job", {"n": 1})
        task = client.claim_task("local.job")
        assert task is not None
        assert task.id == created.id
        assert client.complete_task(task.id, {"ok": True}).status == "completed"
        with pytest.raises(TaskManagerNotFoundError):
            client.get_task(404)
        with pytest.raises(TaskManagerValidationError, match="Invalid sort_order"):
            client.claim_task(sort_order="sideways")
    assert (tmp_path / "local.db").exists(), "the database was made and migrated on first use"

    with TaskManagerClient(url) as again:
        assert again.get_task(created.id).result == {"ok": True}, "it persists"


def test_the_async_twin_runs_in_the_callers_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"

    async def scenario() -> None:
        async with AsyncTaskManagerClient(url, worker_id="local") as client:
            await client.register_task_type("local.job", "1", {"type": "object"})
            await client.create_tasks([{"type": "local.job", "params": {"n": n}} for n in range(3)])
            claimed = await client.claim_tasks("local.job", limit=3)
            assert len(claimed) == 3
            await client.cancel_task(claimed[0].id)
            with pytest.raises(LeaseLostError):
                await client.complete_task(claimed[0].id)
            ids = [t.id async for t in client.list_tasks(page_size=2)]
            assert ids == [3, 2, 1]

    asyncio.run(scenario())


def test_a_malformed_body_is_refused_as_the_server_would(tmp_path: Path) -> None:
    from taskmanager.client.embedded import SyncEmbeddedTransport
    from taskmanager.client.protocol import Request

    transport = SyncEmbeddedTransport(f"sqlite:///{tmp_path / 'local.db'}")
    try:
        for body, code in ((b"", "invalid_json"), (b"{nope", "invalid_json"), (b"[]", "validation_failed")):
            answer = transport.send(Request("POST", "/tasks", content=body))
            assert answer.status_code == 400
            assert f'"code":"{code}"' in answer.content.decode()
        missing = transport.send(Request("GET", "/nowhere"))
        assert missing.status_code == 404
        assert b"Endpoint not found" in missing.content
    finally:
        transport.close()
