"""Background jobs on Procrastinate: the task registry, one App per Settings, deferring, workers.

On PostgreSQL the queue lives in the `procrastinate` schema of our database (migration 0010) and
`ledgersync worker` processes, on any number of machines, share it. On the embedded SQLite default
there is no server to share: Procrastinate's in-memory connector and one worker inside `serve`
(`serve_jobs`) run the same task functions. Those jobs do not outlive the process, which is why a
task must be able to start again from what it stored (a sync run from its checkpoint).
See docs/jobs.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import procrastinate
import psycopg_pool
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate.app import WorkerOptions
from procrastinate.jobs import DEFAULT_QUEUE
from procrastinate.retry import RetryValue
from procrastinate.testing import InMemoryConnector
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import make_url

from src.core.settings import Settings

logger = logging.getLogger(__name__)

# The PostgreSQL schema of Procrastinate's tables and functions (migration 0010 creates it).
JOBS_SCHEMA = "procrastinate"
# Modules that register ledgersync's own tasks on `job_tasks` when imported; every App imports
# them, so a worker knows every task a web process may defer.
TASK_MODULES: tuple[str, ...] = (
    "src.domains.external_accounting.syncs.tasks",
    "src.domains.external_accounting.xero.auth.keep_alive",
    "src.domains.external_accounting.schedules.tasks",
    "src.domains.external_accounting.xero.webhooks.tasks",
    "src.domains.external_accounting.reconciliation.tasks",
    "src.domains.external_accounting.outbound.tasks",
)

# Raised by `defer_job` when a job with the same queueing lock is already waiting.
AlreadyQueued = procrastinate_exceptions.AlreadyEnqueued

TaskFunction = TypeVar("TaskFunction", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class _TaskDefinition:
    function: Callable[..., Awaitable[Any]]
    name: str
    queue: str
    retry: RetryValue
    pass_context: bool
    cron: str | Callable[[Settings], str | None] | None


class TaskRegistry:
    """Where modules declare their task functions, at import. Every App `build_job_app` makes
    gets all of them (a Procrastinate Blueprint binds its tasks to the first App it joins, and
    tests and tools build several)."""

    def __init__(self) -> None:
        self._definitions: dict[str, _TaskDefinition] = {}

    def task(
        self,
        name: str,
        *,
        queue: str = DEFAULT_QUEUE,
        retry: RetryValue = False,
        pass_context: bool = False,
        cron: str | Callable[[Settings], str | None] | None = None,
    ) -> Callable[[TaskFunction], TaskFunction]:
        """Register an async function as the task `name` (stable: queued jobs refer to it).

        `retry`: Procrastinate's (`True`, a count, or a `RetryStrategy`). `pass_context`: the
        function gets the `JobContext` first (attempts, abort requests). `cron`: also deferred
        periodically (six fields allowed, the last being seconds), with a `timestamp` argument;
        a function of the settings when a setting decides how often (or, returning None,
        whether at all).
        """

        def register(function: TaskFunction) -> TaskFunction:
            known = self._definitions.get(name)
            if known is not None and known.function is not function:
                raise ValueError(f"a task named {name!r} is already registered")
            self._definitions[name] = _TaskDefinition(
                function, name, queue, retry, pass_context, cron
            )
            return function

        return register

    def install(self, app: procrastinate.App, settings: Settings) -> None:
        """Declare every registered task on `app`, periodic ones on `settings`' cron."""
        for definition in self._definitions.values():
            options: dict[str, Any] = {
                "name": definition.name,
                "queue": definition.queue,
                "retry": definition.retry,
                "pass_context": definition.pass_context,
            }
            cron = definition.cron
            if callable(cron):
                cron = cron(settings)
            if cron is not None:
                # A periodic sweep runs one tick at a time, with at most one more waiting: two
                # overlapping scheduler ticks each queued from a snapshot the other had made
                # stale, syncing a connection twice for one slot while others waited
                # (bench/fleet.py). A tick that cannot be deferred because one waits is skipped.
                options.update(lock=definition.name, queueing_lock=definition.name)
            task = app.task(**options)(definition.function)
            if cron is not None:
                app.periodic(cron=cron, periodic_id=definition.name)(task)


job_tasks = TaskRegistry()


def psycopg_conninfo(database_url: str) -> str:
    """The libpq connection string for the database a SQLAlchemy URL names, with the job schema
    as the search path (Procrastinate's SQL names its tables unqualified)."""
    url = make_url(database_url)
    query = dict(url.query)
    if "ssl" in query:  # asyncpg's name for libpq's sslmode
        query["sslmode"] = query.pop("ssl")
    libpq_url = url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    search_path = f"-c search_path={JOBS_SCHEMA}"
    options = conninfo_to_dict(libpq_url).get("options")
    return make_conninfo(libpq_url, options=f"{options} {search_path}" if options else search_path)


def _connector(settings: Settings) -> procrastinate.BaseConnector:
    if settings.is_sqlite:
        return InMemoryConnector()
    # Grown on demand: a web process only defers; a worker may finish every job at once while
    # it fetches, beats and polls for aborts (its LISTEN connection is apart from the pool).
    return procrastinate.PsycopgConnector(
        conninfo=psycopg_conninfo(settings.database_url),
        min_size=1,
        max_size=settings.job_concurrency + 3,
    )


def _worker_options(settings: Settings) -> WorkerOptions:
    options: WorkerOptions = {
        "concurrency": settings.job_concurrency,
        "fetch_job_polling_interval": settings.job_poll_seconds,
        "abort_job_polling_interval": settings.job_poll_seconds,
        "update_heartbeat_interval": settings.job_heartbeat_seconds,
        "stalled_worker_timeout": settings.job_stalled_after_seconds,
        # Runs keep their own history (sync_runs); finished jobs would only grow the table, or
        # the memory of an in-process queue. Failed ones stay, to be looked at.
        "delete_jobs": "successful",
    }
    if settings.job_shutdown_grace_seconds is not None:
        options["shutdown_graceful_timeout"] = settings.job_shutdown_grace_seconds
    return options


def build_job_app(settings: Settings) -> procrastinate.App:
    """The Procrastinate App for these settings (not yet open): PostgreSQL's queue for a
    server database, an in-memory one for SQLite; every registered task declared on it."""
    for module in (*TASK_MODULES, *settings.job_task_modules):
        importlib.import_module(module)
    app = procrastinate.App(
        connector=_connector(settings), worker_defaults=_worker_options(settings)
    )
    job_tasks.install(app, settings)
    return app


async def defer_job(
    app: procrastinate.App,
    task_name: str,
    *,
    queueing_lock: str | None = None,
    lock: str | None = None,
    schedule_at: datetime | None = None,
    **task_kwargs: Any,
) -> int:
    """Queue a job of the registered task `task_name`, with JSON keyword arguments; its id.

    `queueing_lock`: refused (`AlreadyQueued`) while a job with the same one is waiting to start,
    so a second request finds the first. `lock`: jobs sharing it run one at a time, in the order
    queued. `schedule_at` (aware): not started before then.
    """
    if schedule_at is not None and schedule_at.tzinfo is None:
        raise ValueError("schedule_at must be timezone-aware")
    deferrer = app.configure_task(
        task_name,
        allow_unknown=False,
        queueing_lock=queueing_lock,
        lock=lock,
        schedule_at=schedule_at,
    )
    return await deferrer.defer_async(**task_kwargs)


async def defer_jobs(
    app: procrastinate.App,
    task_name: str,
    jobs: Sequence[tuple[str, dict[str, Any], datetime | None]],
) -> list[int]:
    """Queue jobs of `task_name` in one statement, each `(lock, task_kwargs, schedule_at)` with
    that lock as its queueing lock and lock too, not started before `schedule_at` (aware, or
    None: at once); their ids, in order. All or none: `AlreadyQueued` when any lock's job is
    already waiting."""
    if not jobs:
        return []
    if any(at is not None and at.tzinfo is None for _, _, at in jobs):
        raise ValueError("schedule_at must be timezone-aware")
    deferred = await app.job_manager.batch_defer_jobs_async(
        [
            app.configure_task(
                task_name, allow_unknown=False, queueing_lock=lock, lock=lock, schedule_at=at
            ).make_new_job(**kwargs)
            for lock, kwargs, at in jobs
        ]
    )
    return [job.id for job in deferred if job.id is not None]


@contextlib.asynccontextmanager
async def run_jobs_in_process(
    app: procrastinate.App,
    *,
    name: str = "in-process",
    additional_context: Mapping[str, Any] | None = None,
    queues: Iterable[str] | None = None,
) -> AsyncIterator[None]:
    """Run a worker of the open `app` on the running loop while the block runs, then stop it the
    way a worker stops on SIGTERM: it takes no new job and lets those in flight finish (cancelled
    after JOB_SHUTDOWN_GRACE_SECONDS, when set). Tasks with `pass_context` find
    `additional_context` (the service's shared resources) in `context.additional_context`.
    `queues`: only jobs of these (default: all)."""
    options: WorkerOptions = {
        "name": name,
        "install_signal_handlers": False,
        "additional_context": dict(additional_context or {}),
    }
    if queues is not None:
        options["queues"] = list(queues)
    worker = asyncio.create_task(
        app.run_worker_async(**options),
        name=f"jobs {name}",
    )
    worker.add_done_callback(_log_unexpected_stop)
    try:
        yield
    finally:
        worker.remove_done_callback(_log_unexpected_stop)
        # Procrastinate turns the cancellation into a graceful stop and waits for it.
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def _log_unexpected_stop(worker: asyncio.Task[None]) -> None:
    if not worker.cancelled() and worker.exception() is not None:
        logger.error("the in-process job worker stopped", exc_info=worker.exception())


@contextlib.asynccontextmanager
async def serve_jobs(
    settings: Settings, *, additional_context: Mapping[str, Any] | None = None
) -> AsyncIterator[procrastinate.App]:
    """The job queue for the service's lifespan: the App, open for deferring; on SQLite with a
    worker in this process (on PostgreSQL, `ledgersync worker` processes run the jobs). Enter it
    after what tasks use (engine, HTTP client) exists: leaving it waits for jobs in flight."""
    app = build_job_app(settings)
    if settings.is_sqlite:
        async with (
            app.open_async(),
            run_jobs_in_process(app, additional_context=additional_context),
        ):
            yield app
        return
    # The web process only defers: it must start, and /healthz say what is wrong, while the
    # database is away, so its pool opens without waiting for a first connection (the worker's
    # waits: it has nothing to do without one).
    pool = psycopg_pool.AsyncConnectionPool(
        psycopg_conninfo(settings.database_url),
        min_size=1,
        max_size=settings.job_concurrency + 3,
        open=False,
        check=psycopg_pool.AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=False)
    try:
        async with app.open_async(pool):
            yield app
    finally:
        await pool.close()


async def retry_stalled_jobs(app: procrastinate.App, settings: Settings) -> list[int]:
    """Put back in the queue the jobs of workers silent for JOB_STALLED_AFTER_SECONDS (killed,
    or cut off from the database); the ids re-queued. Each is retried from the start, so a task
    resumes from what it stored."""
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.job_stalled_after_seconds
    )
    requeued: list[int] = []
    for job in stalled:
        assert job.id is not None
        try:
            await app.job_manager.retry_job(job)
        except procrastinate_exceptions.ConnectorException:
            continue  # another worker re-queued it first, or it finished meanwhile
        requeued.append(job.id)
        logger.warning(
            "re-queued job %s (%s) of a stalled worker",
            job.id,
            job.task_name,
            extra={"job_id": job.id, "task": job.task_name, "stalled_worker": job.worker_id},
        )
    await app.job_manager.prune_stalled_workers(settings.job_stalled_after_seconds)
    return requeued


async def _retry_stalled_jobs_forever(app: procrastinate.App, settings: Settings) -> None:
    while True:
        try:
            await retry_stalled_jobs(app, settings)
        except Exception:  # the database may be briefly away; the next check tries again
            logger.exception("checking for stalled jobs failed")
        await asyncio.sleep(settings.job_stalled_check_seconds)


async def warn_if_autovacuum_is_off(app: procrastinate.App) -> bool:
    """Whether the server vacuums on its own; a warning where it does not. Every job is an
    insert, two updates and a delete in the queue's table: without autovacuum its dead rows
    pile up, each worker's job fetch wades through them, and at a few dozen jobs a second the
    queue falls behind within half an hour (bench/fleet.py, where CI machines turn it off)."""
    row = await app.connector.execute_query_one_async(
        "SELECT current_setting('autovacuum') AS autovacuum"
    )
    if row["autovacuum"] == "on":
        return True
    logger.warning(
        "autovacuum is off on this PostgreSQL server: the job queue's table will bloat and "
        "job fetches slow down; turn it on, or VACUUM procrastinate_jobs often"
    )
    return False


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: Iterable[str] | None = None,
    additional_context: Mapping[str, Any] | None = None,
) -> None:
    """A PostgreSQL worker until SIGTERM or SIGINT: then it takes no new job and lets those in
    flight finish (a second signal, or SIGKILL, leaves them to the stalled-job check of the
    other workers). Beside the jobs it re-queues the jobs of stalled workers."""
    app = build_job_app(settings)
    options: WorkerOptions = {
        "name": f"{socket.gethostname()}:{os.getpid()}",
        "additional_context": dict(additional_context or {}),
    }
    if concurrency is not None:
        options["concurrency"] = concurrency
    if queues is not None:
        options["queues"] = list(queues)
    async with app.open_async():
        await warn_if_autovacuum_is_off(app)
        recovery = asyncio.create_task(_retry_stalled_jobs_forever(app, settings))
        try:
            await app.run_worker_async(**options)
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
