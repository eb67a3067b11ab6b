"""The ``taskmanager`` command run as a user runs it, in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from taskmanager import __version__
from tests.conftest import ADMIN_KEY, free_port
from tests.e2e.process import TASKMANAGER, ServerProcess


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKMANAGER, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_version_prints_the_package_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


def test_db_commands_upgrade_report_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    before = run("db", "current", "--database-url", url)
    assert before.returncode == 0, before.stderr
    assert "current: base (empty)" in before.stdout

    up = run("db", "upgrade", "--database-url", url)
    assert up.returncode == 0, up.stderr
    latest = run("db", "current", "--database-url", url).stdout
    head = latest.split("latest:")[1].strip()
    assert f"current: {head}" in latest

    back = run("db", "downgrade", "-1", "--database-url", url)
    assert back.returncode == 0, back.stderr
    assert f"current: {head}" not in run("db", "current", "--database-url", url).stdout

    asked = run("db", "downgrade", "base", "--database-url", url)
    assert asked.returncode == 1, "with no one to say yes, nothing is dropped"
    assert asked.stderr.strip().endswith("taskmanager: aborted")
    assert "current: base (empty)" not in run("db", "current", "--database-url", url).stdout

    down = run("db", "downgrade", "base", "--yes", "--database-url", url)
    assert down.returncode == 0, down.stderr
    assert "base (empty)" in down.stdout
    assert "current: base (empty)" in run("db", "current", "--database-url", url).stdout


def test_serve_refuses_open_mode_on_a_public_address(tmp_path: Path) -> None:
    db_file = tmp_path / "never.db"
    result = run(
        "serve", "--host", "0.0.0.0", "--database-url", f"sqlite:///{db_file}", env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 2
    assert "Refusing to serve in open mode" in result.stderr
    assert not db_file.exists(), "nothing is created when the server refuses to start"


def test_serve_says_where_it_listens_which_database_and_that_auth_is_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'banner.db'}"
    with ServerProcess(url, api_key=ADMIN_KEY) as server:
        assert httpx.get(f"{server.url}/api/task-types").status_code == 401
        assert httpx.get(f"{server.url}/api/task-types", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        banner = server.output()
    assert f"listening on http://127.0.0.1:{server.port}" in banner
    assert f"database: {url}" in banner
    assert "auth: on" in banner


def test_serve_in_open_mode_on_loopback_needs_no_key(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'open.db'}") as server:
        assert httpx.get(f"{server.url}/api/task-types").status_code == 200
        assert "auth: OFF (open mode)" in server.output()


def test_serve_writes_one_access_line_per_request_unless_told_not_to(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'access.db'}"
    with ServerProcess(url, api_key=ADMIN_KEY, extra=["--log-level", "info"]) as server:
        headers = {"X-API-Key": ADMIN_KEY, "X-Request-Id": "access-1"}
        assert httpx.get(f"{server.url}/api/task-types", headers=headers).status_code == 200
        logged = server.output()
    assert "GET /api/task-types 200 " in logged
    assert "request=access-1 key=other" in logged
    assert ADMIN_KEY not in logged
    with ServerProcess(url, api_key=ADMIN_KEY, extra=["--log-level", "info", "--no-access-log"]) as server:
        assert httpx.get(f"{server.url}/api/task-types", headers=headers).status_code == 200
        quiet = server.output()
    assert "GET /api/task-types" not in quiet


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            ["serve", "--api-key", "k", "--database-url", "postgresql://postgres@127.0.0.1:{port}/none"],
            {},
            "taskmanager: Database unavailable: ConnectionRefusedError: ",
        ),
        (
            ["serve", "--api-key", "k", "--database-url", "sqlite:///{tmp}/no/such/dir/x.db"],
            {},
            "taskmanager: Database unavailable: ",
        ),
        (
            ["serve", "--database-url", "sqlite:///{tmp}/x.db"],
            {"TASKMANAGER_ALLOW_IPS": "banana"},
            "taskmanager: bad setting TASKMANAGER_ALLOW_IPS: ",
        ),
        (
            ["keys", "list", "--database-url", "oracle://x"],
            {},
            "taskmanager: ValueError: Unsupported database URL scheme 'oracle'",
        ),
    ],
)
def test_a_mistake_at_start_is_one_line_and_exit_1(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    argv = [arg.format(port=free_port(), tmp=tmp_path) for arg in args]
    result = run(*argv, env={**os.environ, **env})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(said), lines[0]


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run("serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"taskmanager: cannot listen on 127.0.0.1:{port}: "), lines[0]
    assert "in use" in lines[0]


def test_serve_with_an_unknown_log_level_is_a_usage_mistake(tmp_path: Path) -> None:
    result = run("serve", "--log-level", "loud", "--database-url", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "taskmanager serve: Invalid value for --log-level: 'loud' is not one of critical, error, warning, "
        "info, debug, trace (see taskmanager serve --help)"
    )


def test_keys_create_with_types_makes_a_key_that_claims_only_those_types(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typed.db'}"
    created = run(
        "keys",
        "create",
        "scripts",
        "-s",
        "tasks:work",
        "--types",
        "PrismQ.Script.*",
        "-t",
        "demo",
        "--database-url",
        url,
    )
    assert created.returncode == 0, created.stderr
    (key,) = created.stdout.split()
    listed = run("keys", "list", "--database-url", url)
    assert "types PrismQ.Script.* demo" in listed.stdout
    admin = {"X-API-Key": ADMIN_KEY}
    with ServerProcess(url, api_key=ADMIN_KEY) as server:
        for name in ("PrismQ.Script.Write", "PrismQ.Video.Cut"):
            body = {"name": name, "version": "1", "param_schema": {"type": "object"}}
            assert (
                httpx.post(f"{server.url}/api/task-types/register", json=body, headers=admin).status_code
                == 200
            )
            task = {"type": name, "params": {}}
            assert httpx.post(f"{server.url}/api/tasks", json=task, headers=admin).status_code == 200
        claim = {"worker_id": "w", "limit": 10}
        claimed = httpx.post(f"{server.url}/api/tasks/claim", json=claim, headers={"X-API-Key": key}).json()
        assert [t["type"] for t in claimed["data"]["tasks"]] == ["PrismQ.Script.Write"]
