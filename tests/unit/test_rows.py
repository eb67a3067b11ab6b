"""One source per record: every ``Task`` and ``TaskType`` field is read from a column (or a
source of its own), and a row of those columns converts back field for field."""

from __future__ import annotations

from dataclasses import fields

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import Task, TaskType, TypePolicy
from taskmanager.store.rows import (
    TASK_COLUMN_FIELDS,
    TASK_DERIVED_FIELDS,
    TASK_ROW_WIDTH,
    TYPE_FIELDS,
    task_columns,
    type_columns,
)
from taskmanager.store.tables import task_types, tasks


def test_every_task_field_has_a_column_or_a_derived_source() -> None:
    for f in fields(Task):
        assert (f.name in tasks.c) != (f.name in TASK_DERIVED_FIELDS), f.name
    assert set(TASK_COLUMN_FIELDS) | set(TASK_DERIVED_FIELDS) == {f.name for f in fields(Task)}
    assert [c.name for c in TASK_DERIVED_FIELDS["policy"]] == [f.name for f in fields(TypePolicy)]


def test_a_task_read_selects_one_column_per_field_and_setting() -> None:
    selected = task_columns(Defaults())
    assert len(selected) == TASK_ROW_WIDTH == len(fields(Task)) - 1 + len(fields(TypePolicy))


def test_every_task_type_field_is_a_column() -> None:
    assert all(name in task_types.c for name in TYPE_FIELDS)
    assert list(TYPE_FIELDS) == [f.name for f in fields(TaskType)]
    assert len(type_columns(Defaults())) == len(fields(TaskType))
