"""Server settings, read once at the edge from ``TASKMANAGER_*`` variables or CLI flags (API.md C)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskmanager.engine.policy import (
    DEFAULT_CLAIM_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    Defaults,
)

#: The embedded default: a SQLite file in the working directory, so `taskmanager serve` needs no setup.
DEFAULT_DATABASE_URL = "sqlite:///./taskmanager.db"
#: Request bodies larger than this get 413 (PrismQ's limit).
DEFAULT_MAX_REQUEST_BYTES = 1_048_576


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

    @field_validator("api_key")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    def engine_defaults(self) -> Defaults:
        return Defaults(
            max_attempts=self.max_attempts,
            claim_timeout=self.claim_timeout,
            retry_delay=self.retry_delay,
            enable_history=self.enable_history,
            enable_schema_validation=self.enable_schema_validation,
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
