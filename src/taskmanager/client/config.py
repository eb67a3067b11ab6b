"""Client configuration: where the server is, the key, timeouts and the retry policy.

Read once, when a client is made: from its arguments, else ``TASKMANAGER_API_URL`` and
``TASKMANAGER_API_KEY``. A database URL (``sqlite:///local.db``, ``postgresql://...``) instead of
an ``http(s)://`` one selects the embedded mode: the engine runs in-process, with no server.
"""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field, replace
from typing import Any

#: Where a client looks when given no URL: the address ``taskmanager serve`` listens on by default.
DEFAULT_API_URL = "http://127.0.0.1:8000"
#: Seconds one HTTP request may take (connect, send, wait, read).
DEFAULT_TIMEOUT = 30.0
#: Times a failed request that is safe to repeat is sent again (so at most 4 sends in all).
DEFAULT_RETRY_ATTEMPTS = 3
#: First retry delay in seconds; each next one doubles: 1 s, 2 s, 4 s.
DEFAULT_RETRY_BACKOFF = 1.0
#: No retry waits longer than this; a ``Retry-After`` asking for more is not waited for.
DEFAULT_RETRY_MAX_DELAY = 30.0
#: Each retry delay is spread by up to ±this fraction, so many clients do not retry in lock-step.
RETRY_JITTER = 0.1
#: URL schemes that name a database: the client then runs the engine in-process (embedded mode).
DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})
API_SUFFIX = "/api"


def is_database_url(url: str) -> bool:
    """True for ``sqlite:///...``, ``postgresql+asyncpg://...`` and the like."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    return scheme in DATABASE_SCHEMES


def server_root(url: str) -> str:
    """``http://host:8000/api/`` → ``http://host:8000``: the URL may be given with or without /api."""
    root = url.strip().rstrip("/")
    if root.endswith(API_SUFFIX):
        root = root[: -len(API_SUFFIX)]
    return root


def default_worker_id() -> str:
    """``<host>-<pid>``: unique enough among the processes of one deployment, and readable."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class TaskManagerConfig:
    """Everything a client can be told. ``api_url``/``api_key`` left out come from the environment."""

    api_url: str | None = None
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY
    #: The worker id sent when a call names none (claims, completes...).
    worker_id: str | None = None
    #: HTTP headers added to every request.
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.retry_attempts < 0:
            raise ValueError("retry_attempts must be 0 or more")
        if self.retry_backoff < 0 or self.retry_max_delay < 0:
            raise ValueError("retry delays must be 0 or more")

    def resolved(self) -> TaskManagerConfig:
        """This config with the URL, key and worker id filled in (from the environment if unset)."""
        url = self.api_url or os.environ.get("TASKMANAGER_API_URL") or DEFAULT_API_URL
        key = self.api_key if self.api_key is not None else os.environ.get("TASKMANAGER_API_KEY")
        return replace(
            self,
            api_url=url if is_database_url(url) else server_root(url),
            api_key=key or None,
            worker_id=self.worker_id or default_worker_id(),
        )

    @property
    def embedded(self) -> bool:
        return self.api_url is not None and is_database_url(self.api_url)

    @property
    def base_url(self) -> str:
        """The URL every route is under (``http://host:8000/api``)."""
        return f"{server_root(self.api_url or DEFAULT_API_URL)}{API_SUFFIX}"

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``: 1, 2, 4 ... (±10%), capped."""
        base = min(self.retry_max_delay, self.retry_backoff * 2.0 ** min(attempt, 32))
        spread = base * RETRY_JITTER
        return max(0.0, base + (rng or random).uniform(-spread, spread))


def make_config(
    api_url: str | TaskManagerConfig | None,
    api_key: str | None,
    config: TaskManagerConfig | None,
    overrides: dict[str, Any],
) -> TaskManagerConfig:
    """The config a client constructor was given, in any of its accepted forms, resolved."""
    if isinstance(api_url, TaskManagerConfig):
        if config is not None:
            raise TypeError("give a TaskManagerConfig once, positionally or as config=")
        config, api_url = api_url, None
    base = config or TaskManagerConfig()
    given = {name: value for name, value in overrides.items() if value is not None}
    if api_url is not None:
        given["api_url"] = api_url
    if api_key is not None:
        given["api_key"] = api_key
    return replace(base, **given).resolved()


__all__ = ["TaskManagerConfig", "is_database_url", "make_config", "server_root"]
