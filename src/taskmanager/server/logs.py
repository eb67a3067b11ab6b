"""The server's logging, as ``taskmanager serve`` hands it to uvicorn (``log_config``): uvicorn's
own configuration, plus TaskManager's loggers (``taskmanager.*``: the access log, key events,
errors) on the same handler, at the same level. Every server process applies it."""

from __future__ import annotations

import copy
from typing import Any


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with ``taskmanager`` loggers at ``level`` beside its own."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["taskmanager"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


__all__ = ["log_config"]
