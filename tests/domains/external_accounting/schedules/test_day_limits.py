"""The daily budget Xero reports reaches the scheduler: a real sync's `X-DayLimit-Remaining`
(kept per process by the call limiter) is stored per connection, a newer reading replaces an
older one and never the reverse, and a connection whose budget is near the reserve is synced
less often, or not at all."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.schedules.models import ConnectionSchedule
from src.domains.external_accounting.schedules.service import ScheduleService
from src.domains.external_accounting.xero.data.accounting_client import RateBudget, TenantThrottle
from src.domains.organizations.models import Organization
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user
from tests.fixtures import ON_POSTGRES, connected_org, sync, tighten_limits


async def test_a_syncs_day_limit_reading_is_stored_and_spares_the_connection(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    # A day budget that leaves this tenant just above our reserve after one accounts sync.
    day_limit = settings.xero_daily_reserve + settings.schedule_day_limit_margin
    tighten_limits(fresh_sandbox, day_limit=day_limit, reset_counters=True)
    await sync(client, key, org_id, "accounts")
    throttle: TenantThrottle = app.state.xero_throttle
    readings = {c.tenant_id: throttle.budget(c.tenant_id) for c in connections}
    assert all(
        r.day_remaining is not None and r.day_remaining < day_limit for r in readings.values()
    )

    async with session_factory() as session:
        stored = await ScheduleService(session, settings).record_day_limits(
            "xero", throttle.budgets
        )
        await session.commit()
    assert stored == len(connections)
    first = connections[0]
    response = await client.get(
        f"/external-accounting/connections/{first.id}/schedule",
        params={"org_id": str(org_id)},
        headers=bearer(key),
    )
    remaining = readings[first.tenant_id].day_remaining
    assert response.json()["day_limit_remaining"] == remaining

    # Near the reserve: invoices (never synced; connected a day ago) due, but every hour
    # instead of every 15 minutes; accounts, just synced, not due.
    async with session_factory() as session:
        await session.execute(update(Connection).values(connected_at=utcnow() - timedelta(days=1)))
        await session.commit()
        due = await ScheduleService(session, settings).due(utcnow())
    ours = [
        (d.object_type, d.every_minutes, d.stretched) for d in due if d.connection_id == first.id
    ]
    assert ours == [("invoices", 15 * settings.schedule_day_limit_stretch, True)]

    # An older reading does not replace it; a newer one at the reserve stops its schedule.
    old = RateBudget(day_remaining=4000, observed_at=utcnow() - timedelta(minutes=5))
    spent = RateBudget(day_remaining=settings.xero_daily_reserve, observed_at=utcnow())
    async with session_factory() as session:
        service = ScheduleService(session, settings)
        assert await service.record_day_limits("xero", {first.tenant_id: old}) == 0
        assert await service.record_day_limits("xero", {first.tenant_id: spent}) == 1
        await session.commit()
        assert all(d.connection_id != first.id for d in await service.due(utcnow()))
        # Unknown tenants and readings without a day figure are ignored.
        nothing = RateBudget(day_remaining=None, observed_at=utcnow())
        assert await service.record_day_limits("xero", {"no-such-tenant": spent}) == 0
        assert await service.record_day_limits("xero", {first.tenant_id: nothing}) == 0


async def _tenants_connected(
    session_factory: async_sessionmaker[AsyncSession], count: int
) -> tuple[Organization, list[str]]:
    """An organisation with `count` active connections, each to a tenant of its own."""
    organization, _, _ = await create_org_with_user(session_factory)
    tenants = [str(uuid.uuid4()) for _ in range(count)]
    async with session_factory() as session:
        for tenant in tenants:
            session.add(
                Connection(organization_id=organization.id, tenant_id=tenant, tenant_name="T")
            )
        await session.commit()
    return organization, tenants


@dataclass(frozen=True)
class _Reading:
    day_remaining: int | None
    observed_at: datetime | None


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite has one writer at a time")
async def test_two_workers_storing_readings_in_opposite_orders_do_not_deadlock(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Each worker stores the readings it has seen in one transaction, its own dict order:
    opposite orders once deadlocked PostgreSQL (seen in bench/fleet.py)."""
    organization, tenants = await _tenants_connected(session_factory, 150)

    async def store(order: list[str], remaining: int, observed_at: datetime) -> int:
        readings = {t: _Reading(remaining, observed_at) for t in order}
        async with session_factory() as session:
            stored = await ScheduleService(session, settings).record_day_limits("xero", readings)
            await session.commit()
            return stored

    for attempt in range(3):
        older = utcnow()
        newer = older + timedelta(seconds=1)
        # Either may take the first row's lock first; neither may deadlock. The newer readings
        # are stored whichever commits first; the older ones only if they commit first (a
        # reading older than the stored one is ignored), so either all or none of them.
        results = await asyncio.gather(
            store(tenants, 4000 - attempt, older), store(tenants[::-1], 3000 - attempt, newer)
        )
        assert results[1] == len(tenants), results
        assert results[0] in (0, len(tenants)), results
        async with session_factory() as session:
            stored = (
                await session.execute(select(ConnectionSchedule.day_limit_remaining))
            ).scalars()
            assert set(stored) == {3000 - attempt}


async def test_readings_already_stored_cost_one_query_and_new_ones_a_few_statements(
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The scheduler passes every reading its process has seen at every tick (1,000 tenants in
    bench/fleet.py): what is stored already is found in one query and not written again, and
    what is new is written in a handful of statements, not three per tenant."""
    organization, tenants = await _tenants_connected(session_factory, 200)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async def store(readings: dict[str, _Reading]) -> int:
        statements.clear()
        async with session_factory() as session:
            stored = await ScheduleService(session, settings).record_day_limits("xero", readings)
            await session.commit()
        return stored

    first = utcnow()
    later = first + timedelta(seconds=30)
    readings = {t: _Reading(4000, first) for t in tenants}
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await store(readings) == len(tenants)
        assert len(statements) <= 4, statements  # rows made, locked, written: not per tenant
        assert await store(readings) == 0
        assert len(statements) == 1, statements
        readings.update({t: _Reading(3500, later) for t in tenants[:10]})
        assert await store(readings) == 10
        assert len(statements) <= 3, statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    async with session_factory() as session:
        stored = dict(
            (
                await session.execute(
                    select(Connection.tenant_id, ConnectionSchedule.day_limit_remaining)
                    .join(ConnectionSchedule, ConnectionSchedule.connection_id == Connection.id)
                    .where(Connection.organization_id == organization.id)
                )
            ).all()
        )
    assert stored == {t: 3500 if t in tenants[:10] else 4000 for t in tenants}
