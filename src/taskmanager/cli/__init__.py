"""The ``taskmanager`` command: serve, worker, import-prismq, version here; ``db`` (module
``database``) and ``keys`` beside this one; and the operator's commands for a running server
(``tasks``, ``types``, ``enqueue``, ``stats``, ``workers``: modules ``tasks`` and ``queue``).

``worker``, ``version`` and the operator's commands need only a plain install; the commands that
run the server or open a database need the ``[server]`` extra, and say so in one line when it is
missing. Every failure ends as one line on stderr (``failures``), never a traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Annotated

import typer

from taskmanager._version import __version__
from taskmanager.cli import database, failures, keys, queue, schedules, tasks
from taskmanager.cli.local import DatabaseOption, console, require_server, settings_from

app = typer.Typer(
    help="TaskManager: a self-hosted HTTP work queue.",
    no_args_is_help=True,
    add_completion=False,
    # A mistake is one line (cli/failures.py); a traceback only with --debug.
    pretty_exceptions_enable=False,
)
app.add_typer(database.db_app, name="db")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(tasks.tasks_app, name="tasks")
app.add_typer(queue.types_app, name="types")
app.add_typer(schedules.schedules_app, name="schedules")
app.command("enqueue")(queue.enqueue)
app.command("stats")(queue.stats)
app.command("workers")(queue.workers)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="TASKMANAGER_DEBUG", help="Show the traceback of a failure.")
    ] = False,
) -> None:
    """TaskManager: a self-hosted HTTP work queue."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="TASKMANAGER_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="TASKMANAGER_PORT", help="Port to bind.")] = 8000,
    database_url: DatabaseOption = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="TASKMANAGER_API_KEY",
            help="Admin API key (unset and no stored keys: open mode).",
        ),
    ] = None,
    claim_timeout: Annotated[int | None, typer.Option(help="Seconds a claim's lease lasts.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before a task fails.")] = None,
    retry_delay: Annotated[float | None, typer.Option(help="Base seconds of retry backoff.")] = None,
    enable_history: Annotated[
        bool | None,
        typer.Option("--enable-history/--disable-history", help="Record task history events."),
    ] = None,
    enable_schema_validation: Annotated[
        bool | None,
        typer.Option(
            "--enable-schema-validation/--disable-schema-validation",
            help="Validate params against the type's schema.",
        ),
    ] = None,
    cors_origins: Annotated[str | None, typer.Option(help="Allowed origins, comma separated.")] = None,
    max_request_bytes: Annotated[int | None, typer.Option(help="Larger bodies get 413.")] = None,
    allow_open: Annotated[
        bool,
        typer.Option(
            "--allow-open",
            envvar="TASKMANAGER_ALLOW_OPEN",
            help="Serve without any API key on a non-loopback address (dangerous).",
        ),
    ] = False,
    rate_limit: Annotated[
        int | None,
        typer.Option(help="Requests per minute of a key without its own limit (0: none)."),
    ] = None,
    auth_failure_limit: Annotated[
        int | None, typer.Option(help="Wrong keys per minute one address may send (0: no limit).")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Share rate limits between server processes through Redis.")
    ] = None,
    trusted_proxies: Annotated[
        str | None, typer.Option(help="Proxies whose X-Forwarded-For is believed (IPs/CIDRs, comma list).")
    ] = None,
    allow_ips: Annotated[
        str | None, typer.Option(help="Only these addresses may connect (IPs/CIDRs).")
    ] = None,
    deny_ips: Annotated[str | None, typer.Option(help="These addresses may not connect (IPs/CIDRs).")] = None,
    keep_completed: Annotated[
        int | None, typer.Option(help="Seconds a completed task is kept (0: forever).")
    ] = None,
    keep_failed: Annotated[
        int | None, typer.Option(help="Seconds a failed or cancelled task is kept (0: forever).")
    ] = None,
    metrics_public: Annotated[
        bool | None,
        typer.Option("--metrics-public/--no-metrics-public", help="Serve GET /metrics without a key."),
    ] = None,
    stats_max_age: Annotated[
        float | None, typer.Option(help="Seconds /stats, /workers and /metrics reuse an answer (0: never).")
    ] = None,
    request_timeout: Annotated[
        float | None, typer.Option(help="Seconds a client has to send a whole request (else 408).")
    ] = None,
    keep_alive_timeout: Annotated[
        int | None, typer.Option(help="Seconds an idle keep-alive connection is kept.")
    ] = None,
    max_header_bytes: Annotated[
        int | None, typer.Option(help="Largest request line and headers (else 431).")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(help="Open connections per server process (more: 503).")
    ] = None,
    max_concurrent_requests: Annotated[
        int | None, typer.Option(help="Requests run at once per server process (more: 503; 0: no limit).")
    ] = None,
    webhook_allow_networks: Annotated[
        str | None,
        typer.Option(help="Networks callbacks may reach although not public (CIDRs, comma list)."),
    ] = None,
    webhook_retry_delay: Annotated[
        float | None,
        typer.Option(help="Seconds before a failed callback's first retry (then doubling, at most 15 min)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Server processes (uvicorn workers).")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="Log one line per request (at info)."),
    ] = None,
) -> None:
    """Run the API server (migrating the database first)."""
    require_server("serve")
    _check_log_level(log_level)
    settings = settings_from(
        host=host,
        port=port,
        database_url=database_url,
        api_key=api_key,
        claim_timeout=claim_timeout,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        enable_history=enable_history,
        enable_schema_validation=enable_schema_validation,
        cors_origins=cors_origins,
        max_request_bytes=max_request_bytes,
        allow_open=allow_open,
        rate_limit=rate_limit,
        auth_failure_limit=auth_failure_limit,
        redis_url=redis_url,
        trusted_proxies=trusted_proxies,
        allow_ips=allow_ips,
        deny_ips=deny_ips,
        keep_completed=keep_completed,
        keep_failed=keep_failed,
        metrics_public=metrics_public,
        stats_max_age=stats_max_age,
        request_timeout=request_timeout,
        keep_alive_timeout=keep_alive_timeout,
        max_header_bytes=max_header_bytes,
        max_connections=max_connections,
        max_concurrent_requests=max_concurrent_requests,
        access_log=access_log,
        webhook_allow_networks=webhook_allow_networks,
        webhook_retry_delay=webhook_retry_delay,
    )
    from taskmanager.serve_policy import plan_serve
    from taskmanager.store import display_url
    from taskmanager.store.database import is_memory
    from taskmanager.store.keys import stored_key_count
    from taskmanager.store.migrate import upgrade

    plan = plan_serve(
        settings,
        workers=workers,
        in_memory=is_memory(settings.database_url),
        stored_keys=lambda: stored_key_count(settings.database_url),
    )
    if plan.refusal is not None:
        console.print(f"[red]{plan.refusal}[/red]")
        raise typer.Exit(2)
    taken = _cannot_bind(settings.host, settings.port)
    if taken is not None:  # uvicorn would log a traceback-like error and exit 3
        typer.echo(f"taskmanager: cannot listen on {settings.host}:{settings.port}: {taken}", err=True)
        raise typer.Exit(1)
    if plan.migrate_first:
        asyncio.run(database.on_store(settings.database_url, upgrade))
    # Worker processes read their settings from the environment.
    env = {
        f"TASKMANAGER_{name.upper()}": str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }
    env["TASKMANAGER_MIGRATE_ON_START"] = str(plan.migrate_on_start).lower()
    os.environ.update(env)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes behind one port: /metrics sums their counters (server/metrics.py).
        metrics_dir = tempfile.mkdtemp(prefix="taskmanager-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    console.print(f"TaskManager {__version__} listening on http://{settings.host}:{settings.port}")
    console.print(f"  database: {display_url(settings.database_url)}")
    console.print(f"  auth: {'on (API key required)' if plan.auth_on else 'OFF (open mode)'}")
    limits = f"{settings.rate_limit}/min per key" if settings.rate_limit else "per key only"
    shared = " (shared through Redis)" if settings.redis_url else ""
    console.print(f"  rate limits: {limits}{shared}")
    console.print(f"  docs: http://{settings.host}:{settings.port}/api/docs")
    import uvicorn

    from taskmanager.server.http import raise_open_files_limit, uvicorn_options
    from taskmanager.server.logs import log_config

    raise_open_files_limit(settings.max_connections)

    uvicorn.run(
        "taskmanager.server.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=log_level,
        log_config=log_config(log_level),
        # The app's edge writes the access log (taskmanager.access), with request ids and keys.
        access_log=False,
        loop="auto",
        # The app decides whose X-Forwarded-For to believe (TASKMANAGER_TRUSTED_PROXIES).
        proxy_headers=False,
        **uvicorn_options(settings),
    )


def _cannot_bind(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, say), or None. Bound as uvicorn binds
    (``SO_REUSEADDR``), then released before it binds."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return str(exc.strerror)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _check_log_level(level: str) -> None:
    if level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{level!r} is not one of {', '.join(LOG_LEVELS)}", param_hint="--log-level")


@contextlib.contextmanager
def _copying() -> Iterator[Callable[[int, int], None]]:
    """A progress bar of the rows an import writes, on stderr while they are written (gone once
    done, so the summary stands alone; nothing at all where stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("copying rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        rows = bar.add_task("rows", total=None)
        yield lambda written, total: bar.update(rows, completed=written, total=total)


@app.command("import-prismq")
def import_prismq(
    source: Annotated[str, typer.Option("--from", help="The PrismQ database: mysql://user:pass@host/db")],
    database_url: DatabaseOption = None,
    source_timezone: Annotated[
        str, typer.Option(help="Time zone of PrismQ DATETIME columns (TIMESTAMP ones are exact).")
    ] = "UTC",
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Leave out rows whose id the target already has.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and check everything; write nothing.")
    ] = False,
) -> None:
    """Copy a PrismQ database's task types and tasks (ids kept) into this one, migrated first."""
    require_server("import-prismq")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from taskmanager.errors import Unavailable
    from taskmanager.prismq import IdsTaken, ImportOptions, ImportRefused, PrismqImportError
    from taskmanager.prismq import import_prismq as run_import

    try:
        zone = ZoneInfo(source_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        console.print(f"[red]Unknown time zone {source_timezone!r}[/red] (use a name such as Europe/Prague).")
        raise typer.Exit(2) from None
    settings = settings_from(database_url=database_url)
    try:
        with _copying() as progress:
            options = ImportOptions(settings.engine_defaults(), zone, skip_existing, dry_run, progress)
            report = asyncio.run(run_import(source, settings.database_url, options))
    except (PrismqImportError, Unavailable) as exc:
        hint = " Import into an empty database, or pass --skip-existing." if isinstance(exc, IdsTaken) else ""
        console.print(
            f"[red]Import refused:[/red] {exc}{hint}"
            if isinstance(exc, ImportRefused)
            else f"[red]{exc}[/red]"
        )
        raise typer.Exit(2 if isinstance(exc, ImportRefused) else 1) from None
    typer.echo("\n".join(report.lines()))


@app.command()
def worker(
    target: Annotated[str, typer.Argument(help="The Worker to run, as module:attribute.")],
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Tasks run at once.")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option(envvar="TASKMANAGER_API_URL", help="Server URL, or a database URL.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TASKMANAGER_API_KEY", help="API key.")] = None,
    worker_id: Annotated[str | None, typer.Option(help="Worker id (default: host-pid).")] = None,
    lease_seconds: Annotated[int | None, typer.Option(help="Lease of each claim.")] = None,
    task_timeout: Annotated[float | None, typer.Option(help="Default time limit per task.")] = None,
    claim_wait: Annotated[float | None, typer.Option(help="Long-poll seconds (0: off).")] = None,
    retries: Annotated[
        int | None,
        typer.Option(min=0, help="Times a failed report (complete, progress, heartbeat) is sent again."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text or json (one object per line).")] = "text",
) -> None:
    """Run a worker: claim tasks of its types and run its handlers until SIGTERM/SIGINT."""
    from taskmanager.client.config import is_database_url

    if is_database_url(api_url or os.environ.get("TASKMANAGER_API_URL", "")):
        require_server("worker with a database URL")  # the embedded engine, in the worker
    from taskmanager.worker.command import run_worker

    code = run_worker(
        target,
        concurrency=concurrency,
        api_url=api_url,
        api_key=api_key,
        worker_id=worker_id,
        lease_seconds=lease_seconds,
        task_timeout=task_timeout,
        claim_wait=claim_wait,
        retries=retries,
        log_level=log_level,
        log_format=log_format,
    )
    raise typer.Exit(code)


def main() -> None:
    sys.exit(failures.run(app, sys.argv[1:]))
