"""The scheduler end to end: a connection on a one-minute schedule is synced by the job queue
with no request from anyone, and a connection whose schedule is disabled is left alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.jobs import build_job_app, defer_job
from src.core.settings import Settings
from src.domains.external_accounting.base.sync import InvoiceSyncRequest
from src.domains.external_accounting.connections.models import (
    Connection,
    ConnectionStatus,
    Provider,
)
from src.domains.external_accounting.exceptions import ReauthorisationRequired, SyncInProgress
from src.domains.external_accounting.ledger.models import RunStatus, RunTrigger, SyncRun
from src.domains.external_accounting.schedules.tasks import enqueue_due, every_tick
from src.domains.external_accounting.syncs.service import RUN_SYNC_TASK, SyncsService, sync_lock
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import (
    add_tenant,
    background_service,
    connected_org,
    fast_jobs,
    sandbox_stats,
    wait_for,
)


async def _runs(
    session_factory: async_sessionmaker[AsyncSession], connection_id: uuid.UUID
) -> list[SyncRun]:
    async with session_factory() as session:
        query = select(SyncRun).where(SyncRun.connection_id == connection_id)
        return list((await session.execute(query)).scalars())


async def test_a_connection_on_a_one_minute_schedule_is_synced_with_no_request(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    async with background_service(fast_jobs(settings)) as (app, client):
        org_id, key, connections = await connected_org(client, session_factory)
        scheduled, disabled = connections[0], connections[1]
        for connection, body in (
            (scheduled, {"invoices_every_minutes": 1, "accounts_every_minutes": 1}),
            (disabled, {"enabled": False}),
        ):
            response = await client.put(
                f"/external-accounting/connections/{connection.id}/schedule",
                params={"org_id": str(org_id)},
                json=body,
                headers=bearer(key),
            )
            assert response.status_code == 200, response.text
        # Connected two minutes ago: a new connection's first slot comes half an interval on.
        async with session_factory() as session:
            await session.execute(
                update(Connection).values(connected_at=utcnow() - timedelta(minutes=2))
            )
            await session.commit()
        calls_before = sandbox_stats(fresh_sandbox)["by_path"].get("/Invoices", 0)
        # The minute's tick of the periodic task (cron fires it once a minute; a test does not
        # wait for the wall clock's next minute).
        await defer_job(
            app.state.job_app,
            "schedules.enqueue_due_syncs",
            timestamp=int(utcnow().timestamp()),
        )

        async def both_synced() -> bool:
            runs = await _runs(session_factory, scheduled.id)
            done = {r.object_type for r in runs if r.status == RunStatus.SUCCESS.value}
            return done == {"invoices", "accounts"}

        await wait_for(both_synced, timeout=30)
        assert await _runs(session_factory, disabled.id) == []
    calls_after = sandbox_stats(fresh_sandbox)["by_path"].get("/Invoices", 0)
    assert calls_after > calls_before


def test_the_scheduler_ticks_every_minute_or_every_tick_seconds_within_it() -> None:
    assert every_tick(Settings()) == "* * * * *"
    assert every_tick(Settings(schedule_tick_seconds=4)) == "* * * * * */4"
    app = build_job_app(Settings(database_url="sqlite://", schedule_tick_seconds=5))
    [periodic] = [
        task
        for task in app.periodic_registry.periodic_tasks.values()
        if task.task.name == "schedules.enqueue_due_syncs"
    ]
    assert periodic.cron == "* * * * * */5"
    # One tick at a time, at most one more waiting: overlapping ticks queued from stale
    # snapshots and synced connections twice for one slot (bench/fleet.py).
    assert periodic.task.lock == periodic.task.queueing_lock == "schedules.enqueue_due_syncs"
    with pytest.raises(ValidationError, match="must divide 60"):
        Settings(schedule_tick_seconds=7)


def test_scheduled_syncs_off_installs_neither_the_scheduler_nor_the_sweep() -> None:
    """SCHEDULED_SYNCS=false: the two periodic jobs that queue syncs nobody asked for are not
    deferred; their tasks stay declared (a job queued earlier still runs) and the other periodic
    jobs (token keep-alive, outbound webhooks) still are."""
    queuing = {"schedules.enqueue_due_syncs", "reconciliation.enqueue_due_sweeps"}

    def periodic_names(settings: Settings) -> set[str]:
        app = build_job_app(settings)
        return {task.task.name for task in app.periodic_registry.periodic_tasks.values()}

    on = periodic_names(Settings(database_url="sqlite://"))
    off_settings = Settings(database_url="sqlite://", scheduled_syncs=False)
    off = periodic_names(off_settings)
    assert queuing <= on
    assert off == on - queuing
    assert "tokens.keep_alive" in off
    assert queuing <= set(build_job_app(off_settings).tasks)


async def test_a_tick_queues_its_due_syncs_in_one_batch_once_each(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Eight connections all due, queued in one batch: each (connection, object type) gets
    exactly one run with its job, none refused or cancelled, and a second tick finds nothing
    due."""
    for n in range(5):
        add_tenant(fresh_sandbox, f"Scheduled {n} Ltd", 20)
    tick_settings = settings
    async with background_service(tick_settings, worker=False) as (app, client):
        _, _, connections = await connected_org(client, session_factory)
        assert len(connections) >= 6
        async with session_factory() as session:
            await session.execute(
                update(Connection).values(connected_at=utcnow() - timedelta(days=1))
            )
            await session.commit()
        resources = app.state.resources
        due = await enqueue_due(
            session_factory, resources.factory, app.state.job_app, tick_settings
        )
        assert len(due) == 2 * len(connections)
        async with session_factory() as session:
            runs = list((await session.execute(select(SyncRun))).scalars())
        pairs = [(r.connection_id, r.object_type) for r in runs]
        assert sorted(pairs) == sorted(
            (c.id, t) for c in connections for t in ("invoices", "accounts")
        )
        # Queued on PostgreSQL (no worker here); SQLite's in-process worker may have run them.
        under_way = {RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.SUCCESS.value}
        assert {r.status for r in runs} <= under_way
        assert all(r.job_id is not None for r in runs)
        again = await enqueue_due(
            session_factory, resources.factory, app.state.job_app, tick_settings
        )
        assert again == []


async def test_a_tick_queues_in_as_many_statements_however_many_are_due(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Queueing is one read of the connections, one of the runs under way, one insert, one
    update (and one call to the job queue): 12 due syncs take no more statements than 2 do."""
    for n in range(5):
        add_tenant(fresh_sandbox, f"Batched {n} Ltd", 5)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = session_factory.kw["bind"].sync_engine
    async with background_service(settings, worker=False) as (app, client):
        _, _, connections = await connected_org(client, session_factory)
        resources = app.state.resources
        spent = []
        async with session_factory() as session:
            # None is due, nor within the tick's look-ahead, until chosen below.
            await session.execute(
                update(Connection).values(connected_at=utcnow() + timedelta(days=1))
            )
            await session.commit()
        for chosen in (connections[:1], connections[1:]):
            async with session_factory() as session:
                await session.execute(
                    update(Connection)
                    .where(Connection.id.in_([c.id for c in chosen]))
                    .values(connected_at=utcnow() - timedelta(days=1))
                )
                await session.commit()
            event.listen(engine, "before_cursor_execute", count)
            try:
                due = await enqueue_due(
                    session_factory, resources.factory, app.state.job_app, settings
                )
            finally:
                event.remove(engine, "before_cursor_execute", count)
            assert len(due) == 2 * len(chosen)
            spent.append([s for s in statements if "sync_runs" in s or "connections" in s])
            statements.clear()
    assert len(connections[1:]) >= 5
    one, many = spent
    queueing = [s for s in many if "INSERT INTO sync_runs" in s or "UPDATE sync_runs" in s]
    assert len(queueing) == 2, queueing
    assert len(many) <= len(one) + 2, (len(one), len(many))


async def test_a_batch_gives_back_runs_under_way_and_skips_what_cannot_be_synced(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """In one batch: a connection whose sync is already queued gets that run back, one that
    needs a new consent is reported and skipped, and a job already waiting under one
    connection's lock sends the batch down the one-by-one path, which still queues the rest."""
    for n in range(2):
        add_tenant(fresh_sandbox, f"Mixed {n} Ltd", 5)
    async with background_service(settings, worker=False) as (app, client):
        org_id, _, connections = await connected_org(client, session_factory)
        waiting, stale, locked, plain = connections[:4]
        job_app = app.state.job_app
        factory = app.state.resources.factory

        def request(connection: Connection) -> InvoiceSyncRequest:
            return InvoiceSyncRequest(
                organization_id=org_id, provider=Provider.XERO, connection_id=connection.id
            )

        async with session_factory() as session:
            (before,) = await SyncsService(session, factory).queue(request(waiting), job_app)
            await session.execute(
                update(Connection)
                .where(Connection.id == stale.id)
                .values(status=ConnectionStatus.NEEDS_REAUTH.value)
            )
            await session.commit()
        lock = sync_lock(locked.id, "invoices")
        # Not due for an hour: it holds its queueing lock and no worker starts it meanwhile.
        await defer_job(
            job_app,
            RUN_SYNC_TASK,
            queueing_lock=lock,
            lock=lock,
            schedule_at=utcnow() + timedelta(hours=1),
            run_id=str(uuid.uuid4()),
        )
        async with session_factory() as session:
            outcomes = await SyncsService(session, factory).queue_each(
                [request(c) for c in (waiting, stale, locked, plain)], job_app
            )
    again, refused, blocked, queued = outcomes
    assert isinstance(again, SyncRun)
    assert again.id == before.id
    assert isinstance(refused, ReauthorisationRequired)
    assert isinstance(blocked, SyncInProgress)
    assert isinstance(queued, SyncRun)
    assert (queued.connection_id, queued.status, queued.job_id is not None) == (
        plain.id,
        RunStatus.QUEUED,
        True,
    )
    runs = {r.id: r.status for r in await _runs(session_factory, plain.id)}
    # The batch's own run was cancelled when its jobs could not be queued; the one queued
    # instead waits (on PostgreSQL; SQLite's in-process worker may have run it).
    assert len(runs) == 2
    assert runs.pop(queued.id) in {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCESS}
    assert list(runs.values()) == [RunStatus.CANCELLED]


async def test_a_tick_queues_the_next_slot_ahead_for_its_instant(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A pair whose slot has had its run and whose next slot comes within the look-ahead (two
    ticks) is queued now for that instant: its run's `started_at` is the slot and its job is
    not started before it, so the slot is served on time and the next tick queues nothing."""
    async with background_service(settings, worker=False) as (app, client):
        _, _, connections = await connected_org(client, session_factory)
        async with session_factory() as session:
            # Just connected: each pair's first slot is the next one, within a minute (the
            # one-minute interval) of now, so inside the look-ahead of a 60 s tick.
            await session.execute(update(Connection).values(connected_at=utcnow()))
            await session.commit()
        one_minute = settings.model_copy(
            update={"schedule_invoices_minutes": 1, "schedule_accounts_minutes": 1}
        )
        before = utcnow()
        due = await enqueue_due(
            session_factory, app.state.resources.factory, app.state.job_app, one_minute
        )
        assert len(due) == 2 * len(connections)
        assert all(before < d.slot_at <= before + timedelta(minutes=1) for d in due)
        async with session_factory() as session:
            runs = {
                (r.connection_id, r.object_type): r
                for r in (await session.execute(select(SyncRun))).scalars()
            }
        for item in due:
            run = runs[(item.connection_id, item.object_type)]
            assert (run.status, run.started_at) == (RunStatus.QUEUED.value, item.slot_at)
            assert run.job_id is not None
            [job] = await app.state.job_app.job_manager.list_jobs_async(id=run.job_id)
            assert job.scheduled_at == item.slot_at
        again = await enqueue_due(
            session_factory, app.state.resources.factory, app.state.job_app, one_minute
        )
        assert again == []


async def test_a_run_queued_ahead_starts_at_its_instant_and_a_request_meanwhile_replaces_it(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A scheduled run queued for 3 s ahead waits, then a worker runs it; one queued for an hour
    ahead is cancelled when someone asks for a sync of that connection now (they get a run that
    starts at once, not the scheduled one an hour away), while the scheduler's own request
    still gets the scheduled run back."""
    async with background_service(fast_jobs(settings)) as (app, client):
        org_id, key, connections = await connected_org(client, session_factory)
        soon, later = connections[:2]
        job_app, factory = app.state.job_app, app.state.resources.factory

        def scheduled(connection: Connection) -> InvoiceSyncRequest:
            return InvoiceSyncRequest(
                organization_id=org_id,
                provider=Provider.XERO,
                connection_id=connection.id,
                trigger=RunTrigger.SCHEDULE,
            )

        at = utcnow() + timedelta(seconds=3)
        async with session_factory() as session:
            queued_soon, queued_later = await SyncsService(session, factory).queue_each(
                [scheduled(soon), scheduled(later)],
                job_app,
                not_before=[at, utcnow() + timedelta(hours=1)],
            )
        assert isinstance(queued_soon, SyncRun)
        assert isinstance(queued_later, SyncRun)
        await asyncio.sleep(1.5)
        [waiting] = [r for r in await _runs(session_factory, soon.id)]
        assert waiting.status == RunStatus.QUEUED.value

        async def soon_done() -> bool:
            runs = await _runs(session_factory, soon.id)
            return [r.status for r in runs] == [RunStatus.SUCCESS.value]

        await wait_for(soon_done, timeout=30)
        [done] = await _runs(session_factory, soon.id)
        assert done.finished_at is not None
        assert done.finished_at >= at

        async with session_factory() as session:
            again = await SyncsService(session, factory).queue(scheduled(later), job_app)
        assert [r.id for r in again] == [queued_later.id]
        response = await client.post(
            "/external-accounting/invoices/sync",
            params={"org_id": str(org_id), "connection_id": str(later.id), "background": "true"},
            headers=bearer(key),
        )
        assert response.status_code == 202, response.text
        [asked] = response.json()["sync_runs"]
        assert asked["id"] != str(queued_later.id)
        runs = {r.id: r for r in await _runs(session_factory, later.id)}
        assert runs[queued_later.id].status == RunStatus.CANCELLED.value
        assert queued_later.job_id is not None
        [job] = await job_app.job_manager.list_jobs_async(id=queued_later.job_id)
        assert job.status in ("cancelled", "aborted")

        async def asked_done() -> bool:
            run = {r.id: r for r in await _runs(session_factory, later.id)}[uuid.UUID(asked["id"])]
            return run.status == RunStatus.SUCCESS.value

        await wait_for(asked_done, timeout=30)


async def test_a_run_queued_ahead_that_a_restart_left_waits_again_for_its_instant(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The start-up re-queue (SQLite's in-process queue does not outlive its process) gives a
    run the scheduler queued for a later instant a job scheduled for that instant, not one now."""
    async with background_service(settings, worker=False) as (app, client):
        org_id, _, connections = await connected_org(client, session_factory)
        factory, job_app = app.state.resources.factory, app.state.job_app
        request = InvoiceSyncRequest(
            organization_id=org_id,
            provider=Provider.XERO,
            connection_id=connections[0].id,
            trigger=RunTrigger.SCHEDULE,
        )
        at = utcnow() + timedelta(hours=1)
        async with session_factory() as session:
            [run] = await SyncsService(session, factory).queue_each(
                [request], job_app, not_before=[at]
            )
        assert isinstance(run, SyncRun)
        assert run.job_id is not None
        # The job is gone with the process that held it; the run is still queued.
        assert await job_app.job_manager.cancel_job_by_id_async(run.job_id)
        async with session_factory() as session:
            requeued = await SyncsService(session, factory).requeue_interrupted(job_app)
        assert requeued == [run.id]
        [again] = await _runs(session_factory, connections[0].id)
        assert (again.status, again.started_at) == (RunStatus.QUEUED.value, at)
        assert again.job_id is not None
        assert again.job_id != run.job_id
        [job] = await job_app.job_manager.list_jobs_async(id=again.job_id)
        assert job.scheduled_at == at
