"""Take docs/img/dashboard.png: the dashboard of a server filled with an hour of made-up work.

    .venv/bin/python scripts/screenshot_dashboard.py [--out docs/img/dashboard.png]

Runs the app on a throwaway SQLite file, in this process (uvicorn in a thread), with a clock the
script moves a minute at a time while made-up workers claim, complete and fail tasks, so the
throughput chart has an hour to show; then Debian's Chromium (as the browser tests use it) signs
in, shows the failed tasks and saves what fits in a window 1400 by 1000 pixels. The same seed
gives the same picture.
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import expect, sync_playwright

from taskmanager.engine.clock import FrozenClock
from taskmanager.server.app import create_app
from taskmanager.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "dashboard-screenshot-key-0123456789"
CHROMIUM = "/usr/bin/chromium"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: type → (tasks made a minute, chance a run fails, workers)
TYPES = {
    "PrismQ.Script.Generate": (4, 0.05, ["script-01", "script-02"]),
    "PrismQ.Video.Render": (2, 0.15, ["render-01"]),
    "mail.send": (6, 0.02, ["mail-01"]),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ok(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    response.raise_for_status()
    return response.json()["data"]  # type: ignore[no-any-return]


def fill(client: httpx.Client, clock: FrozenClock, rng: random.Random) -> None:
    """An hour of work, a minute at a time, then a backlog the workers have not reached."""
    ids = {}
    for name in TYPES:
        ids[name] = ok(
            client.post(
                "/api/task-types/register",
                json={"name": name, "version": "1.0.0", "param_schema": {"type": "object"}},
            )
        )["id"]
    for minute in range(60):
        for name, (per_minute, failing, workers) in TYPES.items():
            made = rng.randint(max(per_minute - 2, 1), per_minute + 2) if minute > 5 else 1
            for n in range(made):
                params = {"minute": minute, "n": n, "lang": rng.choice(["en", "de", "cs"])}
                ok(client.post("/api/tasks", json={"type": name, "params": params, "max_attempts": 1}))
            for n in range(made):
                worker = workers[n % len(workers)]
                task = ok(
                    client.post("/api/tasks/claim", json={"worker_id": worker, "task_type_id": ids[name]})
                )
                success = rng.random() >= failing
                report = {"worker_id": worker, "success": success}
                report |= (
                    {"result": {"seconds": round(rng.uniform(0.2, 9), 2)}}
                    if success
                    else {"error": "HTTP 502 from the renderer"}
                )
                clock.advance(rng.uniform(0.2, 2.5))  # the run
                ok(client.post(f"/api/tasks/{task['id']}/complete", json=report))
        clock.set(START + timedelta(minutes=minute + 1))
    for name, (per_minute, _failing, workers) in TYPES.items():
        for n in range(per_minute * 3):
            ok(client.post("/api/tasks", json={"type": name, "params": {"backlog": n}}))
        ok(client.post("/api/tasks/claim", json={"worker_id": workers[0], "task_type_id": ids[name]}))
        clock.advance(40)


def screenshot(url: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, color_scheme="light")
            page.goto(f"{url}/dashboard")
            page.get_by_label("API key").fill(KEY)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#live")).to_have_text("live")
            page.locator("#filter-status").select_option("failed")
            expect(page.locator("#tasks tbody tr").first).to_contain_text("failed")
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard.png")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clock = FrozenClock(START)
        settings = Settings(database_url=f"sqlite:///{folder}/screenshot.db", api_key=KEY, stats_max_age=0)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, clock=clock), port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
                for _ in range(3000):
                    if server.started:
                        break
                    threading.Event().wait(0.01)
                fill(client, clock, random.Random(args.seed))
            screenshot(url, args.out)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
