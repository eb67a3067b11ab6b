"""The distribution's metadata: a plain install pulls in no server stack; ``[server]`` does.

Read twice: from the installed distribution (what ``pip install -e`` recorded) and from a wheel
built from the source tree, as ``pip install .`` would build it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from importlib.metadata import metadata, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from taskmanager._version import DISTRIBUTION, __version__
from taskmanager.server import dashboard
from tests.e2e.test_plain_install import SERVER_STACK

ROOT = Path(__file__).resolve().parents[2]
#: The distributions that bring SERVER_STACK's modules (by their PyPI names), where a module's
#: distribution is not named after it.
DISTRIBUTION_OF = {"swagger_ui_bundle": "swagger-ui-bundle-v2"}
SERVER_DISTRIBUTIONS = {DISTRIBUTION_OF.get(m, m.replace("_", "-")) for m in SERVER_STACK}
#: What the client and the worker need, and the command's own framework.
BASE_DISTRIBUTIONS = {"pydantic", "httpx", "pycurl", "aiohttp", "sniffio", "uvloop", "typer", "rich"}
TEST_TOOLS = {"pytest", "pytest-asyncio", "ruff", "mypy", "import-linter"}


def test_the_stack_lists_name_the_same_packages() -> None:
    assert {DISTRIBUTION_OF.get(m, m.replace("_", "-")) for m in SERVER_STACK} == SERVER_DISTRIBUTIONS


def resolve(requirements: list[str], extra: str) -> set[str]:
    """The distributions installing ``DISTRIBUTION[extra]`` ("" for none) asks for, with the
    extras that refer to other extras of the same distribution followed."""
    found: set[str] = set()
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name == DISTRIBUTION:
            for inner in requirement.extras:
                found |= resolve(requirements, inner)
        else:
            found.add(name)
    return found


def check_split(requirements: list[str]) -> None:
    base = resolve(requirements, "")
    assert base == BASE_DISTRIBUTIONS
    server = resolve(requirements, "server")
    assert server - base == SERVER_DISTRIBUTIONS
    assert resolve(requirements, "all") >= server
    dev = resolve(requirements, "dev")
    assert dev >= server | TEST_TOOLS


def test_the_installed_distribution_keeps_the_server_stack_in_its_extra() -> None:
    assert metadata(DISTRIBUTION)["Version"] == __version__
    check_split(requires(DISTRIBUTION) or [])


def test_the_distribution_name_is_not_the_import_package_name() -> None:
    """``taskmanager`` on PyPI is another project: ``pip install taskmanager`` must not be ours."""
    assert canonicalize_name(DISTRIBUTION) == DISTRIBUTION != "taskmanager"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_the_wheel_declares_the_same_split(wheel: Path) -> None:
    assert re.fullmatch(rf"taskmanager_queue-{re.escape(__version__)}-py3-none-any\.whl", wheel.name)
    found = wheel_metadata(wheel)
    assert (found["Name"], found["Version"]) == (DISTRIBUTION, __version__)
    assert set(found.get_all("Provides-Extra") or []) == {"server", "all", "dev"}
    check_split(found.get_all("Requires-Dist") or [])


def test_the_wheel_holds_the_package_the_command_and_the_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"taskmanager/__init__.py", "taskmanager/_version.py", "taskmanager/prismq/__init__.py"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert any(n.startswith("taskmanager/store/migrations/versions/") for n in names)
    page = {f"taskmanager/server/dashboard/{name}" for name in ("index.html", *dashboard.ASSETS)}
    assert page <= names, "the dashboard's files"
    assert "taskmanager = taskmanager.cli:main" in entry_points
