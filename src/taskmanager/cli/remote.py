"""What the operator's commands share: where the server is, the key, and how answers are shown.

Each command speaks HTTP through the project's own client (``TaskManagerClient``) to ``--url``
(``TASKMANAGER_URL``) with ``--api-key`` (``TASKMANAGER_API_KEY``), reads the ``data`` of the
API's answer as it is, and prints it as rich tables, or as JSON with ``--json``. An error answer
or an unreachable server becomes one line (``CommandFailed``), never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from taskmanager.cli.failures import CommandFailed
from taskmanager.client import TaskManagerClient
from taskmanager.client.config import DEFAULT_API_URL
from taskmanager.client.errors import (
    TaskManagerAPIError,
    TaskManagerAuthError,
    TaskManagerConnectionError,
    TaskManagerForbiddenError,
)
from taskmanager.client.protocol import Call, Request, encode, get

#: Seconds one request of an operator's command may take.
TIMEOUT = 30.0
#: The most tasks a listing shows unless told otherwise, and the page size of a bulk action.
PAGE = 50
BULK_PAGE = 500

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar=["TASKMANAGER_URL", "TASKMANAGER_API_URL"],
        show_envvar=True,
        help="The server's URL (TASKMANAGER_API_URL, the client's and the worker's, is read too).",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="TASKMANAGER_API_KEY", show_envvar=True, help="The API key to send."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the data of the API's answer as JSON (for scripts).")
]
DEFAULT_URL = DEFAULT_API_URL
#: The width of tables written to a pipe or a file (a terminal's own width is used on a terminal).
PIPE_WIDTH = 200


def out() -> Console:
    """Standard output, as it is now: a terminal's width there, wide when piped (no folding)."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def _as_is(data: Any) -> Any:
    return data


class Remote:
    """One server, as the operator's commands reach it: each method answers the route's ``data``."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url
        # No retries: a person at a terminal would rather hear at once that nothing answers.
        self.client = TaskManagerClient(url, api_key or None, timeout=TIMEOUT, retry_attempts=0)

    def get(self, path: str, **params: Any) -> Any:
        return self.send(get(path, _as_is, **params))

    def post(self, path: str, body: Any) -> Any:
        return self.send(Call(Request("POST", path, content=encode(body)), _as_is))

    def delete(self, path: str) -> Any:
        return self.send(Call(Request("DELETE", path), _as_is))

    def send(self, call: Call[Any]) -> Any:
        with self.failures():
            return self.client.send(call)

    @contextmanager
    def failures(self) -> Iterator[None]:
        """Turn the client's errors into one line naming the server, the key or the answer."""
        try:
            yield
        except TaskManagerConnectionError as exc:
            raise CommandFailed(f"cannot reach the server at {self.url}: {exc.message}") from None
        except TaskManagerAuthError:
            raise CommandFailed(
                f"the server at {self.url} refused the API key (401): "
                "give the right one with --api-key or TASKMANAGER_API_KEY"
            ) from None
        except TaskManagerForbiddenError as exc:
            raise CommandFailed(f"{exc.message} (403): the API key lacks the scope this needs") from None
        except TaskManagerAPIError as exc:
            raise CommandFailed(failure_line(exc)) from None

    def close(self) -> None:
        self.client.close()


def failure_line(exc: TaskManagerAPIError) -> str:
    details = f": {'; '.join(exc.details)}" if exc.details else ""
    return f"{exc.message} ({exc.status_code}){details}"


@contextmanager
def remote(url: str, api_key: str | None) -> Iterator[Remote]:
    server = Remote(url, api_key)
    try:
        yield server
    finally:
        server.close()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    found = Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, collapse_padding=True
    )
    for index, column in enumerate(columns):
        # The first column names the row (an id, a type, a worker): never folded.
        found.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in rows:
        found.add_row(*("" if cell is None else str(cell) for cell in row))
    return found


def short(value: Any, width: int = 60) -> str:
    """A JSON value in at most ``width`` characters, for a table cell."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = [
    "BULK_PAGE",
    "DEFAULT_URL",
    "PAGE",
    "JsonOption",
    "KeyOption",
    "Remote",
    "UrlOption",
    "out",
    "print_json",
    "remote",
    "short",
    "table",
]
