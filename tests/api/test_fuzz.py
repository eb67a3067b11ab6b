"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis), over real
HTTP against a live server, with valid and invalid input: no 5xx, and every response matches the
documented status codes, content type and schema. On SQLite and PostgreSQL; the example count
keeps it to a few minutes."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import create, register
from tests.conftest import ADMIN_KEY, ServerFactory, selected_databases

#: Examples per operation (about 20 operations).
EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ_DATABASES = [kind for kind in selected_databases() if kind in ("sqlite", "postgresql")]


#: Routes that answer for as long as they are allowed to, by design: the event stream never ends
#: (a keep-alive comment every 15 s outlasts any read timeout) and a wait holds its answer up to
#: its timeout (60 s). A generic fuzzer would sit on them; tests/api/test_observe.py and
#: tests/api/test_wait.py test them, invalid input included.
LONG_ANSWERS = ("/api/events", "/api/tasks/{id}/wait")


def live_schema(make_live_api: ServerFactory) -> Any:
    server = make_live_api()
    register(server, "demo.echo", {"type": "object", "properties": {"topic": {"type": "string"}}})
    for n in range(3):
        create(server, params={"topic": f"t{n}"})
    return schemathesis.openapi.from_url(f"{server.url}/api/openapi.json")


def fuzz(operation: Any, mode: GenerationMode) -> list[str]:
    """Run the examples of one operation; the failures as text (empty when none)."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(headers={"X-API-Key": ADMIN_KEY}, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as exc:  # schemathesis' failure groups are AssertionErrors
            failures.append(f"{operation.label}: {str(exc)[:2000]}")
            raise

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # an operation without input has no invalid input
    except Exception as exc:  # hypothesis re-raises the (shrunk) failure, sometimes grouped
        failures.append(f"{operation.label}: {str(exc)[:2000]}")
    return failures


@pytest.mark.slow  # a few minutes of fuzzing over a real socket
@pytest.mark.parametrize("database", FUZZ_DATABASES, indirect=True)
def test_the_api_matches_its_document_and_never_fails(make_live_api: ServerFactory) -> None:
    everything = [result.ok() for result in live_schema(make_live_api).get_all_operations()]
    operations = [operation for operation in everything if operation.path not in LONG_ANSWERS]
    assert len(everything) - len(operations) == len(LONG_ANSWERS)  # the paths are still these
    assert len(operations) >= 20
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for failure in fuzz(operation, mode)[:1]
    ]
    assert failures == [], "\n\n".join(failures)
