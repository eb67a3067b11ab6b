"""What ``taskmanager serve`` decides before starting: refusals, auth, and who migrates."""

from __future__ import annotations

import os

import pytest

from taskmanager.serve_policy import ServePlan, plan_serve
from taskmanager.settings import Settings


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("TASKMANAGER_")]:
        monkeypatch.delenv(name)


def no_keys() -> int:
    return 0


def keys_not_counted() -> int:
    raise AssertionError("the stored keys were counted when they could not matter")


def test_loopback_without_a_key_serves_in_open_mode_and_migrates_first() -> None:
    plan = plan_serve(Settings(host="127.0.0.1"), workers=1, in_memory=False, stored_keys=no_keys)
    assert plan == ServePlan(auth_on=False, migrate_first=True, migrate_on_start=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_a_public_address_without_any_key_is_refused(host: str) -> None:
    plan = plan_serve(Settings(host=host), workers=1, in_memory=False, stored_keys=no_keys)
    assert plan.refusal is not None
    assert plan.refusal.startswith(f"Refusing to serve in open mode on {host}: no API key is set.")
    assert "--allow-open" in plan.refusal


def test_allow_open_serves_a_public_address_without_a_key() -> None:
    settings = Settings(host="0.0.0.0", allow_open=True)
    plan = plan_serve(settings, workers=4, in_memory=False, stored_keys=no_keys)
    assert (plan.refusal, plan.auth_on) == (None, False)


def test_an_admin_key_turns_auth_on_without_counting_stored_keys() -> None:
    settings = Settings(host="0.0.0.0", api_key="admin-secret")
    plan = plan_serve(settings, workers=2, in_memory=False, stored_keys=keys_not_counted)
    assert (plan.refusal, plan.auth_on) == (None, True)


def test_stored_keys_turn_auth_on_too() -> None:
    plan = plan_serve(Settings(host="0.0.0.0"), workers=1, in_memory=False, stored_keys=lambda: 2)
    assert (plan.refusal, plan.auth_on) == (None, True)


def test_an_in_memory_database_migrates_in_the_server_process() -> None:
    settings = Settings(database_url="sqlite://")
    plan = plan_serve(settings, workers=1, in_memory=True, stored_keys=keys_not_counted)
    assert plan == ServePlan(auth_on=False, migrate_first=False, migrate_on_start=True)


def test_an_in_memory_database_cannot_be_shared_by_several_workers() -> None:
    plan = plan_serve(Settings(database_url="sqlite://"), workers=2, in_memory=True, stored_keys=no_keys)
    assert plan.refusal == "An in-memory SQLite database cannot be shared by several workers."


def test_an_in_memory_database_on_a_public_address_needs_a_key() -> None:
    settings = Settings(database_url="sqlite://", host="0.0.0.0")
    plan = plan_serve(settings, workers=1, in_memory=True, stored_keys=keys_not_counted)
    assert plan.refusal is not None
