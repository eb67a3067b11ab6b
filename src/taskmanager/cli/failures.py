"""How ``taskmanager`` ends on a mistake: one line on stderr and an exit status, no traceback.

A usage mistake (an unknown option, a missing argument, a value of the wrong kind) exits 2;
anything else a person can fix — a bad setting, an unreachable server or database, a wrong key, an
unknown id — exits 1. ``taskmanager --debug ...`` (or ``TASKMANAGER_DEBUG=1``) shows the
traceback instead, for a bug report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from taskmanager.errors import TaskManagerError

#: Exit status of a usage mistake (click's own) and of every other failure.
EXIT_USAGE = 2
EXIT_FAILED = 1
#: Longest message printed: a driver's error can carry a whole statement.
MAX_LINE = 300


class CommandFailed(Exception):
    """A failure a command has already put into words (``message``), and its exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _one_line(text: str) -> str:
    line = " ".join(text.strip().splitlines()[:1]) if text.strip() else ""
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def _settings_error(exc: Exception) -> str | None:
    """A pydantic error about ``Settings`` as ``bad setting TASKMANAGER_X: problem``."""
    errors = getattr(exc, "errors", None)
    if getattr(exc, "title", None) != "Settings" or errors is None:
        return None
    found = [
        f"TASKMANAGER_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}" for error in errors()
    ]
    return "bad setting " + "; ".join(found)


def describe(exc: BaseException) -> str:
    """``exc`` as the one line a person reads."""
    if isinstance(exc, CommandFailed):
        return exc.message
    if isinstance(exc, TaskManagerError):
        answered = getattr(exc, "status_code", None)  # the client's error for a server's answer
        details = f" ({'; '.join(exc.details)})" if exc.details else ""
        details += f" ({answered})" if answered else ""
        cause = f": {_cause(exc.__cause__)}" if exc.__cause__ is not None else ""
        return _one_line(f"{exc.message}{details}{cause}")
    settings = _settings_error(exc) if isinstance(exc, ValueError) else None
    if settings is not None:
        return _one_line(settings)
    if isinstance(exc, OSError):
        return _one_line(f"cannot connect: {exc}")
    text = str(exc) or type(exc).__name__
    return _one_line(f"{type(exc).__name__}: {text}")


def _kind(exc: BaseException) -> str | None:
    """``usage``, ``help`` (no arguments: show the help), ``abort`` or None: typer raises click's
    exceptions, from a copy of click of its own in recent versions, so they are known by name."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoArgsIsHelpError" in names:
        return "help"
    if "UsageError" in names:
        return "usage"
    return "abort" if "Abort" in names else None


def _cause(exc: BaseException) -> str:
    """Why a database could not be reached, as its driver says it (first line only)."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, OSError) and text[:1] == "[" else text


def _usage_line(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "taskmanager"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return f"{where}: {message} (see {where} --help)"


def debugging(args: Sequence[str]) -> bool:
    """``--debug`` before the command, or ``TASKMANAGER_DEBUG`` set to a true value."""
    flag = os.environ.get("TASKMANAGER_DEBUG", "").lower() in ("1", "true", "yes", "on")
    command_at = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
    return flag or "--debug" in args[:command_at]


def run(app: typer.Typer, args: Sequence[str]) -> int:
    """Run ``app`` on ``args``; its exit status, every failure reported as one line on stderr."""
    try:
        result = app(args=list(args), prog_name="taskmanager", standalone_mode=False)
    except KeyboardInterrupt:
        return 130
    except CommandFailed as exc:
        print(f"taskmanager: {exc.message}", file=sys.stderr)
        return exc.code
    except Exception as exc:
        return _failed(exc, args)
    return result if isinstance(result, int) else 0


def _failed(exc: Exception, args: Sequence[str]) -> int:
    kind = _kind(exc)
    if kind == "help":
        exc.show()  # type: ignore[attr-defined]
        return EXIT_USAGE
    if kind == "usage":
        print(_usage_line(exc), file=sys.stderr)
        return EXIT_USAGE
    if kind == "abort":
        print("taskmanager: aborted", file=sys.stderr)
        return EXIT_FAILED
    if debugging(args):
        raise exc
    print(f"taskmanager: {describe(exc)}", file=sys.stderr)
    return EXIT_FAILED


__all__ = ["EXIT_FAILED", "EXIT_USAGE", "CommandFailed", "debugging", "describe", "run"]
