"""A full disk under SQLite: the database file on an 8 MiB tmpfs (mounted by the test; CI and the
developers' machines run as root), filled up while a ``taskmanager serve`` process takes creates.

Creates that cannot be written get a clear 503 ``unavailable`` envelope (never a 500, never a
crash), every create acknowledged before stays readable, and once space returns creates succeed
again without the server being restarted; the file passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.harness import HEADERS
from tests.conftest import ADMIN_KEY
from tests.e2e.process import ServerProcess

pytestmark = pytest.mark.slow  # a server process: docs/development.md

#: Room for the migrated database and its write-ahead log (the migrations that rebuild tables
#: write a few MiB of WAL) before the test fills the rest.
FS_SIZE = "8m"
PADDING = "x" * 4000  # makes each task a page or so: the disk fills in a few hundred creates


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no space left (already none: nothing to do)."""
    try:
        filler = path.open("wb", buffering=0)  # unbuffered: closing it has nothing left to flush
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return
    with filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def create(client: httpx.Client, url: str, n: int) -> httpx.Response:
    return client.post(f"{url}/api/tasks", json={"type": "disk.fill", "params": {"n": n, "pad": PADDING}})


def test_a_full_disk_gives_503_loses_nothing_and_recovers_by_itself(small_fs: Path) -> None:
    database = small_fs / "taskmanager.db"
    filler = small_fs / "filler"
    outcomes: Counter[int] = Counter()
    acked: list[int] = []
    with (
        ServerProcess(f"sqlite:///{database}", api_key=ADMIN_KEY) as server,
        httpx.Client(headers=HEADERS, timeout=10) as client,
    ):
        registered = client.post(
            f"{server.url}/api/task-types/register",
            json={"name": "disk.fill", "version": "1", "param_schema": {"type": "object"}, "dedupe": "none"},
        )
        assert registered.status_code == 200
        for n in range(20):
            answer = create(client, server.url, n)
            assert answer.status_code == 200
            acked.append(answer.json()["data"]["id"])
        fill(filler)

        refused = None
        for n in range(20, 2000):
            answer = create(client, server.url, n)
            outcomes[answer.status_code] += 1
            if answer.status_code == 200:
                acked.append(answer.json()["data"]["id"])
                continue
            refused = answer
            break
        assert refused is not None, "the disk never filled up"
        assert refused.status_code == 503, refused.text
        envelope = refused.json()
        assert (envelope["success"], envelope["code"]) == (False, "unavailable")
        assert "Traceback" not in refused.text
        assert outcomes[500] == 0

        # Reads go on while the disk is full; a second create is refused the same way.
        for task_id in acked:
            assert client.get(f"{server.url}/api/tasks/{task_id}").status_code == 200
        assert create(client, server.url, 5000).status_code == 503

        filler.unlink()  # space returns: no restart, the next creates succeed
        deadline = time.monotonic() + 30
        while True:
            answer = create(client, server.url, 6000)
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 200:
                acked.append(answer.json()["data"]["id"])
                break
            assert time.monotonic() < deadline, "creates did not recover once space returned"
            time.sleep(0.1)  # the server has nothing to tell us when it can write again
        for task_id in acked:
            assert client.get(f"{server.url}/api/tasks/{task_id}").status_code == 200
        assert client.get(f"{server.url}/health").status_code == 200
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == len(acked)
