"""A full disk: the database's files on a small tmpfs (mounted by the test; CI and the
developers' machines run as root), filled up while a ``taskmanager serve`` process takes creates.

- SQLite: the database file on the tmpfs; afterwards it passes ``PRAGMA integrity_check``.
- PostgreSQL: the tables and indexes in a tablespace on the tmpfs (the database's
  ``default_tablespace`` when the server migrates it), so PostgreSQL itself reports the full disk
  (``could not extend file``, SQLSTATE 53100) while its write-ahead log goes on.

Creates that cannot be written get a clear 503 ``unavailable`` envelope (never a 500, never a
crash), every create acknowledged before stays readable, and once space returns creates succeed
again without the server being restarted. (MariaDB keeps its tables where its own data
directory is; a test cannot move one database's tables to a small filesystem without
reconfiguring the server, so it is not tested here.)
"""

from __future__ import annotations

import asyncio
import errno
import pwd
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.harness import HEADERS
from tests.conftest import ADMIN_KEY, PG_ADMIN_URL, _admin, selected_databases
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


@pytest.fixture
def pg_on_small_fs() -> Iterator[tuple[str, Path]]:
    """A PostgreSQL database whose tables will be made in a tablespace on an 8 MiB tmpfs owned
    by the server's user (outside pytest's root-only temporary directory, which the server
    cannot enter); its URL and the tmpfs."""
    if "postgresql" not in selected_databases():
        pytest.skip("PostgreSQL is not among TASKMANAGER_TEST_DATABASES")
    owner = pwd.getpwnam("postgres")
    name = f"tm_disk_{uuid.uuid4().hex[:8]}"
    mount = Path("/tmp") / name
    mount.mkdir(mode=0o755)
    options = f"size={FS_SIZE},uid={owner.pw_uid},gid={owner.pw_gid},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    statements = [
        f"CREATE TABLESPACE {name} LOCATION '{mount}'",
        f'CREATE DATABASE "{name}"',
        f'ALTER DATABASE "{name}" SET default_tablespace = {name}',
    ]
    try:
        asyncio.run(_admin(PG_ADMIN_URL, statements))
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", mount
    finally:
        drops = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f"DROP TABLESPACE IF EXISTS {name}"]
        asyncio.run(_admin(PG_ADMIN_URL, drops))
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


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


def fill_refuse_recover(url: str, filler: Path) -> list[int]:
    """Against the server at ``url``: creates until the disk is full (after ``filler`` takes the
    space), each refused create a 503, reads on meanwhile, creates again once ``filler`` is gone;
    the ids of every create acknowledged."""
    outcomes: Counter[int] = Counter()
    acked: list[int] = []
    with httpx.Client(headers=HEADERS, timeout=10) as client:
        registered = client.post(
            f"{url}/api/task-types/register",
            json={"name": "disk.fill", "version": "1", "param_schema": {"type": "object"}, "dedupe": "none"},
        )
        assert registered.status_code == 200
        for n in range(20):
            answer = create(client, url, n)
            assert answer.status_code == 200
            acked.append(answer.json()["data"]["id"])
        fill(filler)

        refused = None
        for n in range(20, 5000):
            answer = create(client, url, n)
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
            assert client.get(f"{url}/api/tasks/{task_id}").status_code == 200
        assert create(client, url, 9000).status_code == 503

        filler.unlink()  # space returns: no restart, the next creates succeed
        deadline = time.monotonic() + 30
        while True:
            answer = create(client, url, 10_000)
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 200:
                acked.append(answer.json()["data"]["id"])
                break
            assert time.monotonic() < deadline, "creates did not recover once space returned"
            time.sleep(0.1)  # the server has nothing to tell us when it can write again
        for task_id in acked:
            assert client.get(f"{url}/api/tasks/{task_id}").status_code == 200
        assert client.get(f"{url}/health").status_code == 200
        listed = client.get(f"{url}/api/tasks", params={"type": "disk.fill", "limit": 1}).json()["data"]
        assert listed["total"] == len(acked)  # nothing half-written: no task beyond those acknowledged
    return acked


def test_a_full_disk_gives_503_loses_nothing_and_recovers_by_itself(small_fs: Path) -> None:
    database = small_fs / "taskmanager.db"
    with ServerProcess(f"sqlite:///{database}", api_key=ADMIN_KEY) as server:
        acked = fill_refuse_recover(server.url, small_fs / "filler")
        assert "503 unavailable: POST /api/tasks: " in server.output()  # the log names the cause
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == len(acked)


def test_a_full_tablespace_on_postgresql_gives_503_and_recovers_by_itself(
    pg_on_small_fs: tuple[str, Path],
) -> None:
    url, mount = pg_on_small_fs
    with ServerProcess(url, api_key=ADMIN_KEY) as server:
        fill_refuse_recover(server.url, mount / "filler")
        # PostgreSQL said why (SQLSTATE 53100), and the log names it.
        assert "503 unavailable: POST /api/tasks: DiskFullError: could not extend file" in server.output()
