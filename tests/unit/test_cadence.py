"""When schedules tick (engine/cadence.py): intervals on multiples since the epoch, cron in the
schedule's time zone across daylight saving time, the latest tick at or before a moment, and the
400s naming the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskmanager.engine.cadence import Cadence, check_cron, check_timezone
from taskmanager.errors import ValidationFailed


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_interval_ticks_are_whole_multiples_since_the_epoch() -> None:
    hourly = Cadence(None, 3600)
    assert hourly.next_after(at("2026-07-01 12:34:56")) == at("2026-07-01 13:00:00")
    assert hourly.next_after(at("2026-07-01 13:00:00")) == at("2026-07-01 14:00:00")  # strictly after
    assert hourly.latest_at(at("2026-07-01 13:00:00")) == at("2026-07-01 13:00:00")  # at or before
    assert hourly.latest_at(at("2026-07-01 13:59:59.999999")) == at("2026-07-01 13:00:00")
    assert Cadence(None, 1).next_after(at("2026-07-01 12:00:00.5")) == at("2026-07-01 12:00:01")


def test_cron_ticks_in_the_schedules_time_zone_summer_and_winter() -> None:
    six_in_prague = Cadence("0 6 * * *", None, "Europe/Prague")
    assert six_in_prague.next_after(at("2026-01-01 12:00")) == at("2026-01-02 05:00")  # CET, UTC+1
    assert six_in_prague.next_after(at("2026-07-01 12:00")) == at("2026-07-02 04:00")  # CEST, UTC+2
    assert six_in_prague.latest_at(at("2026-07-02 04:00")) == at("2026-07-02 04:00")
    assert six_in_prague.latest_at(at("2026-07-02 03:59")) == at("2026-07-01 04:00")


def test_an_hourly_cron_ticks_every_hour_through_the_autumn_change() -> None:
    hourly = Cadence("30 * * * *", None, "Europe/Prague")
    moment, ticks = at("2026-10-24 23:00"), []
    for _ in range(5):
        moment = hourly.next_after(moment)
        ticks.append(moment)
    # 02:30 comes twice in Prague that night (CEST, then CET): two ticks an hour apart in UTC.
    assert ticks == [
        at(f"2026-10-{d} {h}:30") for d, h in [(24, 23), (25, "00"), (25, "01"), (25, "02"), (25, "03")]
    ]


@pytest.mark.parametrize("expression", ["* * * *", "0 * * * * *", "61 * * * *", "nonsense", "* * 32 * *"])
def test_a_cron_expression_that_is_not_5_valid_fields_is_refused(expression: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_cron(expression)
    assert refused.value.details is not None
    assert refused.value.details[0].startswith("cron: ")


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "UTC+1"])
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_timezone(name)
    assert refused.value.details is not None
    assert refused.value.details[0].startswith("timezone: ")
