"""Running the real ``taskmanager`` command in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

TASKMANAGER = str(Path(sys.executable).parent / "taskmanager")
#: How long a server may take to migrate and start listening.
START_TIMEOUT = 30.0


class ServerProcess:
    """``taskmanager serve`` on a free port; stopped (SIGTERM) on exit. ``command`` runs another
    program in its place (taking the same arguments); ``pass_fds`` are inherited by it and ``env``
    added to its environment."""

    def __init__(
        self,
        database_url: str,
        *,
        api_key: str | None = None,
        workers: int = 1,
        extra: list[str] | None = None,
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            *(command or [TASKMANAGER]),
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            *(extra or []),
        ]
        self.env = {**os.environ, **(env or {}), "TASKMANAGER_DATABASE_URL": database_url}
        self.env.pop("TASKMANAGER_API_KEY", None)
        if api_key is not None:
            self.env["TASKMANAGER_API_KEY"] = api_key
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=self.pass_fds
        )
        try:
            self._wait_until_up()
        except BaseException:
            self.__exit__()  # a server that did not start leaves no process and no open log
            raise
        return self

    def _wait_until_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # not listening yet: there is no event to wait on
        raise RuntimeError("server did not answer /health in time")

    def output(self) -> str:
        """Everything the server printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
