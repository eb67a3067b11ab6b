"""Server settings, read once at the edge from ``TASKMANAGER_*`` variables or CLI flags.

The table of them, with their defaults, is docs/reference/configuration.md.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskmanager.engine.callbacks import FIRST_RETRY_DELAY
from taskmanager.engine.observe import DEFAULT_STATS_MAX_AGE
from taskmanager.engine.policy import (
    DEFAULT_CLAIM_TIMEOUT,
    DEFAULT_KEEP_COMPLETED,
    DEFAULT_KEEP_FAILED,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    Defaults,
)

#: The embedded default: a SQLite file in the working directory, so `taskmanager serve` needs no setup.
DEFAULT_DATABASE_URL = "sqlite:///./taskmanager.db"
#: Request bodies larger than this get 413 (PrismQ's limit).
DEFAULT_MAX_REQUEST_BYTES = 1_048_576
#: Requests per minute for a key without its own limit, the admin key, and each address in open
#: mode. 0 = no limit: a queue's own workers are its heaviest callers, so limits are opted into
#: per key (``rate_limit`` of ``POST /api-keys``) or here.
DEFAULT_RATE_LIMIT = 0
#: Wrong API keys one client address may present per minute before it gets 429 for every key.
DEFAULT_AUTH_FAILURE_LIMIT = 30
#: Seconds a server trusts a key it looked up: a key revoked elsewhere stops working within this.
DEFAULT_KEY_CACHE_SECONDS = 5.0
#: Seconds a client has to send a whole request (head and body) once its connection opened or its
#: request began: a 1 MiB body needs ~35 KB/s; slow-loris clients and idle sockets are let go.
DEFAULT_REQUEST_TIMEOUT = 30.0
#: Seconds an idle keep-alive connection is kept between two requests (uvicorn's default).
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
#: Largest request line plus headers: nginx allows 4 buffers of 8 KB by default; 64 KiB holds
#: any real client's head, and bounds what a hostile one makes the server buffer.
DEFAULT_MAX_HEADER_BYTES = 65_536
#: Open connections one server process accepts; more are answered 503 and closed. Below the common
#: 1024 open-file limit's reach once `serve` raises it (sockets, database connections, files).
DEFAULT_MAX_CONNECTIONS = 1000
#: Requests one process runs at once (a long-poll claim counts while it waits); more get 503 at
#: once. On two cores, 256 keeps the event loop answering /health in well under a second.
DEFAULT_MAX_CONCURRENT_REQUESTS = 256


class Settings(BaseSettings):
    """Everything the server can be told; see the configuration table in the README."""

    model_config = SettingsConfigDict(env_prefix="TASKMANAGER_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    api_key: str | None = None
    claim_timeout: int = Field(DEFAULT_CLAIM_TIMEOUT, ge=1, le=86400)
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    retry_delay: float = Field(DEFAULT_RETRY_DELAY, ge=0, le=86400)
    enable_history: bool = True
    enable_schema_validation: bool = True
    cors_origins: str = "*"
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1024)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allow_open: bool = False
    db_pool_size: int = Field(10, ge=1, le=200)
    migrate_on_start: bool = True
    rate_limit: int = Field(DEFAULT_RATE_LIMIT, ge=0, le=1_000_000)
    auth_failure_limit: int = Field(DEFAULT_AUTH_FAILURE_LIMIT, ge=0, le=1_000_000)
    key_cache_seconds: float = Field(DEFAULT_KEY_CACHE_SECONDS, ge=0, le=3600)
    redis_url: str | None = None
    redis_prefix: str = Field("taskmanager:", max_length=200)
    trusted_proxies: str = ""
    allow_ips: str = ""
    deny_ips: str = ""
    keep_completed: int = Field(DEFAULT_KEEP_COMPLETED, ge=0, le=10 * 365 * 86400)
    keep_failed: int = Field(DEFAULT_KEEP_FAILED, ge=0, le=10 * 365 * 86400)
    metrics_public: bool = False
    stats_max_age: float = Field(DEFAULT_STATS_MAX_AGE, ge=0, le=3600)
    request_timeout: float = Field(DEFAULT_REQUEST_TIMEOUT, gt=0, le=3600)
    keep_alive_timeout: int = Field(DEFAULT_KEEP_ALIVE_TIMEOUT, ge=1, le=3600)
    max_header_bytes: int = Field(DEFAULT_MAX_HEADER_BYTES, ge=1024, le=16 * 1_048_576)
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1, le=1_000_000)
    max_concurrent_requests: int = Field(DEFAULT_MAX_CONCURRENT_REQUESTS, ge=0, le=1_000_000)
    #: One line per request at info on ``taskmanager.access`` (uvicorn's own access log is off).
    access_log: bool = True
    #: The HMAC key of callback deliveries (B.5); unset: ``callback_url`` is refused.
    webhook_secret: str | None = None
    #: Networks callbacks may reach although not public (CIDRs, comma separated).
    webhook_allow_networks: str = ""
    #: Seconds before a failed delivery's first retry; each next waits twice as long (at most
    #: 15 min), 10 tries in all.
    webhook_retry_delay: float = Field(FIRST_RETRY_DELAY, gt=0, le=86400)

    @field_validator("api_key", "redis_url", "webhook_secret")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("trusted_proxies", "allow_ips", "deny_ips", "webhook_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(f"{part!r} is not an IP address or network") from None
        return value

    def engine_defaults(self) -> Defaults:
        return Defaults(
            max_attempts=self.max_attempts,
            claim_timeout=self.claim_timeout,
            retry_delay=self.retry_delay,
            enable_history=self.enable_history,
            enable_schema_validation=self.enable_schema_validation,
            keep_completed_seconds=self.keep_completed,
            keep_failed_seconds=self.keep_failed,
        )

    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()] or ["*"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: open mode is allowed only there."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
