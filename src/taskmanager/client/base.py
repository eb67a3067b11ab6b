"""What the sync and async clients share besides the core: how they are configured."""

from __future__ import annotations

from typing import Generic, TypeVar

from taskmanager.client.config import TaskManagerConfig, make_config
from taskmanager.client.core import ClientCore

Transport = TypeVar("Transport")


class ClientBase(Generic[Transport]):
    """Configuration (arguments, a ``TaskManagerConfig``, or ``TASKMANAGER_*``), the core, and a
    transport chosen by the URL: HTTP for ``http(s)://``, the in-process engine for a database."""

    def __init__(
        self,
        api_url: str | TaskManagerConfig | None = None,
        api_key: str | None = None,
        *,
        config: TaskManagerConfig | None = None,
        timeout: float | None = None,
        retry_attempts: int | None = None,
        retries: int | None = None,
        retry_backoff: float | None = None,
        retry_max_delay: float | None = None,
        worker_id: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        if retries is not None:
            if retry_attempts is not None and retry_attempts != retries:
                raise TypeError("give retries or retry_attempts (the same setting), not both")
            retry_attempts = retries  # the short name: times a failed safe request is sent again
        overrides = {
            "timeout": timeout,
            "retry_attempts": retry_attempts,
            "retry_backoff": retry_backoff,
            "retry_max_delay": retry_max_delay,
            "worker_id": worker_id,
        }
        self.config = make_config(api_url, api_key, config, overrides)
        self.core = ClientCore(self.config)
        self._transport: Transport = transport or self._default_transport()

    def _default_transport(self) -> Transport:
        raise NotImplementedError

    @property
    def worker_id(self) -> str:
        """The worker id sent when a call names none."""
        return self.core.worker_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.api_url!r})"


__all__ = ["ClientBase"]
