"""The README and the quickstart, run as written against a real ``taskmanager serve``.

Each ```bash block is run with bash (``set -euo pipefail``) against a server started in a
subprocess from the installed console script, with the documented address 127.0.0.1:8000
rewritten to a free port. A block passes when it exits 0 and shows ``"success": false`` exactly
when a comment line of the block says that it will.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from importlib.metadata import metadata
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from taskmanager._version import DISTRIBUTION
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
BIN = Path(sys.executable).parent
CONSOLE_SCRIPT = BIN / "taskmanager"
#: The documented server address, replaced by the test server's.
DOC_ADDRESS = "127.0.0.1:8000"
#: How the docs call the installed command (README set-up installs into ./.venv).
DOC_COMMAND = ".venv/bin/taskmanager"
SETUP_COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install '.[server]' && .venv/bin/taskmanager serve",
    "bash scripts/test.sh",
]
#: The install table: what each form of ``pip install`` in a checkout gives.
INSTALL_FORMS = ["pip install .", "pip install '.[server]'", "pip install '.[all]'", "pip install '.[dev]'"]
#: Every page whose commands a reader copies.
DOCUMENTED = [
    README,
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "examples" / "README.md",
    ROOT / "scripts" / "test.sh",
]
SERVER_COMMAND = re.compile(r"taskmanager (serve|db|keys|import-prismq)\b")
PIP_INSTALL = re.compile(r"pip install ([^`|\n#&]+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
BLOCK_TIMEOUT = 60.0
ERROR_SHOWN = '"success": false'
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
#: A block that reads one task back (a GET, not its history).
READ_BACK = re.compile(r"^curl -s \S+/api/tasks/\d+ \|", re.MULTILINE)


def section(markdown: str, title: str) -> str:
    """The text under the one ``## `` heading starting with ``title``, up to the next one."""
    found = [part for part in re.split(r"^## ", markdown, flags=re.MULTILINE)[1:] if part.startswith(title)]
    assert len(found) == 1, f"expected exactly one '## {title}' section, found {len(found)}"
    return found[0]


def code_blocks(markdown: str, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(markdown) if language is None or lang == language]


def clean_env() -> dict[str, str]:
    """The test's environment without TASKMANAGER_* settings, with the venv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMANAGER_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class Server:
    """``taskmanager serve`` in a subprocess of its own process group, stopped on exit."""

    def __init__(self, argv: list[str], *, port: int, cwd: Path, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = cwd / f"server-{port}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)  # not listening yet
                continue
            if response.status_code == 200 and response.json()["data"]["status"] == "healthy":
                return
            time.sleep(0.05)
        raise AssertionError(f"server not healthy after {START_TIMEOUT} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    @classmethod
    def start(cls, argv: list[str], *, port: int, cwd: Path, env: dict[str, str]) -> Server:
        """Start the server and return once ``GET /health`` says it is healthy."""
        server = cls(argv, port=port, cwd=cwd, env=env)
        try:
            server.wait_until_healthy()
        except BaseException:
            server.stop()
            raise
        return server

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_block(block: str, *, port: int, cwd: Path) -> str:
    """Run one documented block against the server on ``port``; return what it printed."""
    script = "set -euo pipefail\n" + block.replace(DOC_ADDRESS, f"127.0.0.1:{port}")
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    report = f"\n--- block\n{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"block exited with {done.returncode}{report}"
    assert '"success"' in done.stdout, f"block printed no API response{report}"
    expects_error = any(line.lstrip().startswith("#") and ERROR_SHOWN in line for line in block.splitlines())
    assert (ERROR_SHOWN in done.stdout) == expects_error, (
        f"block {'should' if expects_error else 'should not'} show an error{report}"
    )
    return done.stdout


# -- README -------------------------------------------------------------------------------------


def test_readme_sets_up_with_exactly_the_two_commands() -> None:
    setup = section(README.read_text(), "Set up on a fresh machine")
    assert [block.strip() for block in code_blocks(setup)] == SETUP_COMMANDS


def test_readme_install_table_gives_each_extra_once() -> None:
    table = section(README.read_text(), "What to install where")
    assert re.findall(r"^\| `(pip install [^`]+)` \|", table, flags=re.MULTILINE) == INSTALL_FORMS
    assert f"`{DISTRIBUTION}`" in table


def documented_installs() -> list[tuple[str, str]]:
    """Every ``pip install ...`` argument list written in the docs, with the page it is on."""
    return [
        (page.name, found.strip()) for page in DOCUMENTED for found in PIP_INSTALL.findall(page.read_text())
    ]


def test_every_documented_install_names_this_checkout_and_real_extras() -> None:
    """``pip install taskmanager`` would install another project: the docs install the checkout,
    with extras the distribution declares."""
    extras = set(metadata(DISTRIBUTION).get_all("Provides-Extra") or [])
    assert extras == {"server", "all", "dev"}
    installs = documented_installs()
    assert len(installs) >= 8, installs
    for page, arguments in installs:
        for word in shlex.split(arguments):
            if word.startswith("-") or word.startswith("$"):
                continue  # an option, or a shell variable in a script
            assert word != "taskmanager", f"{page}: pip install {arguments}"
            if word.startswith("."):
                named = re.fullmatch(r"\.(?:\[([a-z,]+)\])?", word)
                assert named is not None, f"{page}: pip install {arguments}"
                assert set(filter(None, (named.group(1) or "").split(","))) <= extras, page


def test_documented_installs_before_a_server_command_install_the_server() -> None:
    """A block (or inline command) that installs and then runs the server installs the extra:
    a plain ``pip install .`` has no server."""
    checked = 0
    for page in DOCUMENTED:
        text = page.read_text()
        for unit in [*code_blocks(text), *re.findall(r"`([^`\n]+)`", text)]:
            if "pip install" in unit and SERVER_COMMAND.search(unit):
                checked += 1
                assert re.search(r"pip install [^\n]*'\.\[(server|all|dev)\]'", unit), f"{page.name}:\n{unit}"
    assert checked >= 2, "the README's and the deployment guide's installs were not found"


@pytest.mark.slow  # a server process and the documented commands
def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    blocks = code_blocks(section(README.read_text(), "Walk-through"), "bash")
    assert len(blocks) >= 6, "the walk-through lost its blocks"
    assert all("taskmanager serve" not in block for block in blocks)
    port = free_port()
    env = clean_env() | {"TASKMANAGER_DATABASE_URL": f"sqlite:///{tmp_path / 'walkthrough.db'}"}
    argv = [str(CONSOLE_SCRIPT), "serve", "--port", str(port)]
    with Server.start(argv, port=port, cwd=tmp_path, env=env):
        outputs = [run_block(block, port=port, cwd=tmp_path) for block in blocks]
    assert any('"duplicate": true' in out for out in outputs), "no block shows a deduplicated create"
    read_backs = [out for block, out in zip(blocks, outputs, strict=True) if READ_BACK.search(block)]
    assert read_backs, "no block reads a task back"
    assert '"status": "completed"' in read_backs[-1], f"the read-back is not completed:\n{read_backs[-1]}"


# -- quickstart ---------------------------------------------------------------------------------


def serve_argv(block: str, port: int) -> list[str]:
    """A documented one-line ``taskmanager serve`` command, on ``port`` instead of 8000."""
    command = block.strip()
    assert "\n" not in command, f"a serve block must be one command:\n{block}"
    return ["bash", "-c", f"{command.replace(DOC_COMMAND, str(CONSOLE_SCRIPT))} --port {port}"]


@pytest.mark.slow  # a server process and the documented commands
def test_quickstart_runs_verbatim(tmp_path: Path) -> None:
    """Blocks run in order; a ``taskmanager serve`` block (re)starts the server, as a reader would."""
    blocks = code_blocks(QUICKSTART.read_text(), "bash")
    starts = [block for block in blocks if "taskmanager serve" in block]
    assert len(starts) == 2, "the quickstart starts the server in open mode, then with a key"
    assert any("TASKMANAGER_API_KEY=" in block for block in starts)
    port = free_port()
    server: Server | None = None
    try:
        for block in blocks:
            if "taskmanager serve" in block:
                if server is not None:
                    server.stop()
                server = Server.start(serve_argv(block, port), port=port, cwd=tmp_path, env=clean_env())
            else:
                assert server is not None, "a block runs before the server is started"
                run_block(block, port=port, cwd=tmp_path)
    finally:
        if server is not None:
            server.stop()
