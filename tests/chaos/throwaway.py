"""A database server of the test's own, to stop and start while work flows: the shared PostgreSQL
and MariaDB of the machine must never be stopped (other runs use them).

PostgreSQL: ``initdb`` + ``pg_ctl`` (as the ``postgres`` user when run as root, which ``initdb``
refuses to be). MariaDB: ``mariadb-install-db`` + ``mariadbd`` with ``--skip-grant-tables``.
Each listens on 127.0.0.1 on a free port and keeps its files in the test's tmp dir.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port

START_TIMEOUT = 60.0


def tmp_root(tmp: Path) -> str | None:
    """Where a server running as another user can reach its files: the system's tmp dir as root."""
    return None if os.geteuid() == 0 else str(tmp)


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, ready: bool, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _listening(port) == ready:
            return
        time.sleep(0.05)  # a server starting or stopping: no event to wait on from here
    raise RuntimeError(f"{what} did not {'start' if ready else 'stop'} in time")


class ThrowawayPostgres:
    def __init__(self, tmp: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(bins[-1]).parent
        # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
        self.dir = Path(tempfile.mkdtemp(prefix="taskmanager-chaos-pg-", dir=tmp_root(tmp)))
        self.dir.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/chaos"
        data = str(self.dir / "data")
        subprocess.run(
            _as_postgres(
                [str(self.bin / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        self.data = data

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    self.data,
                    "-o",
                    options,
                    "-l",
                    str(self.dir / "log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        _wait("PostgreSQL", True, self.port)

    def create_database(self) -> None:
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "chaos"],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"]),
            check=True,
            capture_output=True,
        )
        _wait("PostgreSQL", False, self.port)

    def close(self) -> None:
        if _listening(self.port):
            subprocess.run(
                _as_postgres([str(self.bin / "pg_ctl"), "-D", self.data, "-m", "immediate", "stop"]),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


class ThrowawayMariaDB:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "mariadb"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"mysql://root@127.0.0.1:{self.port}/chaos"
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = (self.dir / "log").open("ab")
        self.proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.dir / 'sock'}",
                "--user=root",
                "--skip-grant-tables",
                "--innodb-flush-log-at-trx-commit=2",
                f"--pid-file={self.dir / 'pid'}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        _wait("MariaDB", True, self.port)

    def create_database(self) -> None:
        subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                str(self.port),
                "-u",
                "root",
                "-e",
                "CREATE DATABASE chaos CHARACTER SET utf8mb4",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        _wait("MariaDB", False, self.port)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
