"""JSON Schema rules: checking a type's ``param_schema`` and validating task params against it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import regex
from jsonschema import Draft202012Validator, SchemaError, ValidationError, validators
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from taskmanager.errors import ValidationFailed

#: Most validation problems reported for one request; the rest are counted, not listed.
MAX_REPORTED_ERRORS = 20
#: Compiled validators kept per process (one per task type version).
VALIDATOR_CACHE_SIZE = 1024
#: Seconds one request may spend matching schema ``pattern``s (a whole batch shares them): a
#: catastrophic-backtracking pattern fails that value with a 400 instead of holding the server.
#: The regex module counts its timeout in CPU time, so on a host short of CPU the wall time can
#: be a few times this; 0.25 keeps a request well under a second on a loaded two-core machine.
PATTERN_TIME_BUDGET = 0.25
#: Keywords that name another schema by URI; only local ones (``#...``) are accepted.
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
#: Instances tried at registration, so a schema that loops or points nowhere is refused then.
_PROBES: tuple[Any, ...] = ({}, [], "", 0, None, True)

_deadline: ContextVar[float | None] = ContextVar("pattern_deadline", default=None)


def _walk(node: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """Every (path, keyword, value) in a schema, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _walk_refs(node: Any) -> Iterator[tuple[str, str, str]]:
    for path, key, value in _walk(node):
        if key in REF_KEYWORDS and isinstance(value, str):
            yield path, key, value


def _search(pattern: str, text: str) -> bool | None:
    """``regex.search`` within what is left of the request's budget; None when it ran out."""
    deadline = _deadline.get()
    if deadline is None:
        deadline = time.monotonic() + PATTERN_TIME_BUDGET
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    try:
        return regex.search(pattern, text, timeout=remaining) is not None
    except TimeoutError:
        return None


def _too_slow(pattern: str) -> ValidationError:
    return ValidationError(f"could not be matched against {pattern!r} within the time limit")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string"):
        found = _search(pattern, instance)
        if found is None:
            yield _too_slow(pattern)
        elif not found:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            found = _search(pattern, key)
            if found is None:
                yield _too_slow(pattern)
            elif found:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = []
    for key in instance:
        if key in known:
            continue
        matched = [_search(p, key) for p in patterns]
        if None in matched:
            yield _too_slow("|".join(patterns))
        elif not any(matched):
            extras.append(key)
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif extra is False and extras:
        listed = ", ".join(repr(k) for k in sorted(extras)[:MAX_REPORTED_ERRORS])
        verb = "was" if len(extras) == 1 else "were"
        yield ValidationError(f"Additional properties are not allowed ({listed} {verb} unexpected)")


_BOUNDED: dict[str, Callable[..., Iterator[ValidationError]]] = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


def validator_class(schema: dict[str, Any]) -> Any:
    """The validator for the schema's dialect, with every regex match bounded in time."""
    base = validators.validator_for(schema, default=Draft202012Validator)
    return validators.extend(base, _BOUNDED)  # type: ignore[no-untyped-call]


def _check_patterns(schema: Any) -> None:
    """Refuse patterns the matcher cannot compile, and the one keyword whose patterns we cannot
    bound (``unevaluatedProperties`` beside ``patternProperties``)."""
    problems: list[str] = []
    keys = set()
    for path, key, value in _walk(schema):
        keys.add(key)
        found = [value] if key == "pattern" and isinstance(value, str) else []
        if key == "patternProperties" and isinstance(value, dict):
            found = list(value)
        for pattern in found:
            try:
                regex.compile(pattern)
            except (regex.error, ValueError, OverflowError, RecursionError):
                problems.append(
                    f"param_schema{path[1:]}.{key}: {pattern!r} is not a valid regular expression"
                )
    if {"unevaluatedProperties", "patternProperties"} <= keys:
        problems.append("param_schema: unevaluatedProperties cannot be combined with patternProperties")
    if problems:
        raise ValidationFailed("Invalid JSON schema: " + problems[0], details=problems[:MAX_REPORTED_ERRORS])


def check_param_schema(schema: Any) -> None:
    """Raise ``ValidationFailed`` unless ``schema`` is a usable JSON Schema for task params."""
    if not isinstance(schema, dict):
        raise ValidationFailed("Invalid JSON schema format")
    if "type" not in schema:
        raise ValidationFailed('JSON schema must have a "type" property')
    remote = [
        f"{path}: {key} {ref!r} is not local"
        for path, key, ref in _walk_refs(schema)
        if not ref.startswith("#")
    ]
    if remote:
        raise ValidationFailed(
            "Invalid JSON schema: only local $ref (starting with #) is allowed", details=remote
        )
    cls = validator_class(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = exc.json_path if hasattr(exc, "json_path") else "$"
        raise ValidationFailed(
            f"Invalid JSON schema: {exc.message}",
            details=[f"param_schema{where[1:]}: {exc.message}"],
        ) from None
    _check_patterns(schema)
    _check_local_refs(schema)
    validator = cls(schema)
    for probe in _PROBES:
        problem = _unusable(lambda v=probe: list(validator.iter_errors(v)))  # type: ignore[misc]
        if problem is not None:
            raise ValidationFailed(f"Invalid JSON schema: {problem}", details=[f"param_schema: {problem}"])


def _check_local_refs(schema: dict[str, Any]) -> None:
    """Every local ``$ref`` must point at something (a dangling one would fail only later, on the
    first task whose params reach it)."""
    found = schema.get("$id")
    base = found if isinstance(found, str) else ""
    resource = Resource.from_contents(schema, default_specification=DRAFT202012)
    resolver = Registry().with_resource(base, resource).resolver(base_uri=base)
    dangling = []
    for path, key, ref in _walk_refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            dangling.append(f"param_schema{path[1:]}: {key} {ref!r} cannot be resolved")
    if dangling:
        raise ValidationFailed(
            f"Invalid JSON schema: a $ref cannot be resolved ({dangling[0]})", details=dangling
        )


def _unusable(run: Callable[[], object]) -> str | None:
    """Why a schema cannot be evaluated (a $ref that loops or points nowhere), or None."""
    try:
        run()
    except RecursionError:
        return "it refers to itself without end"
    except Unresolvable as exc:
        return f"a $ref cannot be resolved ({type(exc).__name__})"
    return None


class ParamValidator:
    """Validates params against a type's schema, caching one compiled validator per revision of
    the type (``TaskType.revision``)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], Validator] = {}
        self._lock = threading.Lock()

    def _validator(self, type_id: int, revision: int, schema: dict[str, Any]) -> Validator:
        key = (type_id, revision)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        validator: Validator = validator_class(schema)(schema)
        with self._lock:
            if len(self._cache) >= VALIDATOR_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = validator
        return validator

    def problems(
        self,
        type_id: int,
        revision: int,
        schema: dict[str, Any],
        params: Any,
        *,
        deadline: float | None = None,
    ) -> list[str]:
        """Every violation as ``"<json path>: <message>"``, in path order. Pattern matching stops
        at ``deadline`` (``time.monotonic()``; default: ``PATTERN_TIME_BUDGET`` from now)."""
        validator = self._validator(type_id, revision, schema)
        token = _deadline.set(time.monotonic() + PATTERN_TIME_BUDGET if deadline is None else deadline)
        raw: list[ValidationError] = []
        try:
            problem = _unusable(lambda: raw.extend(validator.iter_errors(params)))
        finally:
            _deadline.reset(token)
        if problem is not None:
            return [f"$: the task type's schema cannot be evaluated: {problem}"]
        errors = sorted(raw, key=lambda e: (list(map(str, e.path)), e.message))
        found = [f"{error.json_path}: {error.message}" for error in errors[:MAX_REPORTED_ERRORS]]
        if len(errors) > MAX_REPORTED_ERRORS:
            found.append(f"$: {len(errors) - MAX_REPORTED_ERRORS} more problems not listed")
        return found
