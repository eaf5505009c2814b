"""Schedules: what every active connection is synced on without anyone asking, and `due(now)`,
the decision of which (connection, object type) pairs to queue now.

A pair is due at the instants `offset + k * interval` (epoch seconds). The offset is a stable
hash of the connection id and object type, so a fleet's connections are spread over the
interval instead of all firing at :00, and a sync someone started by hand does not move a
connection's phase: connections synced all at once (a fleet's first syncs) each go back to
their own instant. It is due when its last run (of any outcome: a failing connection is not
retried every minute) started before the latest such instant, unless a sync someone asked for
started less than half an interval before it (that sync makes the scheduled one unnecessary).
A run the scheduler queued itself never stands in for the next instant, however late it ran:
otherwise a catch-up run (after downtime, or a fleet's first tick) would push every
connection's next sync back by a whole interval.

The scheduler looks ahead: a pair whose next instant comes before the tick after next is queued
now, as a job that no worker starts before that instant (its run's `started_at` is the instant,
so the slot counts as served). Queued only when due, a tick's slots all reached the workers at
once and waited for each other (queue latency p95 ~2 s in bench/fleet.py, the drain of each
batch). Queued ahead they reach the workers as their instants come (docs/jobs.md).

It is skipped while a run of that type is queued or running, or paused on the daily limit. A
connection whose last known daily budget is at or under the reserve waits; one within the
margin above it is synced `schedule_day_limit_stretch` times less often. Budget readings older
than XERO_RESERVE_PAUSE_SECONDS are ignored (the budget may have recovered; the next sync reads
it afresh, and pauses by itself if it has not), as the accounting client does."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.settings import Settings
from src.domains.external_accounting.base.sync import (
    AccountSyncRequest,
    InvoiceSyncRequest,
    ObjectType,
)
from src.domains.external_accounting.connections.models import Connection, Provider
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.ledger.models import RunTrigger
from src.domains.external_accounting.schedules.models import ConnectionSchedule
from src.domains.external_accounting.schedules.repository import (
    OBJECT_TYPES,
    ScheduleRepository,
    SchedulingState,
)
from src.domains.external_accounting.schedules.schemas import ScheduleIn, ScheduleOut


class DayLimitReading(Protocol):
    """What a provider's last response said of a tenant's daily budget (Xero's `RateBudget`)."""

    @property
    def day_remaining(self) -> int | None: ...

    @property
    def observed_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class DueSync:
    """A (connection, object type) the scheduler queues now."""

    connection_id: uuid.UUID
    organization_id: uuid.UUID
    provider: str
    object_type: ObjectType
    every_minutes: int  # the interval it was due by (stretched near the daily reserve)
    slot_at: datetime  # the instant it became due
    stretched: bool

    def request(self) -> InvoiceSyncRequest | AccountSyncRequest:
        """The sync request a queued job carries: incremental invoices, or every account."""
        provider = Provider(self.provider)
        if self.object_type == "invoices":
            return InvoiceSyncRequest(
                organization_id=self.organization_id,
                provider=provider,
                connection_id=self.connection_id,
                incremental=True,
                trigger=RunTrigger.SCHEDULE,
            )
        return AccountSyncRequest(
            organization_id=self.organization_id,
            provider=provider,
            connection_id=self.connection_id,
            trigger=RunTrigger.SCHEDULE,
        )


def spread_offset(connection_id: uuid.UUID, object_type: str, interval_s: int) -> int:
    """Where in each interval the pair is due, in seconds: a stable hash, in [0, interval_s)."""
    digest = hashlib.sha256(f"{connection_id}:{object_type}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % interval_s


def latest_slot(now: datetime, interval_s: int, offset_s: int) -> datetime:
    """The latest instant at or before `now` of the form `offset + k * interval` (epoch)."""
    seconds = now.timestamp()
    k = math.floor((seconds - offset_s) / interval_s)
    return datetime.fromtimestamp(k * interval_s + offset_s, UTC)


class ScheduleService:
    """Reads and replaces connections' schedules, and decides what is due."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.schedules = ScheduleRepository(session)
        self.connections = ConnectionRepository(session)

    def defaults(self) -> dict[str, int]:
        """The intervals of a connection without its own: relaxed when webhooks are on, since
        events bring changes and the schedule only catches what a dropped delivery missed."""
        s = self.settings
        if s.webhooks_enabled:
            return {
                "invoices": s.schedule_invoices_minutes_with_webhooks,
                "accounts": s.schedule_accounts_minutes_with_webhooks,
            }
        return {"invoices": s.schedule_invoices_minutes, "accounts": s.schedule_accounts_minutes}

    # -- the API -----------------------------------------------------------------------------

    async def connection(self, organization_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
        """The organisation's connection (404 for another organisation's, never 403)."""
        return await self.connections.get_for_org(organization_id, connection_id)

    def _out(self, connection: Connection, row: ConnectionSchedule | None) -> ScheduleOut:
        defaults = self.defaults()
        invoices = row.invoices_every_minutes if row else None
        accounts = row.accounts_every_minutes if row else None
        return ScheduleOut(
            connection_id=connection.id,
            enabled=row.enabled if row else True,
            invoices_every_minutes=invoices,
            accounts_every_minutes=accounts,
            effective_invoices_every_minutes=invoices or defaults["invoices"],
            effective_accounts_every_minutes=accounts or defaults["accounts"],
            day_limit_remaining=row.day_limit_remaining if row else None,
            day_limit_observed_at=row.day_limit_observed_at if row else None,
            scheduled_syncs=self.settings.scheduled_syncs,
        )

    async def get(self, connection: Connection) -> ScheduleOut:
        return self._out(connection, await self.schedules.get(connection.id))

    async def replace(self, connection: Connection, schedule: ScheduleIn) -> ScheduleOut:
        row = await self.schedules.save(
            connection.id,
            enabled=schedule.enabled,
            invoices_every_minutes=schedule.invoices_every_minutes,
            accounts_every_minutes=schedule.accounts_every_minutes,
        )
        return self._out(connection, row)

    # -- budget readings ---------------------------------------------------------------------

    async def record_day_limits(
        self, provider: str, readings: Mapping[str, DayLimitReading]
    ) -> int:
        """Store the latest daily budget per tenant (`readings` by tenant id) on its active
        connections, where it is newer than what is stored; how many connections took one."""
        return await self.schedules.record_day_limits(
            provider,
            {
                tenant_id: (reading.day_remaining, reading.observed_at)
                for tenant_id, reading in readings.items()
                if reading.day_remaining is not None and reading.observed_at is not None
            },
        )

    # -- the scheduler -----------------------------------------------------------------------

    async def due(self, now: datetime, ahead: timedelta = timedelta(0)) -> list[DueSync]:
        """Every (active connection, object type) to queue at `now`, the longest due first:
        those whose latest slot has had no run, and (with `ahead`) those whose slot has but
        whose next one falls within `ahead` of `now`, to be queued for that instant."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        due = [
            found
            for state in await self.schedules.scheduling_states()
            for object_type in OBJECT_TYPES
            if (found := self._due(state, object_type, now, ahead)) is not None
        ]
        return sorted(due, key=lambda d: (d.slot_at, d.connection_id, d.object_type))

    def _stretch(self, state: SchedulingState, now: datetime) -> int | None:
        """The factor the connection's intervals are multiplied by (None: it waits)."""
        s = self.settings
        remaining, seen = state.day_limit_remaining, state.day_limit_observed_at
        fresh = seen is not None and now - seen < timedelta(seconds=s.xero_reserve_pause_seconds)
        if remaining is None or not fresh:
            return 1
        if remaining <= s.xero_daily_reserve:
            return None
        if remaining <= s.xero_daily_reserve + s.schedule_day_limit_margin:
            return s.schedule_day_limit_stretch
        return 1

    def _due(
        self, state: SchedulingState, object_type: ObjectType, now: datetime, ahead: timedelta
    ) -> DueSync | None:
        runs = state.runs[object_type]
        if not state.enabled or runs.busy:
            return None
        if runs.paused_until is not None and runs.paused_until > now:
            return None  # its run resumes by itself after the pause
        stretch = self._stretch(state, now)
        if stretch is None:
            return None
        minutes = (state.every_minutes[object_type] or self.defaults()[object_type]) * stretch
        interval_s = minutes * 60
        offset = spread_offset(state.connection_id, object_type, interval_s)
        slot = latest_slot(now, interval_s, offset)
        last = runs.last_started_at or state.connected_at
        if last >= slot:
            # This slot has had its run (one queued ahead has a later instant still): the next
            # slot after that run is queued ahead when it is close.
            slot = latest_slot(last, interval_s, offset) + timedelta(seconds=interval_s)
            if slot > now + ahead:
                return None
        requested = runs.last_requested_at
        if requested is not None and slot - requested < timedelta(seconds=interval_s / 2):
            return None  # a sync asked for just before the slot serves it
        return DueSync(
            connection_id=state.connection_id,
            organization_id=state.organization_id,
            provider=state.provider,
            object_type=object_type,
            every_minutes=minutes,
            slot_at=slot,
            stretched=stretch > 1,
        )
