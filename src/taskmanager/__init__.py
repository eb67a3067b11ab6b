"""TaskManager: a self-hosted HTTP work queue, compatible with the PrismQ TaskManager API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("taskmanager")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
