"""Background syncs on the job queue (issue 12): `background=true` answers 202 with queued runs
that a worker completes (in-process on SQLite, `ledgersync worker` processes on PostgreSQL); one
waiting or running run per connection and object type; cancel; and runs that go on by
themselves: resumed after a daily-limit pause, retried after a temporary outage, taken over from
a killed worker. Time is compressed: fast job settings, a sandbox day of two seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import procrastinate
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.jobs import build_job_app, run_jobs_in_process
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import RESOURCES, service_resources
from src.domains.external_accounting.base.sync import AccountSyncRequest, InvoiceSyncRequest
from src.domains.external_accounting.connections.models import Connection, Provider
from src.domains.external_accounting.exceptions import SyncRunFinished
from src.domains.external_accounting.ledger.models import Invoice, RunStatus, SyncRun
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.syncs.service import SyncsService
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import (
    FAST_JOBS_ENVIRONMENT,
    ON_POSTGRES,
    background_service,
    connected_to_new_tenant,
    empty_job_queue,
    fast_jobs,
    inject_faults,
    sandbox_stats,
    service_environment,
    tighten_limits,
)
from tests.ground_truth import assert_complete

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="TEST_DATABASE_URL is not PostgreSQL")
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="the in-memory queue of SQLite")
LEDGERSYNC = Path(sys.executable).with_name("ledgersync")
REPOSITORY = Path(__file__).resolve().parents[4]

INVOICES = 2500  # three pages of 1,000 when paged as one keyset
# Every accounting call takes this long, so a sync of three pages can be caught in the middle.
SLOW_CALLS: dict[str, Any] = {"path_contains": "/Invoices", "slow_rate": 1.0, "slow_seconds": 0.5}
FULL = {"incremental": "false", "months_back": "120"}


def fast_cipher(settings: Settings) -> TokenCipher:
    return TokenCipher.from_settings(settings)


def accounts_request(org_id: uuid.UUID, connection_id: uuid.UUID) -> AccountSyncRequest:
    return AccountSyncRequest(
        organization_id=org_id, provider=Provider.XERO, connection_id=connection_id
    )


async def post_background(
    client: httpx.AsyncClient,
    key: str,
    org_id: uuid.UUID,
    connection: Connection,
    what: str = "invoices",
    **params: str,
) -> httpx.Response:
    return await client.post(
        f"/external-accounting/{what}/sync",
        params={
            "org_id": str(org_id),
            "connection_id": str(connection.id),
            "background": "true",
            **params,
        },
        headers=bearer(key),
    )


async def queued_run_id(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    runs = response.json()["sync_runs"]
    assert len(runs) == 1
    assert response.headers["location"] == f"/external-accounting/sync-runs/{runs[0]['id']}"
    return str(runs[0]["id"])


async def get_run(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, run_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"/external-accounting/sync-runs/{run_id}",
        params={"org_id": str(org_id)},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_run(
    client: httpx.AsyncClient,
    key: str,
    org_id: uuid.UUID,
    run_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> dict[str, Any]:
    """Poll `GET /sync-runs/{id}` (as a caller would) until `done` holds for the run."""
    deadline = time.monotonic() + timeout
    while True:
        run = await get_run(client, key, org_id, run_id)
        if done(run):
            return run
        assert time.monotonic() < deadline, f"run not there after {timeout} s: {run}"
        await asyncio.sleep(0.05)


def ended(run: dict[str, Any]) -> bool:
    return run["status"] in ("success", "failed", "cancelled")


async def jobs_idle(job_app: procrastinate.App, timeout: float = 10.0) -> None:
    """Until no job waits to run now or runs (scheduled ones may wait)."""
    deadline = time.monotonic() + timeout
    while any(job.status == "doing" for job in await job_app.job_manager.list_jobs_async()):
        assert time.monotonic() < deadline, "jobs still running"
        await asyncio.sleep(0.05)


async def stored_invoices(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection
) -> int:
    async with session_factory() as session:
        count = await session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.connection_id == connection.id)
        )
    return int(count or 0)


def invoice_calls(sandbox: RunningSandbox) -> int:
    return int(sandbox_stats(sandbox)["by_path"].get("/Invoices", 0))


# -- 202, and completion by a worker --------------------------------------------------------


@sqlite_only
async def test_a_background_sync_answers_202_and_serve_completes_it_in_process(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Queued Ltd", INVOICES
    )
    async with background_service(fast_jobs(settings)) as (_, service):
        response = await post_background(service, key, org_id, connection, **FULL)
        run_id = await queued_run_id(response)
        assert response.json()["sync_runs"][0]["status"] in ("queued", "running")
        run = await wait_for_run(service, key, org_id, run_id, ended, timeout=30)
    assert run["status"] == "success", run
    assert run["params"]["background"] is True
    assert run["pages"] >= 3
    assert run["attempts"] == 0
    assert run["phase"] in ("window", "outstanding")
    assert run["count"] == INVOICES
    assert run["api_calls"] >= 3
    await assert_complete(session_factory, fresh_sandbox, connection)


@pytest.fixture
def start_worker(
    settings: Settings, sandbox: RunningSandbox, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts `ledgersync worker` processes on the session database and sandbox."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("JOB_", "DATABASE_URL", "XERO_", "SYNC_"))
    }
    environment.update(
        service_environment(settings, sandbox),
        **FAST_JOBS_ENVIRONMENT,
        PYTHONPATH=str(REPOSITORY),
    )
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        worker = subprocess.Popen(
            [str(LEDGERSYNC), "worker"], env=environment, cwd=tmp_path, stdout=log, stderr=log
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@postgres_only
async def test_a_background_sync_answers_202_and_a_worker_process_completes_it(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Queued Ltd", INVOICES
    )
    async with background_service(fast_jobs(settings), worker=False) as (_, service):
        run_id = await queued_run_id(
            await post_background(service, key, org_id, connection, **FULL)
        )
        assert (await get_run(service, key, org_id, run_id))["status"] == "queued"  # no worker yet
        start_worker()
        run = await wait_for_run(service, key, org_id, run_id, ended, timeout=30)
    assert run["status"] == "success", run
    assert run["count"] == INVOICES
    assert run["pages"] >= 3
    await assert_complete(session_factory, fresh_sandbox, connection)


# -- one run per connection and object type -------------------------------------------------


async def test_a_second_request_while_one_is_queued_gets_the_same_run(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Twice Ltd", 10
    )
    request = InvoiceSyncRequest(
        organization_id=org_id, provider=Provider.XERO, connection_id=connection.id
    )
    job_app = build_job_app(fast_jobs(settings))  # no worker: what is queued stays queued
    async with (
        job_app.open_async(),
        service_resources(settings, fast_cipher(settings)) as resources,
    ):
        await empty_job_queue(job_app)
        async with session_factory() as session:
            first = await SyncsService(session, resources.factory).queue(request, job_app)
        async with session_factory() as session:
            second = await SyncsService(session, resources.factory).queue(request, job_app)
        accounts = accounts_request(org_id, connection.id)
        async with session_factory() as session:
            other_type = await SyncsService(session, resources.factory).queue(accounts, job_app)
        jobs = [j for j in await job_app.job_manager.list_jobs_async() if j.status == "todo"]
    assert [r.status for r in first] == [RunStatus.QUEUED]
    assert [r.id for r in second] == [first[0].id]
    assert other_type[0].id != first[0].id  # accounts have their own run
    assert sorted(j.queueing_lock or "" for j in jobs) == sorted(
        [f"sync:{connection.id}:invoices", f"sync:{connection.id}:accounts"]
    )


async def test_a_second_request_while_one_runs_gets_the_running_run(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Busy Ltd", INVOICES
    )
    inject_faults(fresh_sandbox, **SLOW_CALLS)
    async with background_service(fast_jobs(settings)) as (_, service):
        run_id = await queued_run_id(
            await post_background(service, key, org_id, connection, **FULL)
        )
        await wait_for_run(
            service, key, org_id, run_id, lambda r: r["status"] == "running", timeout=10
        )
        again = await post_background(service, key, org_id, connection, **FULL)
        assert await queued_run_id(again) == run_id
        assert again.json()["sync_runs"][0]["status"] == "running"
        await wait_for_run(service, key, org_id, run_id, ended, timeout=30)


# -- cancel ----------------------------------------------------------------------------------


async def test_cancelling_a_queued_run_stops_it_before_it_calls_xero(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Never Ltd", 10
    )
    request = InvoiceSyncRequest(
        organization_id=org_id, provider=Provider.XERO, connection_id=connection.id
    )
    job_app = build_job_app(fast_jobs(settings))
    async with (
        job_app.open_async(),
        service_resources(settings, fast_cipher(settings)) as resources,
    ):
        await empty_job_queue(job_app)
        async with session_factory() as session:
            [queued] = await SyncsService(session, resources.factory).queue(request, job_app)
        async with session_factory() as session:
            cancelled = await SyncsService(session, resources.factory).cancel(
                org_id, queued.id, job_app
            )
        assert (cancelled.status, cancelled.error) == (RunStatus.CANCELLED, "cancelled")
        [job] = await job_app.job_manager.list_jobs_async()
        assert job.status == "cancelled"  # its queueing lock is free again
        calls_before = invoice_calls(fresh_sandbox)
        async with run_jobs_in_process(job_app, additional_context={RESOURCES: resources}):
            async with session_factory() as session:
                [again] = await SyncsService(session, resources.factory).queue(request, job_app)
            assert again.id != queued.id
            await wait_until_run(session_factory, again.id, RunStatus.SUCCESS)
        async with session_factory() as session:
            with pytest.raises(SyncRunFinished):
                await SyncsService(session, resources.factory).cancel(org_id, again.id, job_app)
            still = await LedgerRepository(session).run_by_id(queued.id)
    assert still is not None
    assert still.status == RunStatus.CANCELLED
    assert still.api_calls == 0
    assert invoice_calls(fresh_sandbox) > calls_before  # only the second run called Xero


async def wait_until_run(
    session_factory: async_sessionmaker[AsyncSession],
    run_id: uuid.UUID,
    status: RunStatus,
    timeout: float = 20,
) -> SyncRun:
    deadline = time.monotonic() + timeout
    while True:
        async with session_factory() as session:
            run = await LedgerRepository(session).run_by_id(run_id)
        assert run is not None
        if run.status == status:
            return run
        assert time.monotonic() < deadline, f"run {run.status}, not {status}"
        await asyncio.sleep(0.05)


async def test_cancelling_a_running_run_stops_it_at_a_page_boundary_keeping_its_pages(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Halted Ltd", INVOICES
    )
    inject_faults(fresh_sandbox, **SLOW_CALLS)
    async with background_service(fast_jobs(settings)) as (app, service):
        run_id = await queued_run_id(
            await post_background(service, key, org_id, connection, **FULL)
        )
        await wait_for_run(service, key, org_id, run_id, lambda r: r["pages"] >= 1, timeout=15)
        response = await service.post(
            f"/external-accounting/sync-runs/{run_id}/cancel",
            params={"org_id": str(org_id)},
            headers=bearer(key),
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["error"]) == ("cancelled", "cancelled")
        await asyncio.sleep(SLOW_CALLS["slow_seconds"] * 2)  # the page in flight comes back
        await jobs_idle(app.state.job_app)
        run = await get_run(service, key, org_id, run_id)
        again = await service.post(
            f"/external-accounting/sync-runs/{run_id}/cancel",
            params={"org_id": str(org_id)},
            headers=bearer(key),
        )
    assert again.status_code == 409
    assert again.json()["error"] == "sync_run_finished"
    assert run["status"] == "cancelled"
    assert run["pages"] >= 1
    stored = await stored_invoices(session_factory, connection)
    # What it stored stays, and nothing was stored after the cancel: the pages it counted are
    # what is in the table, short of the whole. (A full sync pages date-range partitions side by
    # side, so a page holds up to 1,000, not exactly 1,000.)
    assert 0 < stored == run["created"] < INVOICES


# -- going on by themselves ----------------------------------------------------------------


async def test_a_day_limit_pause_is_resumed_by_itself_after_paused_until(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Daily Ltd", INVOICES
    )
    # A sandbox day of two seconds with three calls in it; a reserve of one call, paused for a
    # second: the sync pauses (reserve and daily limit) and goes on each time, with no request.
    tighten_limits(fresh_sandbox, day_limit=3, time_scale=43_200, reset_counters=True)
    compressed = fast_jobs(settings, xero_daily_reserve=1, xero_reserve_pause_seconds=1)
    async with background_service(compressed) as (_, service):
        run_id = await queued_run_id(
            await post_background(service, key, org_id, connection, **FULL)
        )
        paused = await wait_for_run(
            service, key, org_id, run_id, lambda r: r["status"] == "paused", timeout=15
        )
        assert paused["error"] == "rate_limited_daily"
        assert paused["paused_until"] is not None
        run = await wait_for_run(service, key, org_id, run_id, ended, timeout=30)
    assert run["status"] == "success", run
    assert run["count"] == INVOICES
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_temporary_outage_is_retried_and_the_run_succeeds(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Flaky Ltd", INVOICES
    )
    # After each phase's first page, two 503s: the window's next page (two are left, and two
    # children would each take two pages: it does not split) fails the client's two attempts,
    # the run fails on provider_unavailable and is queued again; the retry resumes from the
    # checkpoint.
    inject_faults(fresh_sandbox, path_contains="/Invoices", skip_first=2, next_errors=[503] * 2)
    async with background_service(fast_jobs(settings)) as (_, service):
        run_id = await queued_run_id(
            await post_background(service, key, org_id, connection, **FULL)
        )
        run = await wait_for_run(service, key, org_id, run_id, ended, timeout=30)
    assert run["status"] == "success", run
    assert run["attempts"] == 1
    assert run["mode"] == "resume"
    assert run["count"] >= INVOICES
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_long_outage_ends_failed_with_its_reason_after_the_bounded_retries(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Down Ltd", 10
    )
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_errors=[503] * 100)
    async with background_service(fast_jobs(settings, sync_retry_attempts=2)) as (_, service):
        run_id = await queued_run_id(await post_background(service, key, org_id, connection))
        run = await wait_for_run(service, key, org_id, run_id, ended, timeout=30)
    assert run["status"] == "failed"
    assert run["error"] == "provider_unavailable"
    assert "unavailable" in run["error_detail"]
    assert run["attempts"] == 2
    # One first try and two retries, each of the client's two attempts in each of the full
    # sync's two phases (paged side by side).
    assert invoice_calls(fresh_sandbox) == 3 * 2 * 2


@postgres_only
async def test_a_run_of_a_killed_worker_is_resumed_by_another_from_its_checkpoint(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Orphan Ltd", INVOICES
    )
    inject_faults(fresh_sandbox, **SLOW_CALLS)
    async with background_service(fast_jobs(settings), worker=False) as (_, service):
        doomed = start_worker()
        run_id = await queued_run_id(
            await post_background(service, key, org_id, connection, **FULL)
        )
        first = await wait_for_run(service, key, org_id, run_id, lambda r: r["pages"] >= 1, 20)
        start_worker()
        doomed.send_signal(signal.SIGKILL)
        await asyncio.to_thread(doomed.wait, 10)
        killed_at = time.monotonic()
        run = await wait_for_run(service, key, org_id, run_id, ended, timeout=45)
        resumed_in = time.monotonic() - killed_at
    assert run["status"] == "success", run
    assert run["params"]["resumed_from"] == run_id  # from its own checkpoint
    assert run["mode"] == "resume"
    assert run["pages"] >= first["pages"]
    # Noticed dead after 2 s, re-queued at the next check, fetched at the next poll, and the
    # rest of the pages at 0.5 s a call: ~6 s here, and a loaded machine has taken over 12 s.
    # The point is the order of magnitude: seconds, not the 15-minute dead-run release.
    assert resumed_in < 30
    async with session_factory() as session:
        stored = await LedgerRepository(session).run_by_id(uuid.UUID(run_id))
    assert stored is not None
    assert stored.job_attempt == 1
    await assert_complete(session_factory, fresh_sandbox, connection)


@sqlite_only
async def test_serve_requeues_at_start_up_the_runs_a_previous_process_left(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Restarted Ltd", 10
    )
    request = InvoiceSyncRequest(
        organization_id=org_id, provider=Provider.XERO, connection_id=connection.id
    )
    accounts = accounts_request(org_id, connection.id)
    # A previous process: one run still queued, one it was running when it stopped.
    job_app = build_job_app(fast_jobs(settings))
    async with (
        job_app.open_async(),
        service_resources(settings, fast_cipher(settings)) as resources,
    ):
        async with session_factory() as session:
            [queued] = await SyncsService(session, resources.factory).queue(request, job_app)
            [running] = await SyncsService(session, resources.factory).queue(accounts, job_app)
        async with session_factory() as session:
            assert running.job_id is not None
            repository = LedgerRepository(session)
            assert await repository.claim_run(running.id, running.job_id, 0) == "claimed"
            await session.commit()
    async with background_service(fast_jobs(settings)) as (_, service):
        for run_id in (queued.id, running.id):
            run = await wait_for_run(service, key, org_id, str(run_id), ended, timeout=20)
            assert run["status"] == "success", run


async def test_a_request_that_loses_the_race_to_queue_gets_the_winners_run(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two schedulers (or requests) queue the same connection at once: the loser's insert is
    refused and rolled back, and it returns the winner's run. (The rollback expired the
    connection, and reading it again once crashed the scheduler's tick: bench/fleet.py.)"""
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Race Ltd", 10
    )
    request = InvoiceSyncRequest(
        organization_id=org_id, provider=Provider.XERO, connection_id=connection.id
    )
    job_app = build_job_app(fast_jobs(settings))  # no worker: what is queued stays queued
    real_add = LedgerRepository.add_queued_run
    winner: list[SyncRun] = []
    lost: list[bool] = []

    async def lose_once(repository: LedgerRepository, run: SyncRun) -> bool:
        if lost:
            return await real_add(repository, run)
        lost.append(True)
        # Another process queues first, then this insert is refused as the unique index would.
        async with session_factory() as other:
            winner.extend(await SyncsService(other, resources.factory).queue(request, job_app))
        await repository.session.rollback()
        return False

    async with (
        job_app.open_async(),
        service_resources(settings, fast_cipher(settings)) as resources,
    ):
        await empty_job_queue(job_app)
        monkeypatch.setattr(LedgerRepository, "add_queued_run", lose_once)
        async with session_factory() as session:
            runs = await SyncsService(session, resources.factory).queue(request, job_app)
    assert [r.id for r in runs] == [winner[0].id]
