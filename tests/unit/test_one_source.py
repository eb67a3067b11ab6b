"""Each record is declared once; every other list of its fields is checked against that source.

- a **task type setting** is declared by ``models.TypeSettings`` (the wire); the type record, the
  wire's type object, the stored columns, the client's ``register_task_type`` keywords and the
  importer must list the same settings;
- a **task field** on the wire is declared by ``models.TaskOut``; ``engine.wire.task_data``, the
  client's ``Task`` and the engine's ``Task`` record must agree with it;
- a **status** is declared by ``engine.records.TaskStatus``; the wire models' literals must list
  exactly its values, and a **dedupe scope** by ``DedupeScope``;
- a **server setting** is declared by ``settings.Settings``; ``taskmanager serve`` has its flag and
  the README and the configuration reference its variable.

A field added in one place and forgotten in another fails here, naming both.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from datetime import UTC, datetime
from pathlib import Path

from taskmanager import cli, models
from taskmanager.client import models as client_models
from taskmanager.client.core import ClientCore
from taskmanager.engine import records
from taskmanager.engine.wire import task_data, type_data
from taskmanager.settings import Settings
from taskmanager.store.tables import task_types, tasks

SETTINGS = set(models.TypeSettings.model_fields)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _keywords(function: typing.Callable[..., object]) -> set[str]:
    return {
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _literal_values(annotation: object) -> set[str]:
    """The values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation."""
    found: set[str] = set()
    for arg in typing.get_args(annotation) or ():
        if typing.get_origin(arg) is typing.Literal:
            found |= set(typing.get_args(arg))
        elif isinstance(arg, str):
            found.add(arg)
    return found


def test_every_type_setting_is_on_the_record_the_wire_the_table_and_the_client() -> None:
    record = {f.name for f in dataclasses.fields(records.TaskType)}
    assert record >= SETTINGS, f"TaskType record lacks {SETTINGS - record}"
    assert set(models.TaskTypeOut.model_fields) >= SETTINGS
    assert set(task_types.c.keys()) >= SETTINGS, f"task_types lacks {SETTINGS - set(task_types.c.keys())}"
    assert _keywords(ClientCore.register_task_type) == SETTINGS


def test_the_type_object_on_the_wire_is_its_model() -> None:
    fields = {f.name: f for f in dataclasses.fields(records.TaskType)}
    values = {
        name: NOW if name.endswith("_at") else records.DedupeScope.ALL if name == "dedupe" else None
        for name in fields
    }
    assert set(type_data(records.TaskType(**values))) == set(models.TaskTypeOut.model_fields)
    # The record shows every field but its revision, the store's means of checking a cached copy.
    assert set(fields) - set(models.TaskTypeOut.model_fields) == {"revision"}


def test_a_task_on_the_wire_is_its_model_and_the_clients() -> None:
    wire = set(models.TaskOut.model_fields)
    policy = records.TypePolicy(300, 2.0, 3600.0, records.DedupeScope.ALL)
    values: dict[str, object] = {f.name: None for f in dataclasses.fields(records.Task)}
    values.update(
        status=records.TaskStatus.PENDING, policy=policy, created_at=NOW, updated_at=NOW, depends_on=()
    )
    assert set(task_data(records.Task(**values))) == wire  # type: ignore[arg-type]
    assert set(client_models.Task.model_fields) >= wire
    record = {f.name for f in dataclasses.fields(records.Task)}
    assert record >= wire, f"the Task record lacks {wire - record}"


def test_every_stored_task_column_is_a_field_of_the_record() -> None:
    record = {f.name for f in dataclasses.fields(records.Task)}
    # dedupe_lock is the store's means of enforcing the dedupe scope (ADR 0002), not a field.
    assert set(tasks.c.keys()) - {"dedupe_lock"} <= record


def test_statuses_and_scopes_are_declared_once() -> None:
    statuses = {s.value for s in records.TaskStatus}
    assert _literal_values(models.TaskOut.model_fields["status"].annotation) == statuses
    scopes = {s.value for s in records.DedupeScope}
    assert _literal_values(models.TaskTypeOut.model_fields["dedupe"].annotation) == scopes
    assert _literal_values(models.TypeSettings.model_fields["dedupe"].annotation) == scopes
    register = inspect.signature(ClientCore.register_task_type).parameters["dedupe"]
    assert _literal_values(typing.get_type_hints(ClientCore.register_task_type)["dedupe"]) == scopes
    assert register.default is None


def test_a_create_takes_the_same_options_on_the_wire_and_in_the_client() -> None:
    # ``depends_on_index`` names items of the same batch: it means nothing in one create.
    refused = {"depends_on_index"}
    wire = set(models.CreateTask.model_fields) - refused
    client = set(inspect.signature(ClientCore.create_task).parameters) - {"self", "extra"}
    # The client names the type ``task_type`` (as PrismQ's client does); the wire calls it ``type``.
    assert client - {"task_type"} | {"type"} == wire


#: Settings only the environment sets (the README's table shows no flag for them): tuning a
#: deployment rarely changes, and `migrate_on_start` matters only to apps run without `serve`;
#: `webhook_secret` is a shared secret that a flag would show in every process listing.
ENVIRONMENT_ONLY = {"db_pool_size", "key_cache_seconds", "migrate_on_start", "redis_prefix", "webhook_secret"}
#: `serve` flags that are about the processes, not the app's settings.
PROCESS_FLAGS = {"workers", "log_level"}


def test_every_server_setting_has_its_serve_flag_and_its_documented_variable() -> None:
    settings = set(Settings.model_fields)
    flags = set(inspect.signature(cli.serve).parameters)
    assert flags - PROCESS_FLAGS == settings - ENVIRONMENT_ONLY
    root = Path(__file__).resolve().parents[2]
    for page in (root / "README.md", root / "docs" / "reference" / "configuration.md"):
        text = page.read_text()
        missing = [name for name in settings if f"`TASKMANAGER_{name.upper()}`" not in text]
        assert not missing, f"{page.name} does not document {missing}"


def test_every_type_setting_is_documented_at_register() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "api.md").read_text()
    register = reference.split("### `POST /task-types/register`", 1)[1].split("\n### ", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", register, flags=re.MULTILINE))
    assert rows >= SETTINGS, f"the register table lacks {SETTINGS - rows}"
