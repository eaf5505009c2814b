"""Leases with fencing, against real concurrent syncs: a run that lost its lease (taken for dead,
cancelled by a disconnect) writes nothing more, a cancelled task ends its run, a request answers
for exactly the runs it started."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.base.sync import RunClaim
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.connections.repository import UsageRepository
from src.domains.external_accounting.connections.usage import UsageDelta
from src.domains.external_accounting.exceptions import SyncInProgress
from src.domains.external_accounting.ledger import runs as sync_runs
from src.domains.external_accounting.ledger.models import Invoice, RunStatus, SyncMode, SyncRun
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user
from tests.fixtures import (
    ON_POSTGRES,
    connected_org,
    connected_to_new_tenant,
    inject_faults,
    post_sync,
    sync,
    wait_for,
)
from tests.ground_truth import assert_complete


async def _runs(session_factory: async_sessionmaker[AsyncSession]) -> list[SyncRun]:
    async with session_factory() as session:
        return list((await session.execute(select(SyncRun))).scalars())


async def _invoice_count(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection
) -> int:
    async with session_factory() as session:
        query = select(func.count()).select_from(Invoice)
        query = query.where(Invoice.connection_id == connection.id)
        return int((await session.execute(query)).scalar_one())


def _post_sync(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, **params: str
) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(post_sync(client, key, org_id, **params))


async def test_a_purge_while_a_sync_runs_leaves_nothing_behind(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The purge answers while the sync still fetches; the sync's next page finds its run
    cancelled and writes nothing."""
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Purged Ltd", 2500
    )
    # The first page comes at once, every later one takes a while: the purge lands in between
    # (every later call, not just the next: a full sync's partitions fetch side by side, and
    # one slow page could come after the others had been stored and the run had ended).
    inject_faults(
        fresh_sandbox, path_contains="/Invoices", skip_first=1, next_slow=20, slow_seconds=1.5
    )
    running = _post_sync(client, key, org_id, connection_id=str(connection.id), months_back="120")

    async def first_page_stored() -> bool:
        return await _invoice_count(session_factory, connection) > 0

    await wait_for(first_page_stored)
    purged = await client.delete(
        f"/external-accounting/connections/{connection.id}?purge=true", headers=bearer(key)
    )
    assert purged.status_code == 204
    result = (await running).json()
    assert await _invoice_count(session_factory, connection) == 0
    assert result["success"] is False
    assert result["error"] == "sync_lease_lost"
    (run,) = await _runs(session_factory)
    assert (run.status, run.error, run.lease) == ("cancelled", "connection_disconnected", None)


async def test_a_sync_that_ends_while_a_purge_is_under_way_leaves_nothing_behind(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other order: the purge has started (it is disconnecting at Xero) when the sync
    finishes and commits; what the purge deletes afterwards includes the sync's last pages."""
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Purged Later Ltd", 2500
    )
    sync_done = asyncio.Event()
    at_xero = asyncio.Event()
    delete_connection = XeroIdentityClient.delete_connection

    async def slow_delete(self: XeroIdentityClient, token: str, connection_id: str) -> None:
        at_xero.set()
        await sync_done.wait()
        await delete_connection(self, token, connection_id)

    monkeypatch.setattr(XeroIdentityClient, "delete_connection", slow_delete)
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_slow=1, slow_seconds=0.5)
    running = _post_sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    purging = asyncio.create_task(
        client.delete(
            f"/external-accounting/connections/{connection.id}?purge=true", headers=bearer(key)
        )
    )
    await asyncio.wait_for(at_xero.wait(), 10)
    result = (await running).json()
    sync_done.set()
    assert result["success"] is True, result
    assert (await purging).status_code == 204
    assert await _invoice_count(session_factory, connection) == 0
    (run,) = await _runs(session_factory)
    assert run.status == "success"


async def test_a_run_taken_for_dead_stops_writing_and_stays_abandoned(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """A page that waits past the stale limit: a second sync takes over; when the first one's
    page finally arrives it is fenced off (nothing written, `abandoned` not overwritten)."""
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    # Both phases' first pages are slow (a full sync pages them side by side).
    # (Slow enough that a loaded machine still sees a beat before they come back.)
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_slow=2, slow_seconds=4)
    first = _post_sync(client, key, org_id, connection_id=str(connection.id))

    async def started() -> bool:
        return len(await _runs(session_factory)) == 1

    await wait_for(started)
    async with session_factory() as session:
        await session.execute(update(SyncRun).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        await session.commit()
    second = await sync(client, key, org_id, connection_id=str(connection.id))
    assert second["success"] is True
    late = (await first).json()
    assert (late["success"], late["error"]) == (False, "sync_lease_lost")
    async with session_factory() as session:
        dead = await session.get(SyncRun, uuid.UUID(late["connections"][0]["sync_run_id"]))
    assert dead is not None
    assert (dead.status, dead.error, dead.count) == ("failed", "abandoned", 0)
    await assert_complete(session_factory, fresh_sandbox, connection, months_back=12)


async def test_a_run_waiting_on_a_slow_page_keeps_beating(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_runs, "HEARTBEAT_EVERY_S", 0.1)
    org_id, key, connections = await connected_org(client, session_factory)
    # Both phases' first pages are slow (a full sync pages them side by side).
    # (Slow enough that a loaded machine still sees a beat before they come back.)
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_slow=2, slow_seconds=4)
    running = _post_sync(client, key, org_id, connection_id=str(connections[0].id))

    async def beat_while_waiting() -> bool:
        runs = await _runs(session_factory)
        return bool(runs) and runs[0].heartbeat_at > runs[0].started_at + timedelta(seconds=0.5)

    await wait_for(beat_while_waiting, timeout=3.5)
    (run,) = await _runs(session_factory)
    assert (run.status, run.count) == ("running", 0)  # still waiting on its first page
    assert (await running).json()["success"] is True


async def test_a_cancelled_sync_ends_as_cancelled_and_frees_its_lease(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    state = app.state
    factory = IntegrationFactory(
        settings, session_factory, state.http_client, state.xero_auth_manager, state.xero_throttle
    )
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_slow=1, slow_seconds=2)
    service = factory.get_sync_service(connection)
    task = asyncio.create_task(
        service.sync_invoices(
            connection, incremental=True, invoice_types=["ACCPAY", "ACCREC"], months_back=12
        )
    )

    async def started() -> bool:
        return len(await _runs(session_factory)) == 1

    await wait_for(started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (run,) = await _runs(session_factory)
    assert (run.status, run.error, run.lease) == ("cancelled", "cancelled", None)
    assert run.finished_at is not None
    # The lease is free: the next sync runs at once.
    assert (await sync(client, key, org_id, connection_id=str(connection.id)))["success"]


async def test_simultaneous_requests_answer_for_exactly_the_runs_they_started(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Six requests over two connections: the 409s started nothing and name the running run."""
    org_id, key, connections = await connected_org(client, session_factory)
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_slow=2, slow_seconds=0.5)
    responses = await asyncio.gather(*(_post_sync(client, key, org_id) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [r.text for r in responses]
    assert 409 in statuses
    answered = {
        uuid.UUID(part["sync_run_id"])
        for r in responses
        if r.status_code == 200
        for part in r.json()["connections"]
    }
    runs = await _runs(session_factory)
    assert {run.id for run in runs} == answered
    assert all(run.status == "success" for run in runs)
    for refused in (r.json() for r in responses if r.status_code == 409):
        assert refused["error"] == "sync_in_progress"
        assert uuid.UUID(refused["sync_run_id"]) in answered
    assert {run.connection_id for run in runs} == {c.id for c in connections}


async def test_a_queued_run_whose_connection_is_busy_is_refused_not_crashed(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Claiming a queued run while another run holds the lease (a webhook's targeted run, a
    sync by request) is `SyncInProgress` naming that run, so its job retries later; the claim's
    rollback expired the run, which once made this a crash (a lazy load outside the loop)."""
    organization, _, _ = await create_org_with_user(session_factory)
    async with session_factory() as session:
        connection = Connection(
            organization_id=organization.id, tenant_id=str(uuid.uuid4()), tenant_name="Busy"
        )
        session.add(connection)
        await session.commit()
        repository = LedgerRepository(session)
        holder = sync_runs.new_run(connection, "invoices", mode=SyncMode.INCREMENTAL, params={})
        assert await repository.add_running_run(holder)
        queued = sync_runs.new_run(
            connection, "invoices", mode=SyncMode.INCREMENTAL, params={}, status=RunStatus.QUEUED
        )
        assert await repository.add_queued_run(queued)
        await session.commit()
        holder_id, queued_id = holder.id, queued.id
    async with session_factory() as session:
        runs = sync_runs.SyncRuns(session_factory, api_calls=lambda: 0)
        with pytest.raises(SyncInProgress) as refused:
            await runs.claim(
                LedgerRepository(session), RunClaim(run_id=queued_id, job_id=1, job_attempt=1)
            )
    assert refused.value.extra["sync_run_id"] == str(holder_id)


# A trigger that makes PostgreSQL refuse the first `faults` finishes of a successful run with
# "deadlock detected" (SQLSTATE 40P01), as a real lock cycle between two finishing runs does. A
# sequence counts the refusals: it is not rolled back with the refused transaction.
_FAILING_FINISH = [
    "CREATE SEQUENCE test_refused_finishes",
    """CREATE FUNCTION test_refuse_finish() RETURNS trigger AS $$
    BEGIN
      IF NEW.status = 'success' AND OLD.status <> 'success'
         AND nextval('test_refused_finishes') <= {faults} THEN
        RAISE EXCEPTION 'deadlock detected (injected by the test)' USING ERRCODE = '40P01';
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER test_refuse_finish BEFORE UPDATE ON sync_runs FOR EACH ROW "
    "EXECUTE FUNCTION test_refuse_finish()",
]
_REMOVE_FAILING_FINISH = [
    "DROP TRIGGER IF EXISTS test_refuse_finish ON sync_runs",
    "DROP FUNCTION IF EXISTS test_refuse_finish()",
    "DROP SEQUENCE IF EXISTS test_refused_finishes",
]


async def _execute(
    session_factory: async_sessionmaker[AsyncSession], statements: list[str]
) -> None:
    async with session_factory() as session, session.begin():
        for statement in statements:
            await session.execute(text(statement))


@pytest.mark.skipif(not ON_POSTGRES, reason="an injected PostgreSQL deadlock (SQLSTATE 40P01)")
async def test_a_finish_that_loses_a_deadlock_is_retried_and_frees_its_lease(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Two refused finishes, then the third commits: the sync answers success, its run is
    finished (not left running with its lease, which blocked the connection until the run was
    taken for dead), the next sync of the connection runs, and usage is counted once."""
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Deadlocked Ltd", 1500
    )
    statements = [s.replace("{faults}", "2") for s in _FAILING_FINISH]
    await _execute(session_factory, statements)
    try:
        result = await sync(
            client, key, org_id, connection_id=str(connection.id), months_back="120"
        )
        refused = await _scalar(session_factory, "SELECT last_value FROM test_refused_finishes")
    finally:
        await _execute(session_factory, _REMOVE_FAILING_FINISH)
    assert result["success"] is True, result
    assert refused == 3  # two refusals, then the finish that committed
    (run,) = await _runs(session_factory)
    assert run.status == RunStatus.SUCCESS
    assert run.finished_at is not None
    assert run.lease is None
    calls = await _scalar(
        session_factory,
        f"SELECT sum(calls) FROM connection_usage WHERE connection_id = '{connection.id}'",
    )
    assert calls == run.api_calls
    again = await sync(client, key, org_id, connection_id=str(connection.id))
    assert again["success"] is True, again


async def _scalar(session_factory: async_sessionmaker[AsyncSession], query: str) -> object:
    async with session_factory() as session:
        return (await session.execute(text(query))).scalar_one()


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks: SQLite has one writer at a time")
async def test_a_page_and_a_finish_of_one_connection_take_their_locks_in_one_order(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """A page's transaction locks the connection (its fence, a share lock) and then its usage
    row; a successful finish of another run of the same connection updates the connection and
    adds its usage. The finish once added the usage first: the page, holding the connection,
    waited for the usage row while the finish, holding it, waited for the connection, and
    PostgreSQL killed one of them (an accounts sync failed so in bench/fleet.py)."""
    organization, _, _ = await create_org_with_user(session_factory)
    async with session_factory() as session:
        connection = Connection(
            organization_id=organization.id, tenant_id=str(uuid.uuid4()), tenant_name="Both"
        )
        session.add(connection)
        await session.commit()
        repository = LedgerRepository(session)
        paging = sync_runs.new_run(connection, "accounts", mode=SyncMode.FULL, params={})
        finishing = sync_runs.new_run(connection, "invoices", mode=SyncMode.FULL, params={})
        for run in (paging, finishing):
            assert await repository.add_running_run(run)
        await session.commit()
    runs = sync_runs.SyncRuns(session_factory, api_calls=lambda: 0)

    def progress(run: SyncRun) -> sync_runs.RunProgress:
        assert run.lease is not None
        return sync_runs.RunProgress(
            run_id=run.id, lease=run.lease, connection_id=connection.id, mode="full"
        )

    usage = [UsageDelta(connection.id, utcnow().date(), calls=1, bytes=100)]
    async with session_factory() as page, page.begin():
        await runs.fence(LedgerRepository(page), progress(paging))

        async def finish() -> bool:
            async with session_factory() as session, session.begin():
                return await runs._write_finish(
                    session,
                    connection,
                    progress(finishing),
                    RunStatus.SUCCESS,
                    {
                        "status": RunStatus.SUCCESS.value,
                        "finished_at": utcnow(),
                        "error": None,
                        "error_detail": None,
                    },
                    usage,
                )

        finished = asyncio.create_task(finish())
        await asyncio.sleep(0.5)  # the finish is now waiting on the lock it wants first
        await UsageRepository(page).add(usage)
    assert await asyncio.wait_for(finished, timeout=10) is True
    calls = await _scalar(
        session_factory,
        f"SELECT sum(calls) FROM connection_usage WHERE connection_id = '{connection.id}'",
    )
    assert calls == 2
