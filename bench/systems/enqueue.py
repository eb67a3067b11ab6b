"""The enqueuing side of the competitors, run in the bench environment:

    python -m bench.systems.enqueue SYSTEM single N     # N calls, one task each
    python -m bench.systems.enqueue SYSTEM batch N      # the system's bulk call, 1,000 a call
    python -m bench.systems.enqueue SYSTEM paced N RATE # N tasks at RATE/s, stamped with time.time()

prints ``{"seconds": ...}``: the time the calls took, after the imports and the connection.
"""

from __future__ import annotations

import importlib
import json
import sys
import time

BATCH = 1000


def main() -> None:
    system, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = importlib.import_module(f"bench.systems.{system}_app")
    if hasattr(app, "prepare"):
        app.prepare()
    started = time.perf_counter()
    if mode == "single":
        for _ in range(count):
            app.enqueue_one(None)
    elif mode == "batch":
        for start in range(0, count, BATCH):
            app.enqueue_batch(min(BATCH, count - start))
    elif mode == "paced":
        rate = float(sys.argv[4])
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            app.enqueue_one(time.time())
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
