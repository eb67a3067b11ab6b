"""Two commits' end-to-end throughput, measured alternately in one run (issue 15's guard).

    python -m bench.compare OLD [NEW] [--rounds 3] [--tasks 10000] [--databases sqlite,postgresql]
                            [--paths worker_runtime,single_requests,single_creates]

Each commit is checked out into a worktree of its own under ``--workdir`` with a virtualenv of its
own (its ``.[server]`` extra, or ``.`` where it has none), so each runs its own ``taskmanager
serve`` and ``taskmanager worker``. Then, for each round and database, the two commits take turns
(old, new; the next round new, old) on the same paths: the worker runtime and single requests
over the lean keep-alive client of ``bench.throughput``, and one producer's single creates through
the project's own client over keep-alive (issue 19). Alternating in one run is what makes the
ratio trustworthy on a shared machine whose speed drifts by 2x over an hour: the table reports
each commit's median and the median of the per-round ratios new/old. Results are appended to
``bench/results/compare.jsonl``.

The measurement of one path runs inside the commit's own tree (``--one``), with this file copied
over that tree's copy, so both commits are driven by the same harness and served by their own
code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "compare.jsonl"
PATHS = ("worker_runtime", "single_requests", "single_creates")


def one(kind: str, path: str, tasks: int) -> dict[str, object]:
    """Measure one path on a fresh database and server of this tree (run inside the tree)."""
    from bench.servers import database, register, server
    from bench.throughput import _create, single_requests, worker_runtime

    with ExitStack() as stack:
        base = stack.enter_context(server(stack.enter_context(database(kind)), workers=2))
        register(base)
        cpu: dict[str, float] = {}
        if path == "single_creates":
            rate = single_creates(base, tasks, cpu)
        else:
            _create(base, tasks)
            if path == "worker_runtime":
                rate = worker_runtime(base, tasks, 2, 100, cpu)
            else:
                rate = single_requests(base, tasks, 8, cpu, "lean")
    return {"per_s": round(rate), **{k: round(v) for k, v in cpu.items()}}


def single_creates(base: str, tasks: int, cpu: dict[str, float]) -> float:
    """Creates per second of one producer calling ``create_task`` once per task through the
    project's own client over keep-alive; the CPU each side spends per create into ``cpu``."""
    from bench.servers import KEY, CpuMeter
    from taskmanager.client import TaskManagerClient

    with TaskManagerClient(base, KEY, timeout=60) as client:
        for n in range(-100, 0):  # the connection, the server's first reads and statements
            client.create_task("noop", {"n": n})
        meter = CpuMeter(base, {"client": [os.getpid()]})
        started = time.perf_counter()
        for n in range(tasks):
            client.create_task("noop", {"n": n})
        elapsed = time.perf_counter() - started
    cpu.update({f"create_{name}_us_per_task": spent for name, spent in meter.per_task(tasks).items()})
    return tasks / elapsed


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def prepare(rev: str, workdir: Path) -> Path:
    """A worktree of ``rev`` with its own virtualenv, and this file in its bench/."""
    commit = _git("rev-parse", "--short", rev)
    tree = workdir / commit
    if not tree.exists():
        _git("worktree", "add", "--detach", str(tree), commit)
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
        extras = ".[server]" if "server =" in (tree / "pyproject.toml").read_text() else "."
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", extras], cwd=tree, check=True)
    shutil.copy(Path(__file__), tree / "bench" / "compare.py")
    return tree


def measure(tree: Path, kind: str, path: str, tasks: int) -> dict[str, object]:
    python = str(tree / ".venv" / "bin" / "python")
    command = [python, "-m", "bench.compare", "--one", kind, path, "--tasks", str(tasks)]
    done = subprocess.run(command, cwd=tree, check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(rows: list[dict[str, object]], old: str, new: str) -> str:
    lines = [
        f"| database | path | {old} tasks/s (median) | {new} tasks/s (median) | new/old (median of rounds) |",
        "|---|---|---|---|---|",
    ]
    keys = sorted({(str(r["database"]), str(r["path"])) for r in rows})
    for kind, path in keys:
        mine = [r for r in rows if r["database"] == kind and r["path"] == path]
        by_round: dict[object, dict[str, float]] = {}
        for r in mine:
            by_round.setdefault(r["round"], {})[str(r["commit"])] = float(str(r["per_s"]))
        ratios = [pair[new] / pair[old] for pair in by_round.values() if old in pair and new in pair]
        olds = [pair[old] for pair in by_round.values() if old in pair]
        news = [pair[new] for pair in by_round.values() if new in pair]
        spread = f" ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else ""
        ratio = f"{statistics.median(ratios):.3f}{spread}" if ratios else "-"
        lines.append(
            f"| {kind} | {path} | {statistics.median(olds):,.0f} | {statistics.median(news):,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?", help="the commit to compare against")
    parser.add_argument("new", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--paths", default=",".join(PATHS), help="a comma list of " + ", ".join(PATHS))
    parser.add_argument("--workdir", default="/tmp/taskmanager-compare")
    parser.add_argument("--one", nargs=2, metavar=("DATABASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.tasks)), flush=True)
        return 0
    if not args.old:
        parser.error("name the commit to compare against")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    trees = {_git("rev-parse", "--short", rev): prepare(rev, workdir) for rev in (args.old, args.new)}
    old, new = list(trees)
    rows: list[dict[str, object]] = []
    for round_ in range(1, args.rounds + 1):
        order = [old, new] if round_ % 2 else [new, old]
        for kind in args.databases.split(","):
            for path in args.paths.split(","):
                for commit in order:
                    result = measure(trees[commit], kind, path, args.tasks)
                    row = {"round": round_, "commit": commit, "database": kind, "path": path, **result}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    with RESULTS.open("a") as out:
        for row in rows:
            out.write(json.dumps({"old": old, "new": new, "tasks": args.tasks, **row}) + "\n")
    print(table(rows, old, new))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
