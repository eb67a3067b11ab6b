"""API.md B.7: GET /stats, /workers, /events (Server-Sent Events) and /metrics."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx

from taskmanager.engine.clock import FrozenClock
from taskmanager.engine.observe import FeedTiming
from taskmanager.server.app import create_app
from taskmanager.settings import Settings
from taskmanager.store import SqlStore, open_store
from tests.api.conftest import claim, create, fails, ok, register, when
from tests.conftest import ADMIN_KEY, START, Api, RunningServer, ServerFactory, TestDatabase

TYPE_FIELDS = {
    "type",
    "pending",
    "claimed",
    "completed",
    "failed",
    "cancelled",
    "oldest_pending_seconds",
    "completed_last_hour",
    "failed_last_hour",
    "avg_run_seconds",
}


def finish(api: Api, task_id: int, success: bool, worker_id: str = "w1") -> Any:
    body = {"worker_id": worker_id, "success": success, "error": None if success else "boom"}
    return ok(api.post(f"/api/tasks/{task_id}/complete", json=body))


def busy_queue(api: Api) -> None:
    """Two types: a.one has 1 completed (after 4 s of work), 1 failed, 1 claimed, 2 pending;
    b.two has 1 pending, created 30 s after the start."""
    register(api, "a.one", max_attempts=1)
    register(api, "b.two")
    done, lost, held = (create(api, "a.one", {"n": n})["id"] for n in range(3))
    api.clock.advance(10)
    create(api, "a.one", {"n": 3})
    create(api, "a.one", {"n": 4})
    for task_id, worker in ((done, "w1"), (lost, "w2"), (held, "w1")):
        assert claim(api, worker, types=["a.one"], sort_by="id")["id"] == task_id
    api.clock.advance(4)
    finish(api, done, True, "w1")
    finish(api, lost, False, "w2")
    api.clock.advance(16)
    create(api, "b.two")


def test_stats_counts_by_status_and_type(api: Api) -> None:
    busy_queue(api)
    data = ok(api.get("/api/stats"))
    assert data["by_status"] == {"pending": 3, "claimed": 1, "completed": 1, "failed": 1, "cancelled": 0}
    one, two = data["by_type"]
    assert set(one) == TYPE_FIELDS
    assert (one["type"], one["pending"], one["claimed"], one["completed"], one["failed"]) == (
        "a.one",
        2,
        1,
        1,
        1,
    )
    assert one["oldest_pending_seconds"] == 20.0  # created at +10 s, now +30 s
    assert (one["completed_last_hour"], one["failed_last_hour"]) == (1, 1)
    assert one["avg_run_seconds"] == 4.0
    assert (two["type"], two["pending"], two["oldest_pending_seconds"]) == ("b.two", 1, 0.0)
    assert (two["completed_last_hour"], two["avg_run_seconds"]) == (0, None)
    assert data["workers_active"] == 1  # w1 holds a task; w2 holds none


def test_stats_throughput_is_the_last_60_minutes(api: Api) -> None:
    busy_queue(api)
    throughput = ok(api.get("/api/stats"))["throughput"]
    assert len(throughput) == 60
    assert when(throughput[-1]["minute"]) == START.replace(second=0)
    assert [when(m["minute"]) for m in throughput] == sorted(when(m["minute"]) for m in throughput)
    assert (throughput[-1]["completed"], throughput[-1]["failed"]) == (1, 1)
    assert sum(m["completed"] + m["failed"] for m in throughput) == 2
    api.clock.advance(3600)  # an hour later only the held task, its lease run out, just failed
    later = ok(api.get("/api/stats"))
    assert [(m["completed"], m["failed"]) for m in later["throughput"] if m["completed"] or m["failed"]] == [
        (0, 1)
    ]
    assert later["throughput"][-1]["failed"] == 1
    assert (later["by_type"][0]["completed_last_hour"], later["by_type"][0]["failed_last_hour"]) == (0, 1)
    assert (later["by_status"]["completed"], later["by_status"]["failed"]) == (1, 2)


def test_stats_of_an_empty_queue(api: Api) -> None:
    data = ok(api.get("/api/stats"))
    assert data["by_status"] == dict.fromkeys(("pending", "claimed", "completed", "failed", "cancelled"), 0)
    assert (data["by_type"], data["workers_active"]) == ([], 0)


def test_stats_counts_an_expired_lease_as_settled(api: Api) -> None:
    register(api, "a.one", max_attempts=1, claim_timeout=5)
    create(api, "a.one")
    claim(api)
    api.clock.advance(6)
    data = ok(api.get("/api/stats"))
    assert (data["by_status"]["claimed"], data["by_status"]["failed"]) == (0, 1)
    assert data["workers_active"] == 0


def test_workers_seen_in_the_last_day(api: Api) -> None:
    busy_queue(api)
    found = {w["worker_id"]: w for w in ok(api.get("/api/workers"))["workers"]}
    assert set(found) == {"w1", "w2"}
    w1, w2 = found["w1"], found["w2"]
    assert (w1["claimed"], w1["completed"], w1["failed"]) == (1, 1, 0)
    assert (w2["claimed"], w2["completed"], w2["failed"]) == (0, 0, 1)
    assert w1["avg_processing_seconds"] == 4.0
    assert when(w2["last_seen_at"]) == START.replace(second=14)


def test_a_heartbeat_counts_as_seen(api: Api) -> None:
    register(api)
    task = create(api)
    claim(api, "w9")
    api.clock.advance(100)
    ok(api.post(f"/api/tasks/{task['id']}/heartbeat", json={"worker_id": "w9"}))  # not in history
    (w9,) = ok(api.get("/api/workers"))["workers"]
    assert when(w9["last_seen_at"]) == START.replace(minute=1, second=40)


def test_workers_not_seen_for_a_day_are_left_out(api: Api) -> None:
    register(api)
    task = create(api)
    claim(api, "old")
    finish(api, task["id"], True, "old")
    api.clock.advance(86401)
    assert ok(api.get("/api/workers"))["workers"] == []


def sse(text: str) -> list[dict[str, Any]]:
    """The messages of an event stream: id, event, data (parsed), or comment."""
    messages = []
    for block in text.split("\n\n"):
        message: dict[str, Any] = {}
        for line in block.splitlines():
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                message["comment"] = value
            elif field == "data":
                message["data"] = json.loads(value)
            else:
                message[field] = value
        if message:
            messages.append(message)
    return messages


def events_of(api: Api, **headers: str) -> list[dict[str, Any]]:
    """The history events a finite (in-process) stream sent, from the start of the history."""
    response = api.get("/api/events", headers={"Last-Event-ID": "0", **headers})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return [m for m in sse(response.text) if "event" in m]


def test_events_carry_each_state_change(api: Api) -> None:
    register(api)
    task = create(api)
    claim(api)
    finish(api, task["id"], True)
    found = events_of(api)
    assert [m["event"] for m in found] == ["created", "claimed", "completed"]
    assert [m["data"]["status"] for m in found] == ["pending", "claimed", "completed"]
    assert all(m["data"]["type"] == "demo.echo" and m["data"]["task_id"] == task["id"] for m in found)
    assert found[1]["data"]["worker_id"] == "w1"
    assert when(found[0]["data"]["at"]) == START
    ids = [int(m["id"]) for m in found]
    assert ids == sorted(ids)
    resumed = api.get("/api/events", headers={"Last-Event-ID": str(ids[0])}).text
    assert [m["event"] for m in sse(resumed) if "event" in m] == ["claimed", "completed"]


def test_events_filtered_by_type_and_task(api: Api) -> None:
    register(api, "a.one")
    register(api, "b.two")
    first = create(api, "a.one")
    create(api, "a.one")
    create(api, "b.two")
    by_type = [
        m["data"]["type"]
        for m in sse(api.get("/api/events?types=b.two,zzz", headers={"Last-Event-ID": "0"}).text)
        if "data" in m
    ]
    assert by_type == ["b.two"]
    by_task = [
        m["data"]["task_id"]
        for m in sse(api.get(f"/api/events?task_id={first['id']}", headers={"Last-Event-ID": "0"}).text)
        if "data" in m
    ]
    assert by_task == [first["id"]]
    fails(api.get("/api/events?task_id=x"), 400, "validation_failed")


def test_events_without_last_event_id_start_now(api: Api) -> None:
    register(api)
    create(api)
    assert [m for m in sse(api.get("/api/events").text) if "event" in m] == []


def test_a_reader_that_falls_behind_is_dropped(make_api: ServerFactory) -> None:
    api = make_api(feed=FeedTiming(poll_seconds=0.01, lifetime=5, page=2, max_lag=3))
    register(api)
    for n in range(8):
        create(api, params={"n": n})
    messages = sse(api.get("/api/events", headers={"Last-Event-ID": "0"}).text)
    events = [m for m in messages if "event" in m]
    assert [m["event"] for m in events] == ["created", "created", "dropped"]
    assert events[-1]["data"]["last_event_id"] == int(events[1]["id"])


def test_keep_alive_comments(make_api: ServerFactory) -> None:
    api = make_api(feed=FeedTiming(poll_seconds=0.01, keepalive_seconds=0.05, lifetime=0.3))
    comments = [m["comment"] for m in sse(api.get("/api/events").text) if "comment" in m]
    assert comments.count("keep-alive") >= 2


def test_metrics_text(api: Api) -> None:
    busy_queue(api)
    response = api.get("/api/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'taskmanager_tasks{status="pending",type="a.one"} 2.0' in text
    assert 'taskmanager_tasks{status="completed",type="a.one"} 1.0' in text
    assert 'taskmanager_oldest_pending_seconds{type="a.one"} 20.0' in text
    assert "taskmanager_workers_active 1.0" in text
    assert 'taskmanager_task_claims_total{type="a.one"} 3.0' in text
    assert 'taskmanager_task_completions_total{type="a.one"} 1.0' in text
    assert 'taskmanager_task_failures_total{type="a.one"} 1.0' in text
    latency = "taskmanager_http_request_duration_seconds_count"
    assert f'{latency}{{method="POST",route="/api/tasks/{{id}}/complete",status="200"}} 2.0' in text
    assert 'route="/api/task-types/register",status="200"' in text
    assert "/api/tasks/1/complete" not in text  # the template, never the raw path


def test_metrics_need_admin_unless_public(make_api: ServerFactory) -> None:
    guarded = make_api()
    with guarded.new_client() as anonymous:
        fails(anonymous.get("/api/metrics"), 401, "unauthorized")
    public = make_api(metrics_public=True)
    with public.new_client() as anonymous:
        response = anonymous.get("/metrics")  # the root alias too
        assert response.status_code == 200
        assert "taskmanager_workers_active 0.0" in response.text
        fails(anonymous.get("/api/stats"), 401, "unauthorized")


def test_events_over_a_socket_arrive_as_they_happen(make_live_api: ServerFactory) -> None:
    """A create wakes the stream as it wakes a long-polling claimer: its event comes long before
    the stream's next look (30 s away)."""
    live = make_live_api(feed=FeedTiming(poll_seconds=30, keepalive_seconds=60))
    register(live)
    client = httpx.Client(base_url=live.url, headers=dict(live.headers), timeout=10)
    with client, client.stream("GET", "/api/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        started = time.monotonic()
        task = create(live)
        seen: list[str] = []
        for line in filter(None, lines):
            seen.append(line)
            if line.startswith("data:"):
                break
        assert time.monotonic() - started < 5
        assert seen[0].startswith("id: ")
        assert seen[1] == "event: created"
        assert json.loads(seen[2].removeprefix("data: "))["task_id"] == task["id"]


def _open_streams(api: Api) -> float:
    found = re.search(r"^taskmanager_event_streams (\S+)$", api.get("/api/metrics").text, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


def test_a_stream_ends_when_its_client_leaves(live_api: Api) -> None:
    assert _open_streams(live_api) == 0
    client = httpx.Client(base_url=live_api.url, headers=dict(live_api.headers), timeout=10)
    with client, client.stream("GET", "/api/events") as stream:
        lines = stream.iter_lines()  # kept: an iterator dropped early closes the response
        assert next(lines) == ": connected"
        assert _open_streams(live_api) == 1
    # The server notices the hang-up by itself; nothing tells the client when, so look again.
    deadline = time.monotonic() + 5
    while _open_streams(live_api) != 0:
        assert time.monotonic() < deadline, "the stream outlived its client"
        time.sleep(0.02)


def test_an_open_stream_takes_no_request_slot(make_live_api: ServerFactory) -> None:
    live = make_live_api(max_concurrent_requests=1)
    client = httpx.Client(base_url=live.url, headers=dict(live.headers), timeout=10)
    with client, client.stream("GET", "/api/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        assert ok(live.get("/api/stats"))["by_type"] == []  # not 503 Server busy


def test_a_key_limited_to_types_observes_only_theirs(api: Api) -> None:
    busy_queue(api)
    body = {"name": "b only", "scopes": ["tasks:read"], "types": ["b.*"]}
    key = ok(api.post("/api/api-keys", json=body))["key"]
    with api.new_client({"X-API-Key": key}) as limited:
        data = ok(limited.get("/api/stats"))
        assert [t["type"] for t in data["by_type"]] == ["b.two"]
        assert data["by_status"] == {"pending": 1, "claimed": 0, "completed": 0, "failed": 0, "cancelled": 0}
        assert data["workers_active"] == 0  # w1 holds an a.one task
        assert sum(m["completed"] + m["failed"] for m in data["throughput"]) == 0
        events = limited.get("/api/events", headers={"Last-Event-ID": "0"}).text
        assert {m["data"]["type"] for m in sse(events) if "data" in m} == {"b.two"}
    assert ok(api.get("/api/stats"))["workers_active"] == 1  # the admin key sees every type


def test_a_key_limited_to_types_sees_only_the_workers_of_its_types(api: Api) -> None:
    busy_queue(api)  # w1 and w2 worked on a.one only
    b_task = claim(api, "w3", types=["b.two"])["id"]
    api.clock.advance(2)
    finish(api, b_task, True, "w3")
    claim(api, "w3", types=["a.one"], sort_by="id")
    keys = {}
    for name, types in (("b", ["b.*"]), ("a", ["a.*"])):
        body = {"name": f"{name} only", "scopes": ["tasks:read"], "types": types}
        keys[name] = ok(api.post("/api/api-keys", json=body))["key"]
    with api.new_client({"X-API-Key": keys["b"]}) as limited:
        (w3,) = ok(limited.get("/api/workers"))["workers"]
    assert (w3["worker_id"], w3["claimed"], w3["completed"], w3["failed"]) == ("w3", 0, 1, 0)
    assert w3["avg_processing_seconds"] == 2.0
    with api.new_client({"X-API-Key": keys["a"]}) as limited:
        found = {w["worker_id"]: w for w in ok(limited.get("/api/workers"))["workers"]}
    assert set(found) == {"w1", "w2", "w3"}  # w3 holds an a.one task now
    assert (found["w3"]["claimed"], found["w3"]["completed"]) == (1, 0)
    everyone = {w["worker_id"]: w for w in ok(api.get("/api/workers"))["workers"]}
    assert (everyone["w3"]["claimed"], everyone["w3"]["completed"]) == (1, 1)  # the admin key


class HistoryReads:
    """The store as it is, counting the feed's reads of the history (``events_after``)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.reads = 0

    async def events_after(self, after_id: int, limit: int) -> Any:
        self.reads += 1
        return await self._store.events_after(after_id, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextlib.contextmanager
def counted_server(database: TestDatabase) -> Iterator[tuple[Api, HistoryReads]]:
    """A server on a socket whose store counts its history reads."""
    counted = HistoryReads(open_store(database.url))
    settings = Settings(database_url=database.url, api_key=ADMIN_KEY)
    app = create_app(settings, store=cast(Any, counted), clock=FrozenClock(START))
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with started(app):
            yield
        await counted.close()  # injected, so the app leaves it open

    app.router.lifespan_context = lifespan
    with (
        RunningServer(app) as running,
        httpx.Client(base_url=running.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30) as client,
    ):
        yield Api(client, FrozenClock(START), running.url, database), counted


STREAMS = 8


def test_open_streams_share_one_history_read_per_wake(clean_database: TestDatabase) -> None:
    """However many streams are open, a process reads the history once per wake-up; with the
    queue idle it does not read at all where the database announces its writes."""
    with counted_server(clean_database) as (live, counted), contextlib.ExitStack() as streams:
        register(live)
        assert counted.reads == 0  # no stream open: no feed
        lines = []
        for _ in range(STREAMS):
            stream = streams.enter_context(live.client.stream("GET", "/api/events"))
            lines.append(stream.iter_lines())
            assert next(lines[-1]) == ": connected"
        time.sleep(0.3)  # the feed's first looks, as it starts
        settled = counted.reads
        time.sleep(1.5)  # three of the 0.5 s looks of a poll, were there one
        if clean_database.kind != "mysql":  # MySQL cannot announce writes: the feed polls there
            assert counted.reads == settled, (settled, counted.reads)
        before = counted.reads
        task = create(live)
        for each in lines:
            data = next(line for line in each if line.startswith("data:"))
            assert json.loads(data.removeprefix("data: "))["task_id"] == task["id"]
        claim(live, "w1")
        for each in lines:
            data = next(line for line in each if line.startswith("data:"))
            assert json.loads(data.removeprefix("data: "))["status"] == "claimed"
        if clean_database.kind != "mysql":
            # Two writes, each heard once in-process and (PostgreSQL) once more from NOTIFY.
            assert counted.reads - before <= 4, counted.reads - before
    assert counted.reads - before < STREAMS


def _ids_until(lines: Iterator[str], task_id: int) -> list[int]:
    """The event ids a stream sends up to the event of ``task_id``."""
    ids = []
    for line in lines:
        if line.startswith("id: "):
            ids.append(int(line.removeprefix("id: ")))
        elif line.startswith("data:") and json.loads(line.removeprefix("data: "))["task_id"] == task_id:
            return ids
    raise AssertionError("the stream ended")


def test_a_resuming_reader_catches_up_then_joins_the_shared_feed(live_api: Api) -> None:
    """A stream opened with Last-Event-ID while another keeps the feed running reads what it
    missed from the history, then the feed's events: none missed, none twice."""
    register(live_api)
    with contextlib.ExitStack() as streams:
        first = streams.enter_context(live_api.client.stream("GET", "/api/events")).iter_lines()
        assert next(first) == ": connected"
        earlier = [create(live_api, params={"n": n})["id"] for n in range(3)]
        seen = _ids_until(first, earlier[-1])
        assert len(seen) == 3
        resumed = streams.enter_context(
            live_api.client.stream("GET", "/api/events", headers={"Last-Event-ID": str(seen[0])})
        ).iter_lines()
        assert next(resumed) == ": connected"
        later = create(live_api, params={"n": 3})["id"]
        assert _ids_until(resumed, later) == [*seen[1:], seen[-1] + 1]
        assert _ids_until(first, later) == [seen[-1] + 1]
