"""When sweeps are due (nightly by default, each connection at its own instant within the spread,
once a day), that a sweep never stands in for a scheduled sync, and the periodic job queueing
the due sweeps, which the job queue then runs."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import (
    RunStatus,
    RunTrigger,
    SyncMode,
    SyncRun,
)
from src.domains.external_accounting.reconciliation.service import SweepScheduler
from src.domains.external_accounting.reconciliation.tasks import enqueue_due
from src.domains.external_accounting.schedules.models import ConnectionSchedule
from src.domains.external_accounting.schedules.service import ScheduleService
from src.xero_sandbox.server import RunningSandbox
from tests.factories import create_org_with_user
from tests.fixtures import background_service, connected_org, fast_jobs, wait_for

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


async def _connections(
    session_factory: async_sessionmaker[AsyncSession], count: int
) -> list[uuid.UUID]:
    organization, _, _ = await create_org_with_user(session_factory, name=f"o{uuid.uuid4().hex}")
    async with session_factory() as session:
        connections = [
            Connection(
                organization_id=organization.id,
                tenant_id=str(uuid.uuid4()),
                tenant_name="Demo",
                connected_at=START - timedelta(days=1),
            )
            for _ in range(count)
        ]
        session.add_all(connections)
        await session.commit()
        return [c.id for c in connections]


async def _sweep_run(
    session_factory: async_sessionmaker[AsyncSession], connection_id: uuid.UUID, at: datetime
) -> None:
    async with session_factory() as session:
        connection = await session.get(Connection, connection_id)
        assert connection is not None
        session.add(
            SyncRun(
                organization_id=connection.organization_id,
                connection_id=connection_id,
                object_type="invoices",
                mode=SyncMode.RECONCILE.value,
                params={},
                status=RunStatus.SUCCESS.value,
                trigger=RunTrigger.RECONCILE,
                started_at=at,
                heartbeat_at=at,
            )
        )
        await session.commit()


async def test_each_connection_is_swept_once_a_night_at_its_own_instant(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _connections(session_factory, 8)
    async with session_factory() as session:
        session.add(ConnectionSchedule(connection_id=ids[-1], enabled=False))
        await session.commit()
    settings = Settings()  # nightly: from 02:00 UTC, spread over four hours
    sweeps: list[tuple[uuid.UUID, datetime]] = []
    now = START
    while now < START + timedelta(days=3):
        async with session_factory() as session:
            due = await SweepScheduler(session, settings).due(now)
        for item in due:
            await _sweep_run(session_factory, item.connection_id, now)
            sweeps.append((item.connection_id, now))
        now += timedelta(minutes=10)
    # Connected the day before: the first tick catches up on last night's sweep, then one a
    # night; the disabled connection none.
    per_connection = Counter(connection_id for connection_id, _ in sweeps)
    assert per_connection == {connection_id: 4 for connection_id in ids[:-1]}
    nightly = [(c, at) for c, at in sweeps if at != START]
    # Between 02:00 and 06:00, seen at the next ten-minute tick.
    midnight = datetime.min.time()
    assert all(
        timedelta(hours=2)
        <= at - datetime.combine(at.date(), midnight, UTC)
        < timedelta(hours=6, minutes=10)
        for _, at in nightly
    )
    assert len({at for _, at in nightly}) > 1  # spread, not all at once
    # Each connection keeps its instant from night to night.
    for connection_id in ids[:-1]:
        assert len({at.time() for c, at in nightly if c == connection_id}) == 1


async def test_a_sweep_never_stands_in_for_a_scheduled_sync(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    [connection_id] = await _connections(session_factory, 1)
    settings = Settings()
    now = START + timedelta(hours=3)
    async with session_factory() as session:
        before = {d.object_type for d in await ScheduleService(session, settings).due(now)}
    await _sweep_run(session_factory, connection_id, now - timedelta(seconds=5))
    async with session_factory() as session:
        after = {d.object_type for d in await ScheduleService(session, settings).due(now)}
    assert before == after == {"invoices", "accounts"}


async def test_the_periodic_job_queues_the_due_sweeps_and_the_queue_runs_them(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    # A sweep every minute, due at once for a connection made two minutes ago.
    every_minute = fast_jobs(
        settings, reconcile_every_minutes=1, reconcile_start_minute=0, reconcile_spread_minutes=1
    )
    async with background_service(every_minute) as (app, client):
        _, _, connections = await connected_org(client, session_factory)
        async with session_factory() as session:
            await session.execute(
                update(Connection).values(connected_at=utcnow() - timedelta(minutes=2))
            )
            await session.commit()
        queued = await enqueue_due(session_factory, app.state.resources.factory, app.state.job_app)
        assert {d.connection_id for d in queued} == {c.id for c in connections}

        async def all_swept() -> bool:
            async with session_factory() as session:
                runs = list(
                    (
                        await session.execute(
                            select(SyncRun).where(SyncRun.mode == SyncMode.RECONCILE.value)
                        )
                    ).scalars()
                )
            return len(runs) == 2 * len(connections) and all(
                r.status == RunStatus.SUCCESS.value for r in runs
            )

        await wait_for(all_swept, timeout=30)
