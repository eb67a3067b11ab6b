"""A plain install (no ``[server]`` extra): the client, the worker and ``taskmanager worker`` work,
and the server's commands say in one line what to install.

The server's dependencies are installed here (the tests need them), so each check runs in a
subprocess whose ``sitecustomize`` puts a finder first on ``sys.meta_path`` that refuses every
module of the server stack, as if it had never been installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmanager._server_extra import INSTALL_SERVER, OPTIONAL_SERVER_MODULES, SERVER_MODULES
from taskmanager._version import __version__
from tests.e2e.process import TASKMANAGER

#: What a plain install must not need: every top-level module the ``[server]`` extra brings.
SERVER_STACK = (
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "alembic",
    "asyncpg",
    "asyncmy",
    "jsonschema",
    "redis",
    "regex",
    "pydantic_settings",
    "prometheus_client",
    "swagger_ui_bundle",
    "croniter",
    "tzdata",
)
BLOCKER = f'''
import sys

BLOCKED = {SERVER_STACK!r}


class RefuseServerStack:
    """Finds nothing of the server's: importing it fails as it would on a plain install."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, RefuseServerStack())
'''
#: Run in the blocked interpreter: imports, clients, and nothing of the server stack loaded.
CLIENT_SCRIPT = f"""
import asyncio
import sys

import taskmanager
import taskmanager.client
import taskmanager.worker
from taskmanager import AsyncTaskManagerClient, TaskManagerClient, Worker

client = TaskManagerClient("http://127.0.0.1:9", "key")
assert client.config.base_url == "http://127.0.0.1:9/api"
client.close()


async def async_client() -> None:
    async with AsyncTaskManagerClient("http://127.0.0.1:9") as client:
        assert client.config.base_url == "http://127.0.0.1:9/api"


asyncio.run(async_client())
worker = Worker(2, api_url="http://127.0.0.1:9")


@worker.task("demo.echo")
def echo(ctx):
    return ctx.params

for make in (TaskManagerClient, AsyncTaskManagerClient):
    try:
        make("sqlite:///never.db")
    except ImportError as exc:
        assert {INSTALL_SERVER!r} in str(exc), exc
    else:
        raise AssertionError("an embedded client was built without the server")
loaded = sorted(name for name in sys.modules if name.partition(".")[0] in {SERVER_STACK!r})
assert not loaded, loaded
print("plain install ok", taskmanager.__version__)
"""


@pytest.fixture
def plain_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process started as if the server extra were not installed."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMANAGER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_blocked_modules_are_the_ones_the_command_checks() -> None:
    assert set(SERVER_STACK) == set(SERVER_MODULES + OPTIONAL_SERVER_MODULES)


def test_the_blocker_refuses_the_server_stack(plain_env: dict[str, str], tmp_path: Path) -> None:
    done = run([sys.executable, "-c", "import sqlalchemy"], plain_env, tmp_path)
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'sqlalchemy' (blocked by the test)" in done.stderr


def test_the_client_and_the_worker_import_and_build_without_the_server(
    plain_env: dict[str, str], tmp_path: Path
) -> None:
    done = run([sys.executable, "-c", CLIENT_SCRIPT], plain_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"plain install ok {__version__}"
    assert not (tmp_path / "never.db").exists()


def test_the_command_runs_worker_and_version_without_the_server(
    plain_env: dict[str, str], tmp_path: Path
) -> None:
    helped = run([TASKMANAGER, "--help"], plain_env, tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "worker" in helped.stdout
    assert "serve" in helped.stdout
    version = run([TASKMANAGER, "version"], plain_env, tmp_path)
    assert (version.returncode, version.stdout.strip()) == (0, __version__), version.stderr
    worker = run([TASKMANAGER, "worker", "--help"], plain_env, tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert "module:attribute" in worker.stdout


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["serve"], "serve"),
        (["db", "upgrade"], "db upgrade"),
        (["db", "downgrade", "base"], "db downgrade"),
        (["db", "current"], "db current"),
        (["keys", "create", "ops", "--scope", "admin"], "keys create"),
        (["keys", "list"], "keys list"),
        (["keys", "revoke", "1"], "keys revoke"),
        (["import-prismq", "--from", "mysql://nobody@127.0.0.1/none"], "import-prismq"),
        (["worker", "app:worker", "--api-url", "sqlite:///queue.db"], "worker with a database URL"),
    ],
)
def test_server_commands_name_the_install_command_in_one_line(
    plain_env: dict[str, str], tmp_path: Path, argv: list[str], command: str
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = run([TASKMANAGER, *argv], plain_env, workdir)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"taskmanager {command} needs the server: {INSTALL_SERVER}\n"
    assert list(workdir.iterdir()) == [], "nothing is created"
