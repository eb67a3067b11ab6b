"""PostgreSQL's hot-path statements: their text is built once per shape and their parameters per
call, so for every shape the placeholders must number exactly the parameters, in order and with
the types the values have. (What the statements do is the contract suite's, on a real server.)"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime

import pytest

from taskmanager.engine.records import DedupeScope, HistoryEvent, NewEvent, TaskStatus
from taskmanager.engine.store import Ahead, ClaimAhead, ClaimQuery, Expected, Transition
from taskmanager.store.pg import _ahead_sql, _claim_ahead_sql, _claim_sql

NOW = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
PLACEHOLDER = re.compile(r"\$(\d+)(?:::([a-z\[\]]+))?")


def numbered(sql: str) -> dict[int, set[str | None]]:
    """Each placeholder number with the casts it appears with."""
    found: dict[int, set[str | None]] = {}
    for number, cast in PLACEHOLDER.findall(sql):
        found.setdefault(int(number), set()).add(cast or None)
    return found


#: The Python values each cast takes (None fits any: a NULL).
FITS: dict[str | None, tuple[type, ...]] = {
    "timestamp": (datetime,),
    "integer": (int,),
    "float": (int, float),
    "bigint": (int,),
    "varchar": (str,),
    "text": (str,),
    "bigint[]": (list,),
    "varchar[]": (list,),
    None: (str, int, datetime),
}


def assert_numbers_parameters(sql: str, args: list[object]) -> None:
    """Every parameter is numbered once at least, none beyond them, and each placeholder's cast
    fits the value at its position (so parameters gathered out of order show)."""
    places = numbered(sql)
    assert set(places) == set(range(1, len(args) + 1)), (sql, args)
    for number, casts in places.items():
        value = args[number - 1]
        for cast in casts:
            assert value is None or isinstance(value, FITS[cast]), (number, cast, value)


CLAIMS = [
    ClaimQuery(now=NOW, worker_id="w", limit=5, order=order, type_ids=ids, type_like=like, type_names=names)
    for like, names, ids, order in itertools.product(
        [None, "media.%"],
        [None, ("a", "b")],
        [None, (1, 2)],
        [(("priority", True), ("id", False)), (("id", False),)],
    )
]


@pytest.mark.parametrize("query", CLAIMS)
@pytest.mark.parametrize("event", [None, NewEvent(HistoryEvent.CLAIMED, "w")])
def test_a_claim_decided_ahead_numbers_its_parameters(query: ClaimQuery, event: NewEvent | None) -> None:
    ahead = ClaimAhead(
        changes={"status": TaskStatus.CLAIMED, "claimed_by": "w", "claimed_at": NOW, "progress": 0},
        now=NOW,
        lease_seconds=30,
        tokens=("t1", "t2"),
        event=event,
    )
    sql, args = _claim_ahead_sql(query, ahead, [1, 2, 3])
    assert_numbers_parameters(sql, args)
    places = numbered(sql)
    assert args[3:6] == [NOW.replace(tzinfo=None), "w", 5]  # $4 now, $5 worker, $6 limit
    assert places[args.index(["t1", "t2"]) + 1] == {"varchar[]"}  # the tokens' placeholder
    if query.type_ids is not None:
        assert places[args.index([1, 2]) + 1] == {"bigint[]"}
    # The same shape again reads the same text; other values fill it.
    again = ClaimAhead(ahead.changes | {"claimed_by": "v"}, NOW, 60, ("t3", "t4"), event)
    other_sql, other_args = _claim_ahead_sql(query, again, [1, 2, 3])
    assert other_sql == sql
    assert "v" in other_args
    assert 60 in other_args


@pytest.mark.parametrize("query", CLAIMS)
def test_a_claim_decided_on_the_locked_rows_numbers_its_parameters(query: ClaimQuery) -> None:
    sql, args = _claim_sql(query)
    assert set(numbered(sql)) == set(range(1, len(args) + 4))  # $1-$3: the settings, added later


@pytest.mark.parametrize(
    "compared",
    [
        {"status": TaskStatus.CLAIMED, "claimed_by": "w", "lease_token": "tok"},
        {"status": TaskStatus.CLAIMED, "claimed_by": None, "lease_token": "tok"},
    ],
)
@pytest.mark.parametrize("alive_at", [None, NOW])
@pytest.mark.parametrize("scopes", [(), (DedupeScope.ACTIVE, DedupeScope.ALL)])
@pytest.mark.parametrize("events", [0, 1, 2])
def test_a_transition_decided_ahead_numbers_its_parameters(
    compared: dict[str, object], alive_at: datetime | None, scopes: tuple[DedupeScope, ...], events: int
) -> None:
    transition = Transition(
        changes={"status": "completed", "result": {"a": 1}, "completed_at": NOW, "lease_token": None},
        events=tuple(NewEvent(HistoryEvent.COMPLETED, "w", f"done {n}", {"n": n}) for n in range(events)),
    )
    sql, args = _ahead_sql(Ahead(Expected(compared, alive_at, scopes), transition), [1, 2, 3, 99], NOW)
    assert_numbers_parameters(sql, args)
    assert sql.count("IS NULL") == (compared["claimed_by"] is None) + (alive_at is not None)
    assert sql.count("($4::bigint, ") == events
    for n in range(events):
        assert f"done {n}" in args
    if scopes:
        assert ["active", "all"] in args
