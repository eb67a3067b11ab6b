"""Running the real ``taskmanager`` command in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

TASKMANAGER = str(Path(sys.executable).parent / "taskmanager")
#: How long a server may take to migrate and start listening.
START_TIMEOUT = 30.0
#: ``taskmanager`` with its claimers' fallback re-checks off (``woken_server.py``).
WOKEN_SERVER = [sys.executable, str(Path(__file__).with_name("woken_server.py"))]
#: What a claim on a ``WokenServer`` waits for at most; nothing but a wake-up ends it earlier.
CLAIM_WAIT = 20
#: How soon after the create a waiting claim must return. A wake-up takes milliseconds; the bound
#: only leaves room for a loaded machine, far below ``CLAIM_WAIT``.
WAKE_BOUND = 5.0


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


class WokenServer(ServerProcess):
    """A server whose long-polling claimers only a wake-up ends early: ``woken_server.py`` turns
    their fallback re-checks off and writes a byte to a pipe when one begins to wait."""

    def __init__(self, database_url: str, **options: Any) -> None:
        self._waits, write_end = os.pipe()
        self._write_end = write_end
        super().__init__(
            database_url,
            command=WOKEN_SERVER,
            pass_fds=(write_end,),
            env={"TASKMANAGER_TEST_WAITING_FD": str(write_end)},
            **options,
        )

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            for fd in (self._waits, self._write_end):
                os.close(fd)

    def claim_woken_by(self, headers: dict[str, str], create: Callable[[], int], **claim: Any) -> None:
        """Start a claim (``claim``: more of its fields) that waits here; once it waits, ``create``
        a task (elsewhere) and return its id; assert the claim returns that task within
        ``WAKE_BOUND`` seconds of the create."""
        os.set_blocking(self._waits, False)
        while True:  # forget the waits of earlier claims
            try:
                if not os.read(self._waits, 4096):
                    break
            except BlockingIOError:
                break
        os.set_blocking(self._waits, True)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(
                httpx.post,
                f"{self.url}/api/tasks/claim",
                headers=headers,
                json={"worker_id": "woken", "wait": CLAIM_WAIT, **claim},
                timeout=CLAIM_WAIT + 30,
            )
            deadline = time.monotonic() + 30
            while not select.select([self._waits], [], [], 0.1)[0]:
                assert not waiting.done(), f"the claim ended before it waited: {waiting.result().text}"
                assert time.monotonic() < deadline, "the claim never began to wait"
            started = time.monotonic()
            created = create()
            claimed = waiting.result(timeout=CLAIM_WAIT + 30)
            woken_after = time.monotonic() - started
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["data"]["id"] == created
        assert woken_after < WAKE_BOUND, f"the create woke the claim only after {woken_after:.1f} s"
