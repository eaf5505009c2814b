"""`ScheduleService.due(now)` on a compressed clock: the defaults, a connection's own intervals,
disabled schedules, connections spread over the interval, the daily reserve, and connections
whose run is already queued, running or paused. Each simulation ticks the scheduler every
minute, as its periodic job does, and records a run for each sync it finds due."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.ledger.models import RunStatus, RunTrigger, SyncRun
from src.domains.external_accounting.schedules.models import ConnectionSchedule
from src.domains.external_accounting.schedules.service import (
    DueSync,
    ScheduleService,
    latest_slot,
    spread_offset,
)
from tests.factories import create_org_with_user

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


async def _connections(
    session_factory: async_sessionmaker[AsyncSession], count: int = 1, **schedule: object
) -> list[uuid.UUID]:
    """`count` active connections, connected a day before START, each with `schedule` if given."""
    organization, _, _ = await create_org_with_user(session_factory, name=f"o{uuid.uuid4().hex}")
    ids = []
    async with session_factory() as session:
        for _ in range(count):
            connection = Connection(
                organization_id=organization.id,
                tenant_id=str(uuid.uuid4()),
                tenant_name="Demo",
                connected_at=START - timedelta(days=1),
            )
            session.add(connection)
            await session.flush()
            if schedule:
                session.add(ConnectionSchedule(connection_id=connection.id, **schedule))
            ids.append(connection.id)
        await session.commit()
    return ids


async def _add_run(
    session_factory: async_sessionmaker[AsyncSession],
    connection_id: uuid.UUID,
    object_type: str,
    started_at: datetime,
    status: str = RunStatus.SUCCESS.value,
    paused_until: datetime | None = None,
    trigger: RunTrigger = RunTrigger.REQUEST,
) -> None:
    async with session_factory() as session:
        connection = await session.get(Connection, connection_id)
        assert connection is not None
        session.add(
            SyncRun(
                organization_id=connection.organization_id,
                connection_id=connection_id,
                object_type=object_type,
                mode="incremental",
                params={},
                status=status,
                trigger=trigger,
                started_at=started_at,
                heartbeat_at=started_at,
                paused_until=paused_until,
            )
        )
        await session.commit()


async def _due(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    ahead: timedelta = timedelta(0),
) -> list[DueSync]:
    async with session_factory() as session:
        return await ScheduleService(session, settings).due(now, ahead)


@dataclass
class Simulation:
    runs: dict[tuple[uuid.UUID, str], list[datetime]]

    def count(self, object_type: str) -> int:
        return sum(len(v) for (_, t), v in self.runs.items() if t == object_type)

    def gaps(self, object_type: str) -> list[float]:
        """Minutes between consecutive runs of each connection."""
        return [
            (b - a).total_seconds() / 60
            for (_, t), times in self.runs.items()
            if t == object_type
            for a, b in zip(times, times[1:], strict=False)
        ]


async def _simulate(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    minutes: int,
    start: datetime = START,
    ahead: timedelta = timedelta(0),
) -> Simulation:
    """Tick every minute from `start` (the tick lands a few seconds past the minute, as a
    worker's would) and start every sync found due: at once, or at its instant when that is
    later (queued `ahead`, as `add_queued_runs` records it)."""
    runs: dict[tuple[uuid.UUID, str], list[datetime]] = {}
    for minute in range(minutes):
        now = start + timedelta(minutes=minute, seconds=2)
        for due in await _due(session_factory, settings, now, ahead):
            at = max(now, due.slot_at)
            await _add_run(
                session_factory,
                due.connection_id,
                due.object_type,
                at,
                trigger=RunTrigger.SCHEDULE,
            )
            runs.setdefault((due.connection_id, due.object_type), []).append(at)
    return Simulation(runs)


async def test_by_default_invoices_every_15_minutes_and_accounts_every_hour(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    assert (settings.schedule_invoices_minutes, settings.schedule_accounts_minutes) == (15, 60)
    [connection_id] = await _connections(session_factory)
    # Never synced, connected a day ago: both are due at once.
    first = await _due(session_factory, settings, START)
    assert {(d.connection_id, d.object_type) for d in first} == {
        (connection_id, "invoices"),
        (connection_id, "accounts"),
    }
    simulation = await _simulate(session_factory, settings, minutes=3 * 60)
    assert simulation.count("invoices") in (12, 13)
    assert simulation.count("accounts") in (3, 4)
    # The catch-up run is off the connection's phase; the next slot is its first (however
    # soon: the catch-up served the slot before), and from then on runs are one interval apart.
    for object_type, interval in (("invoices", 15.0), ("accounts", 60.0)):
        gaps = simulation.gaps(object_type)
        assert 0 < gaps[0] <= interval + 1, gaps  # + a tick
        assert set(gaps[1:]) == {interval}, gaps


async def test_a_connection_overrides_the_intervals_and_others_keep_the_defaults(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    [own] = await _connections(session_factory, invoices_every_minutes=5, accounts_every_minutes=30)
    [default] = await _connections(session_factory)
    [half] = await _connections(session_factory, invoices_every_minutes=1)  # accounts: default
    simulation = await _simulate(session_factory, settings, minutes=60)
    by_pair = {key: len(times) for key, times in simulation.runs.items()}
    assert by_pair[(own, "invoices")] in (12, 13)
    assert by_pair[(own, "accounts")] in (2, 3)
    assert by_pair[(default, "invoices")] in (4, 5)
    assert by_pair[(default, "accounts")] in (1, 2)
    assert by_pair[(half, "invoices")] == 60  # every tick
    assert by_pair[(half, "accounts")] in (1, 2)


async def test_a_disabled_schedule_syncs_nothing(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await _connections(session_factory, enabled=False, invoices_every_minutes=1)
    assert (await _simulate(session_factory, settings, minutes=90)).runs == {}


async def test_only_active_connections_are_scheduled(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    [connection_id] = await _connections(session_factory)
    async with session_factory() as session:
        connection = await session.get(Connection, connection_id)
        assert connection is not None
        connection.status = ConnectionStatus.NEEDS_REAUTH.value
        await session.commit()
    assert await _due(session_factory, settings, START) == []


def test_offsets_are_stable_differ_between_connections_and_stay_within_the_interval() -> None:
    ids = [uuid.uuid4() for _ in range(200)]
    for interval in (60, 900, 3600):
        offsets = [spread_offset(i, "invoices", interval) for i in ids]
        assert all(0 <= o < interval for o in offsets)
        assert offsets == [spread_offset(i, "invoices", interval) for i in ids]
        assert len(set(offsets)) > 150 if interval > 60 else len(set(offsets)) > 40
    now = datetime(2026, 12, 1, 9, 7, 31, tzinfo=UTC)
    slot = latest_slot(now, 900, 123)
    assert slot <= now < slot + timedelta(seconds=900)
    assert (slot.timestamp() - 123) % 900 == 0


async def test_connections_synced_together_are_spread_over_the_interval(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    connections = await _connections(session_factory, count=60)
    for connection_id in connections:  # all synced at the same instant (no herd from here on)
        await _add_run(session_factory, connection_id, "invoices", START)
        await _add_run(session_factory, connection_id, "accounts", START)
    # Each is due at its own instant of the interval, half an interval to one and a half after
    # the common sync (the next instant at least half an interval after it).
    simulation = await _simulate(session_factory, settings, minutes=24, start=START)
    runs = {c: times for (c, t), times in simulation.runs.items() if t == "invoices"}
    assert len(runs) == 60
    ticks = Counter(times[0] for times in runs.values())
    assert all(timedelta(minutes=7.5) <= t - START <= timedelta(minutes=23.5) for t in ticks)
    assert len(ticks) >= 10  # spread over at least 10 minutes of the interval
    assert max(ticks.values()) <= 15  # no herd (60 at once)


async def test_near_the_daily_reserve_a_connection_waits_or_syncs_less_often(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    reserve, margin = settings.xero_daily_reserve, settings.schedule_day_limit_margin
    observed = START - timedelta(minutes=1)
    [spent] = await _connections(
        session_factory, day_limit_remaining=reserve, day_limit_observed_at=observed
    )
    [near] = await _connections(
        session_factory, day_limit_remaining=reserve + margin, day_limit_observed_at=observed
    )
    [plenty] = await _connections(
        session_factory, day_limit_remaining=reserve + margin + 1, day_limit_observed_at=observed
    )
    [stale] = await _connections(
        session_factory,
        day_limit_remaining=0,
        day_limit_observed_at=START - timedelta(seconds=settings.xero_reserve_pause_seconds + 60),
    )
    due = {
        (d.connection_id, d.object_type): d for d in await _due(session_factory, settings, START)
    }
    assert not any(c == spent for c, _ in due)
    assert due[(near, "invoices")].stretched
    assert due[(near, "invoices")].every_minutes == 15 * settings.schedule_day_limit_stretch
    assert not due[(plenty, "invoices")].stretched
    assert due[(stale, "invoices")].every_minutes == 15  # an old reading is not trusted
    # Over the reading's life (fresh for an hour) the one near the reserve syncs 4x less often.
    simulation = await _simulate(session_factory, settings, minutes=59)
    runs = {c: len(v) for (c, t), v in simulation.runs.items() if t == "invoices"}
    assert spent not in runs
    assert runs[near] in (1, 2)  # at least half an hour apart
    assert runs[plenty] in (4, 5)


async def test_a_queued_running_or_paused_run_is_not_queued_again(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    queued, running, paused, resumed, free = await _connections(session_factory, count=5)
    await _add_run(session_factory, queued, "invoices", START - timedelta(hours=2), "queued")
    await _add_run(session_factory, running, "invoices", START - timedelta(hours=2), "running")
    await _add_run(
        session_factory,
        paused,
        "invoices",
        START - timedelta(hours=2),
        RunStatus.PAUSED.value,
        paused_until=START + timedelta(minutes=30),
    )
    await _add_run(
        session_factory,
        resumed,
        "invoices",
        START - timedelta(hours=2),
        RunStatus.PAUSED.value,
        paused_until=START - timedelta(minutes=30),
    )
    due = {(d.connection_id, d.object_type) for d in await _due(session_factory, settings, START)}
    invoices = {c for c, t in due if t == "invoices"}
    assert invoices == {resumed, free}
    # Accounts have no run at all: each connection's are due.
    assert {c for c, t in due if t == "accounts"} == {queued, running, paused, resumed, free}


async def test_a_sync_by_hand_just_before_the_slot_makes_the_scheduled_one_wait(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    [connection_id] = await _connections(session_factory)
    offset = spread_offset(connection_id, "invoices", 900)
    slot = latest_slot(START + timedelta(hours=1), 900, offset)
    await _add_run(session_factory, connection_id, "invoices", slot - timedelta(minutes=20))
    due = await _due(session_factory, settings, slot + timedelta(seconds=5))
    assert [(d.connection_id, d.object_type) for d in due if d.object_type == "invoices"] == [
        (connection_id, "invoices")
    ]
    await _add_run(session_factory, connection_id, "invoices", slot - timedelta(minutes=2))
    due = await _due(session_factory, settings, slot + timedelta(seconds=5))
    assert [d for d in due if d.object_type == "invoices"] == []


async def test_a_late_scheduled_run_does_not_push_the_next_slot_back(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """A catch-up run (after downtime, or a fleet's first tick) just before a slot served the
    slot before: the next slot is due all the same, so no connection waits two intervals."""
    [connection_id] = await _connections(session_factory)
    offset = spread_offset(connection_id, "invoices", 900)
    slot = latest_slot(START + timedelta(hours=1), 900, offset)
    await _add_run(
        session_factory,
        connection_id,
        "invoices",
        slot - timedelta(minutes=2),
        trigger=RunTrigger.SCHEDULE,
    )
    due = await _due(session_factory, settings, slot + timedelta(seconds=5))
    assert [(d.connection_id, d.slot_at) for d in due if d.object_type == "invoices"] == [
        (connection_id, slot)
    ]
    assert due[0].request().trigger == RunTrigger.SCHEDULE


async def test_after_downtime_each_connection_catches_up_once_then_keeps_its_slots(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Connections last synced hours ago (the scheduler was down): the first tick queues each
    once, and from then on no gap between two of its syncs exceeds an interval and a tick."""
    ids = await _connections(session_factory, 20)
    for connection_id in ids:
        await _add_run(session_factory, connection_id, "invoices", START - timedelta(hours=3))
    simulation = await _simulate(session_factory, settings, 90)
    first = {times[0] for (_, t), times in simulation.runs.items() if t == "invoices"}
    assert first == {START + timedelta(seconds=2)}
    gaps = simulation.gaps("invoices")
    assert gaps
    assert max(gaps) <= 15 + 1


async def test_with_webhooks_on_an_idle_connection_costs_20_calls_a_day(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """The safety net's cost, on a compressed day: invoices every 90 minutes and accounts every
    6 hours (an idle connection's incremental sync and accounts sync are one call each), and a
    webhook's targeted runs never stand in for a slot (or a busy organisation's events would
    keep its safety-net sync away)."""
    relaxed = settings.model_copy(update={"xero_webhook_key": SecretStr("key")})
    [connection] = await _connections(session_factory)
    for hour in range(24):  # a targeted run every hour, just before the slots could come
        await _add_run(
            session_factory,
            connection,
            "invoices",
            START + timedelta(hours=hour, minutes=59),
            trigger=RunTrigger.WEBHOOK,
        )
    day = await _simulate(session_factory, relaxed, minutes=24 * 60)
    # The first tick catches up the slot before START (connected the day before); then a day.
    for object_type, every in (("invoices", 90), ("accounts", 360)):
        times = day.runs[(connection, object_type)]
        assert times[0] == START + timedelta(seconds=2)
        assert len(times[1:]) == 24 * 60 // every
    assert (
        len(day.runs[(connection, "invoices")][1:]) + len(day.runs[(connection, "accounts")][1:])
        == 20
    )
    assert set(day.gaps("invoices")[1:]) == {90.0}


async def test_looking_ahead_each_slot_is_queued_for_its_own_instant_once(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """With the tick's look-ahead (two ticks), every slot after the catch-up is queued before
    it comes, for its exact instant, and no slot is queued twice or skipped: the same runs as
    without looking ahead, each at its slot instead of at the tick after it. (An interval of
    one tick gains nothing: each tick's run serves the slot just past, one run at a time.)"""
    own = {"invoices_every_minutes": 5, "accounts_every_minutes": 2}
    [looking] = await _connections(session_factory, **own)
    ahead = await _simulate(session_factory, settings, minutes=60, ahead=timedelta(minutes=2))
    [waiting] = await _connections(session_factory, **own)
    behind = await _simulate(session_factory, settings, minutes=60)
    for object_type, every in (("invoices", 5), ("accounts", 2)):
        times = ahead.runs[(looking, object_type)]
        assert times[0] == START + timedelta(seconds=2)  # the catch-up, at once
        # The slot the catch-up came just before is due at the next tick (it was not queued
        # ahead: one run per pair at a time); from then on each run is at its slot's instant.
        offset = spread_offset(looking, object_type, every * 60)
        assert all((t.timestamp() - offset) % (every * 60) == 0 for t in times[2:]), times
        assert {(b - a).total_seconds() for a, b in zip(times[2:], times[3:], strict=False)} == {
            every * 60.0
        }
        # Queued at most two ticks ahead: the last run is no later than the last tick + 2 min.
        assert times[-1] <= START + timedelta(minutes=61, seconds=2)
        counted = len(behind.runs[(waiting, object_type)])
        assert abs(len(times) - counted) <= 2, (len(times), counted)


async def test_a_run_queued_ahead_serves_its_slot_and_waits_as_busy(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    [connection_id] = await _connections(session_factory)
    offset = spread_offset(connection_id, "invoices", 900)
    slot = latest_slot(START + timedelta(hours=1), 900, offset)
    await _add_run(session_factory, connection_id, "invoices", slot - timedelta(minutes=14))
    before = slot - timedelta(seconds=30)
    # Nothing due now; the slot 30 s away is due with a look-ahead of a minute, for its instant.
    assert [
        d for d in await _due(session_factory, settings, before) if d.object_type == "invoices"
    ] == []
    due = [
        d
        for d in await _due(session_factory, settings, before, timedelta(minutes=1))
        if d.object_type == "invoices"
    ]
    assert [(d.connection_id, d.slot_at) for d in due] == [(connection_id, slot)]
    # Queued for the slot, it is busy until it runs, and once it ran the slot is served.
    await _add_run(
        session_factory, connection_id, "invoices", slot, "queued", trigger=RunTrigger.SCHEDULE
    )
    for now in (before, slot + timedelta(seconds=1)):
        found = await _due(session_factory, settings, now, timedelta(minutes=1))
        assert [d for d in found if d.object_type == "invoices"] == []
    async with session_factory() as session:
        run = (
            await session.execute(select(SyncRun).where(SyncRun.status == "queued"))
        ).scalar_one()
        run.status = RunStatus.SUCCESS.value
        await session.commit()
    found = await _due(session_factory, settings, slot + timedelta(minutes=5), timedelta(minutes=1))
    assert [d for d in found if d.object_type == "invoices"] == []
    found = await _due(
        session_factory, settings, slot + timedelta(minutes=14), timedelta(minutes=1)
    )
    assert [(d.object_type, d.slot_at) for d in found if d.object_type == "invoices"] == [
        ("invoices", slot + timedelta(minutes=15))
    ]
