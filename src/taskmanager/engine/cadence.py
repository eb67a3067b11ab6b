"""When a schedule's ticks fall (API.md B.8): pure functions of the schedule's cadence and a time.

* ``cron`` — a 5-field cron expression (``croniter``) read in the schedule's IANA ``timezone``:
  ``0 6 * * *`` in ``Europe/Prague`` is 06:00 there, winter and summer.
* ``interval_seconds`` — ticks at whole multiples of the interval since the Unix epoch (UTC):
  every 3600 s is on the hour, every 60 s on the minute, the same on every server and after any
  restart, with no state but the schedule itself.

Every time in and out is an aware UTC datetime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from taskmanager.errors import ValidationFailed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _invalid(field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {field}", details=[f"{field}: {problem}"])


def check_timezone(name: str) -> ZoneInfo:
    """The zone of an IANA name, or 400 naming ``timezone``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("timezone", f"unknown IANA time zone {name!r}") from None


def check_cron(expression: str) -> str:
    """A 5-field cron expression as given, or 400 naming ``cron``."""
    if len(expression.split()) != 5:
        raise _invalid("cron", "must have 5 fields: minute hour day-of-month month day-of-week")
    if not croniter.is_valid(expression):
        raise _invalid("cron", f"not a valid cron expression: {expression!r}")
    return expression


@dataclass(frozen=True, slots=True)
class Cadence:
    """A schedule's ticks: ``cron`` in ``timezone``, or every ``interval_seconds``."""

    cron: str | None
    interval_seconds: int | None
    timezone: str = "UTC"

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            return EPOCH + ((moment - EPOCH) // step + 1) * step
        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone))
        found: datetime = croniter(self.cron, local).get_next(datetime)
        return found.astimezone(UTC)

    def latest_at(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment``."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            return EPOCH + ((moment - EPOCH) // step) * step
        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone))
        before: datetime = croniter(self.cron, local).get_prev(datetime)
        after = self.next_after(before.astimezone(UTC))
        return after if after <= moment else before.astimezone(UTC)


def first_tick(cadence: Cadence, moment: datetime) -> datetime:
    """The first tick after ``moment``, or 400 naming ``cron`` for an expression no date
    matches (``0 0 30 2 *``: croniter accepts its fields, then finds no day)."""
    try:
        return cadence.next_after(moment)
    except CroniterError:
        raise _invalid("cron", f"no date matches {cadence.cron!r}") from None
