"""The job queue (src/core/jobs.py): the same tasks run by `ledgersync worker` processes on
PostgreSQL and by the in-process worker on SQLite; locks, schedules, graceful stops, and jobs of a
killed worker picked up by another."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from alembic import command
from procrastinate.schema import SchemaManager
from procrastinate.testing import InMemoryConnector
from typer.testing import CliRunner

from src.cli import app as cli_app
from src.core.jobs import (
    JOBS_SCHEMA,
    AlreadyQueued,
    build_job_app,
    defer_job,
    psycopg_conninfo,
    run_jobs_in_process,
    serve_jobs,
    warn_if_autovacuum_is_off,
)
from src.core.migrations import alembic_config, upgrade_database
from src.core.settings import Settings, get_settings
from tests.core import job_tasks
from tests.fixtures import ON_POSTGRES, TEST_ENCRYPTION_KEY, empty_job_queue

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="TEST_DATABASE_URL is not PostgreSQL")
REPOSITORY = Path(__file__).resolve().parents[2]
LEDGERSYNC = Path(sys.executable).with_name("ledgersync")

# Compressed so a dead worker is noticed in seconds: a beat every 0.5 s, dead after 2 s silent.
FAST_JOB_SETTINGS: dict[str, Any] = {
    "job_heartbeat_seconds": 0.5,
    "job_stalled_after_seconds": 2.0,
    "job_stalled_check_seconds": 0.5,
    "job_poll_seconds": 0.2,
    "job_concurrency": 2,
    "job_task_modules": [job_tasks.MODULE],
}


def job_settings(database_url: str) -> Settings:
    return Settings(environment="test", database_url=database_url, **FAST_JOB_SETTINGS)


@pytest.fixture
async def job_app(database_url: str) -> AsyncIterator[procrastinate.App]:
    """The session database's job queue, open and empty: PostgreSQL's, or in memory on SQLite."""
    app = build_job_app(job_settings(database_url))
    async with app.open_async():
        await empty_job_queue(app)
        yield app


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """Where the test tasks write what they did."""
    return tmp_path / "trace.txt"


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


async def wait_for_line(path: Path, line: str, timeout: float) -> float:
    """Seconds until `line` appears in the trace; fails the test after `timeout`."""
    started = time.monotonic()
    while line not in lines(path):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{line!r} not written within {timeout} s: {lines(path)}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def unfinished_jobs(app: procrastinate.App) -> list[str]:
    """The tests' own jobs not finished. The service's periodic jobs (schedules, keep-alive) are
    deferred by every worker that starts, and are not what these tests are about."""
    return [
        f"{job.task_name}:{job.status}"
        for job in await app.job_manager.list_jobs_async()
        if job.status in ("todo", "doing") and job.task_name.startswith("tests.")
    ]


async def wait_until_all_jobs_finished(app: procrastinate.App, timeout: float) -> None:
    """A task's last line is written just before its worker records the job as finished."""
    started = time.monotonic()
    while unfinished := await unfinished_jobs(app):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"jobs still unfinished after {timeout} s: {unfinished}")
        await asyncio.sleep(0.05)


def test_the_job_connection_is_the_same_database_with_the_job_schema() -> None:
    conninfo = psycopg.conninfo.conninfo_to_dict(
        psycopg_conninfo("postgresql+asyncpg://ann:p%40ss@db.example:6543/ledger?ssl=require")
    )
    assert conninfo == {
        "user": "ann",
        "password": "p@ss",
        "host": "db.example",
        "port": "6543",
        "dbname": "ledger",
        "sslmode": "require",
        "options": f"-c search_path={JOBS_SCHEMA}",
    }


def test_a_dead_worker_is_not_declared_before_missing_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="at least twice"):
        Settings(job_heartbeat_seconds=10, job_stalled_after_seconds=15)


async def test_serve_runs_deferred_jobs_in_process_on_sqlite(tmp_path: Path, trace: Path) -> None:
    settings = job_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with serve_jobs(settings) as app:
        assert isinstance(app.connector, InMemoryConnector)
        await defer_job(app, "tests.record", path=str(trace), label="ran")
        await wait_for_line(trace, "ran", timeout=5)
        await wait_until_all_jobs_finished(app, timeout=5)


async def test_tasks_of_the_in_process_worker_reach_the_services_resources(
    tmp_path: Path, trace: Path
) -> None:
    settings = job_settings(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with serve_jobs(settings, additional_context={"resource": "session factory"}) as app:
        await defer_job(app, "tests.record_shared_resource", path=str(trace))
        await wait_for_line(trace, "session factory", timeout=5)


async def test_the_in_process_worker_runs_a_deferred_job(
    job_app: procrastinate.App, trace: Path
) -> None:
    async with run_jobs_in_process(job_app):
        await defer_job(job_app, "tests.record", path=str(trace), label="ran")
        await wait_for_line(trace, "ran", timeout=10)
    assert lines(trace) == ["ran"]


async def test_unknown_task_names_are_refused_when_deferring(job_app: procrastinate.App) -> None:
    with pytest.raises(procrastinate.exceptions.TaskNotFound):
        await defer_job(job_app, "tests.no_such_task")


async def test_a_queueing_lock_refuses_a_second_waiting_job(
    job_app: procrastinate.App, trace: Path
) -> None:
    await defer_job(
        job_app, "tests.record", queueing_lock="conn-1:invoices", path=str(trace), label="first"
    )
    with pytest.raises(AlreadyQueued):
        await defer_job(
            job_app,
            "tests.record",
            queueing_lock="conn-1:invoices",
            path=str(trace),
            label="second",
        )
    await defer_job(
        job_app, "tests.record", queueing_lock="conn-2:invoices", path=str(trace), label="other"
    )
    assert sorted(await unfinished_jobs(job_app)) == ["tests.record:todo", "tests.record:todo"]


async def test_jobs_sharing_a_lock_run_one_at_a_time_in_order(
    job_app: procrastinate.App, trace: Path
) -> None:
    for label in ("a", "b"):
        await defer_job(
            job_app, "tests.record_slowly", lock="conn-1", path=str(trace), label=label, seconds=0.3
        )
    async with run_jobs_in_process(job_app):  # two at once allowed, but not with one lock
        await wait_for_line(trace, "b done", timeout=10)
    assert lines(trace) == ["a started", "a done", "b started", "b done"]


async def test_a_scheduled_job_waits_for_its_time(job_app: procrastinate.App, trace: Path) -> None:
    async with run_jobs_in_process(job_app):
        deferred_at = time.monotonic()
        await defer_job(
            job_app,
            "tests.record",
            schedule_at=datetime.now(UTC) + timedelta(seconds=1.5),
            path=str(trace),
            label="on time",
        )
        await asyncio.sleep(0.8)
        assert lines(trace) == []
        await wait_for_line(trace, "on time", timeout=10)
        assert time.monotonic() - deferred_at >= 1.5


async def test_naive_schedules_are_refused(job_app: procrastinate.App) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await defer_job(job_app, "tests.record", schedule_at=datetime(2030, 1, 1))


async def test_stopping_the_in_process_worker_lets_a_running_job_finish(
    job_app: procrastinate.App, trace: Path
) -> None:
    async with run_jobs_in_process(job_app):
        await defer_job(job_app, "tests.record_slowly", path=str(trace), label="job", seconds=0.5)
        await wait_for_line(trace, "job started", timeout=10)
    assert lines(trace) == ["job started", "job done"]
    assert await unfinished_jobs(job_app) == []


def test_worker_on_sqlite_says_serve_runs_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["worker"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "`ledgersync serve` runs the jobs itself" in result.output


# PostgreSQL: the schema, and `ledgersync worker` processes.


_CATALOG_QUERIES = {
    "columns": """SELECT table_name, column_name, data_type, udt_name, is_nullable,
                         column_default
                    FROM information_schema.columns WHERE table_schema = current_schema()
                   ORDER BY 1, 2""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
                       ORDER BY 1, 2""",
    "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
                   WHERE schemaname = current_schema() ORDER BY 1, 2""",
    "functions": """SELECT proname, pg_get_function_identity_arguments(oid),
                           pg_get_function_result(oid), prosrc
                      FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
                     ORDER BY 1, 2""",
    "enums": """SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
                  FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
                 WHERE t.typnamespace = current_schema()::regnamespace
                 GROUP BY 1 ORDER BY 1""",
    "triggers": """SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
                     FROM pg_trigger
                    WHERE NOT tgisinternal
                      AND tgrelid IN (SELECT oid FROM pg_class
                                       WHERE relnamespace = current_schema()::regnamespace)
                    ORDER BY 1, 2""",
}


async def _catalog(connection: psycopg.AsyncConnection[Any], schema: str) -> dict[str, Any]:
    """What the schema holds, with its own name taken out so two schemas compare."""
    await connection.execute(f"SET LOCAL search_path TO {schema}")
    catalog: dict[str, Any] = {}
    for kind, query in _CATALOG_QUERIES.items():
        rows = await (await connection.execute(query)).fetchall()
        catalog[kind] = [
            tuple(
                value.replace(f"{schema}.", "") if isinstance(value, str) else value
                for value in row
            )
            for row in rows
        ]
    return catalog


@postgres_only
async def test_a_worker_warns_where_the_server_does_not_vacuum_the_queue(
    job_app: procrastinate.App, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await psycopg.AsyncConnection.connect(psycopg_conninfo(database_url)) as connection:
        cursor = await connection.execute("SHOW autovacuum")
        row = await cursor.fetchone()
    assert row is not None
    server_vacuums = row[0] == "on"
    with caplog.at_level("WARNING", logger="src.core.jobs"):
        assert await warn_if_autovacuum_is_off(job_app) is server_vacuums
    warned = [r for r in caplog.records if "autovacuum is off" in r.getMessage()]
    assert len(warned) == (0 if server_vacuums else 1)


@postgres_only
async def test_the_migrated_schema_is_the_installed_procrastinates(database_url: str) -> None:
    """Fails the day procrastinate is upgraded without the migration that brings its schema."""
    async with await psycopg.AsyncConnection.connect(psycopg_conninfo(database_url)) as connection:
        migrated = await _catalog(connection, JOBS_SCHEMA)
        await connection.execute("CREATE SCHEMA procrastinate_reference")
        await connection.execute("SET LOCAL search_path TO procrastinate_reference")
        await connection.execute(SchemaManager.get_schema())
        reference = await _catalog(connection, "procrastinate_reference")
        await connection.rollback()
    assert migrated["columns"]  # the comparison is of something
    assert migrated == reference


@postgres_only
async def test_the_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    async def job_schemas() -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            psycopg_conninfo(database_url)
        ) as connection:
            rows = await (
                await connection.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname = %s", (JOBS_SCHEMA,)
                )
            ).fetchall()
            return [row[0] for row in rows]

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0009")
    try:
        assert await job_schemas() == []
    finally:
        await asyncio.to_thread(upgrade_database, database_url)
    assert await job_schemas() == [JOBS_SCHEMA]


@pytest.fixture
def start_worker(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts `ledgersync worker` processes on the session database; kills leftovers."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("JOB_", "DATABASE_URL", "XERO_"))
    }
    environment.update(
        {name.upper(): str(value) for name, value in FAST_JOB_SETTINGS.items()},
        JOB_TASK_MODULES=f'["{job_tasks.MODULE}"]',
        DATABASE_URL=database_url,
        ENVIRONMENT="test",
        XERO_CLIENT_ID="test-client",
        TOKEN_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,
        PYTHONPATH=str(REPOSITORY),  # the test tasks' module
    )
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        worker = subprocess.Popen(
            [str(LEDGERSYNC), "worker"],
            env=environment,
            cwd=tmp_path,  # no `.env` of the checkout
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def registered_workers(app: procrastinate.App) -> int:
    row = await app.connector.execute_query_one_async(
        "SELECT count(*) AS workers FROM procrastinate_workers"
    )
    return int(row["workers"])


@postgres_only
async def test_a_worker_process_runs_a_deferred_job(
    job_app: procrastinate.App,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    trace: Path,
) -> None:
    await defer_job(job_app, "tests.record", path=str(trace), label="ran")
    start_worker()
    await wait_for_line(trace, "ran", timeout=30)
    assert lines(trace) == ["ran"]


@postgres_only
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stopped_worker_finishes_its_job_then_exits(
    job_app: procrastinate.App,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    trace: Path,
    stop_signal: signal.Signals,
) -> None:
    await defer_job(job_app, "tests.record_slowly", path=str(trace), label="job", seconds=1.5)
    worker = start_worker()
    await wait_for_line(trace, "job started", timeout=30)
    worker.send_signal(stop_signal)
    exit_code = await asyncio.to_thread(worker.wait, 30)
    assert exit_code == 0
    assert lines(trace) == ["job started", "job done"]
    assert await unfinished_jobs(job_app) == []
    assert await registered_workers(job_app) == 0


@postgres_only
async def test_the_job_of_a_killed_worker_is_taken_up_by_another(
    job_app: procrastinate.App,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    trace: Path,
) -> None:
    await defer_job(job_app, "tests.hang_on_first_attempt", path=str(trace), label="sync")
    doomed = start_worker()
    await wait_for_line(trace, "sync attempt 0", timeout=30)
    start_worker()
    started = time.monotonic()
    while await registered_workers(job_app) < 2:
        assert time.monotonic() - started < 30, "the second worker did not start"
        await asyncio.sleep(0.1)
    doomed.send_signal(signal.SIGKILL)
    await asyncio.to_thread(doomed.wait, 10)
    # Dead after 2 s without a beat, noticed at the next check (0.5 s), fetched at the next poll.
    recovered_in = await wait_for_line(trace, "sync done", timeout=30)
    assert lines(trace) == ["sync attempt 0", "sync attempt 1", "sync done"]
    assert recovered_in < 2.0 + 0.5 + 0.2 + 3.0  # plus slack for a loaded machine
    await wait_until_all_jobs_finished(job_app, timeout=5)
