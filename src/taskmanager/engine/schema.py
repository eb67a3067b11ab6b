"""JSON Schema rules: checking a type's ``param_schema`` and validating task params against it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, SchemaError, validators
from jsonschema.protocols import Validator

from taskmanager.errors import ValidationFailed

#: Most validation problems reported for one request; the rest are counted, not listed.
MAX_REPORTED_ERRORS = 20
#: Compiled validators kept per process (one per task type version).
VALIDATOR_CACHE_SIZE = 1024


def _walk_refs(node: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            yield from _walk_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_refs(value, f"{path}[{index}]")


def check_param_schema(schema: Any) -> None:
    """Raise ``ValidationFailed`` unless ``schema`` is a usable JSON Schema for task params."""
    if not isinstance(schema, dict):
        raise ValidationFailed("Invalid JSON schema format")
    if "type" not in schema:
        raise ValidationFailed('JSON schema must have a "type" property')
    remote = [
        f"{path}: $ref {ref!r} is not local" for path, ref in _walk_refs(schema) if not ref.startswith("#")
    ]
    if remote:
        raise ValidationFailed(
            "Invalid JSON schema: only local $ref (starting with #) is allowed", details=remote
        )
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = exc.json_path if hasattr(exc, "json_path") else "$"
        raise ValidationFailed(
            f"Invalid JSON schema: {exc.message}",
            details=[f"param_schema{where[1:]}: {exc.message}"],
        ) from None


class ParamValidator:
    """Validates params against a type's schema, caching one compiled validator per version."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, datetime], Validator] = {}
        self._lock = threading.Lock()

    def _validator(self, type_id: int, updated_at: datetime, schema: dict[str, Any]) -> Validator:
        key = (type_id, updated_at)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        cls = validators.validator_for(schema, default=Draft202012Validator)
        validator: Validator = cls(schema)
        with self._lock:
            if len(self._cache) >= VALIDATOR_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = validator
        return validator

    def problems(self, type_id: int, updated_at: datetime, schema: dict[str, Any], params: Any) -> list[str]:
        """Every violation as ``"<json path>: <message>"``, in path order."""
        validator = self._validator(type_id, updated_at, schema)
        errors = sorted(validator.iter_errors(params), key=lambda e: (list(map(str, e.path)), e.message))
        found = [f"{error.json_path}: {error.message}" for error in errors[:MAX_REPORTED_ERRORS]]
        if len(errors) > MAX_REPORTED_ERRORS:
            found.append(f"$: {len(errors) - MAX_REPORTED_ERRORS} more problems not listed")
        return found
