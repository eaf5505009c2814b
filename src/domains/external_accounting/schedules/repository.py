"""All SQL of schedules: the per-connection overrides and budget readings, and what the scheduler
reads each minute about every active connection (one query, whatever the number of them)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import inline_constant, utcnow
from src.domains.external_accounting.base.sync import ObjectType
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.ledger.models import (
    RunStatus,
    RunTrigger,
    SyncMode,
    SyncRun,
)
from src.domains.external_accounting.schedules.models import ConnectionSchedule

OBJECT_TYPES: tuple[ObjectType, ...] = ("invoices", "accounts")
# Runs that already cover the next sync of their connection and object type.
BUSY_STATUSES = (RunStatus.RUNNING.value, RunStatus.QUEUED.value)


@dataclass(frozen=True)
class RunsOfType:
    """What the scheduler needs of a connection's runs of one object type."""

    last_started_at: datetime | None
    # The last run someone asked for (not one the scheduler queued).
    last_requested_at: datetime | None
    busy: bool  # a queued or running run exists
    paused_until: datetime | None  # the latest daily-limit pause


@dataclass(frozen=True)
class SchedulingState:
    """An active connection as the scheduler sees it."""

    connection_id: uuid.UUID
    organization_id: uuid.UUID
    provider: str
    connected_at: datetime
    enabled: bool
    every_minutes: dict[str, int | None]  # the overrides, by object type
    day_limit_remaining: int | None
    day_limit_observed_at: datetime | None
    runs: dict[str, RunsOfType]


def _of_type(object_type: str) -> list[Any]:
    """Correlated subqueries on the connection's runs of one type, each the first entry of a
    partial index (ledger/models.py), so a tick reads five index entries per connection and
    type however long the history (a day of 1,000 connections' runs: 27 ms against 1.0 s with
    ix_sync_runs_connection_type_started alone, which made the newest requested run and the
    latest pause a walk through every run)."""
    same = (SyncRun.connection_id == Connection.id, SyncRun.object_type == object_type)
    # A webhook's targeted run fetched a few invoices by id, and a reconciliation sweep reads no
    # changes since a cursor: neither stands in for a slot (a busy organisation's events would
    # keep its safety-net sync from ever running). While they run they are busy like any run.
    # These conditions are SLOT_RUN_CONDITION and REQUESTED_RUN_CONDITION, term for term.
    slot_runs = (
        *same,
        SyncRun.trigger != inline_constant(RunTrigger.WEBHOOK.value),
        SyncRun.mode != inline_constant(SyncMode.RECONCILE.value),
    )
    last = select(func.max(SyncRun.started_at)).where(*slot_runs).correlate(Connection)
    requested = (
        select(func.max(SyncRun.started_at))
        .where(*slot_runs, SyncRun.trigger != inline_constant(RunTrigger.SCHEDULE.value))
        .correlate(Connection)
    )
    # One test per status, each answered by its unique partial index (an IN list is not).
    busy = or_(
        *(
            exists().where(*same, SyncRun.status == inline_constant(status)).correlate(Connection)
            for status in BUSY_STATUSES
        )
    )
    paused = (
        select(func.max(SyncRun.paused_until))
        .where(*same, SyncRun.status == inline_constant(RunStatus.PAUSED.value))
        .correlate(Connection)
    )
    return [
        last.scalar_subquery().label(f"{object_type}_last"),
        requested.scalar_subquery().label(f"{object_type}_requested"),
        busy.label(f"{object_type}_busy"),
        paused.scalar_subquery().label(f"{object_type}_paused"),
    ]


def active_connections_query(*columns: Any) -> Select[*tuple[Any, ...]]:
    """Every active connection, oldest first: its identity, its schedule's switch, and
    `columns` (the schedulers' questions about its runs, correlated with `Connection`)."""
    return (
        select(
            Connection.id,
            Connection.organization_id,
            Connection.provider,
            Connection.connected_at,
            ConnectionSchedule.enabled,
            *columns,
        )
        .outerjoin(ConnectionSchedule, ConnectionSchedule.connection_id == Connection.id)
        .where(Connection.status == ConnectionStatus.ACTIVE.value)
        .order_by(Connection.connected_at, Connection.id)
    )


def scheduling_query() -> Select[*tuple[Any, ...]]:
    """The scheduler's one query: every active connection, its schedule and budget reading,
    and what it needs of its runs of each object type (`_of_type`)."""
    return active_connections_query(
        ConnectionSchedule.invoices_every_minutes,
        ConnectionSchedule.accounts_every_minutes,
        ConnectionSchedule.day_limit_remaining,
        ConnectionSchedule.day_limit_observed_at,
        *(column for object_type in OBJECT_TYPES for column in _of_type(object_type)),
    )


class ScheduleRepository:
    """Schedules and their budget readings."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, connection_id: uuid.UUID) -> ConnectionSchedule | None:
        result = await self.session.execute(
            select(ConnectionSchedule)
            .where(ConnectionSchedule.connection_id == connection_id)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def _ensure_rows(self, connection_ids: Sequence[uuid.UUID]) -> None:
        """A default row for each connection that has none (concurrent writers both succeed)."""
        if not connection_ids:
            return
        table = cast(Table, ConnectionSchedule.__table__)
        postgres = self.session.get_bind().dialect.name == "postgresql"
        statement = (postgres_insert if postgres else sqlite_insert)(table)
        await self.session.execute(
            statement.on_conflict_do_nothing(index_elements=["connection_id"]),
            [
                {"connection_id": cid, "enabled": True, "updated_at": utcnow()}
                for cid in connection_ids
            ],
        )

    async def save(
        self,
        connection_id: uuid.UUID,
        *,
        enabled: bool,
        invoices_every_minutes: int | None,
        accounts_every_minutes: int | None,
    ) -> ConnectionSchedule:
        """Replace the connection's schedule (its budget reading is kept)."""
        await self._ensure_rows([connection_id])
        await self.session.execute(
            update(ConnectionSchedule)
            .where(ConnectionSchedule.connection_id == connection_id)
            .values(
                enabled=enabled,
                invoices_every_minutes=invoices_every_minutes,
                accounts_every_minutes=accounts_every_minutes,
            )
            .execution_options(synchronize_session=False)
        )
        saved = await self.get(connection_id)
        assert saved is not None
        return saved

    async def record_day_limits(
        self, provider: str, readings: Mapping[str, tuple[int, datetime]]
    ) -> int:
        """Store each tenant's daily budget reading (`readings`: tenant id → (remaining,
        observed at)) on its active connections, where no newer one is stored; how many
        connections took one. A process passes every reading it has seen at every tick, and
        most are already stored: one query finds the connections whose stored reading is
        older, and only those are locked (in connection order: two workers locking rows in
        different orders deadlocked, bench/fleet.py), checked again and written, in one
        statement each whatever the number of tenants."""
        if not readings:
            return 0
        known = await self.session.execute(
            select(
                Connection.id,
                Connection.tenant_id,
                ConnectionSchedule.connection_id,
                ConnectionSchedule.day_limit_observed_at,
            )
            .outerjoin(ConnectionSchedule, ConnectionSchedule.connection_id == Connection.id)
            .where(
                Connection.provider == provider,
                Connection.tenant_id.in_(list(readings)),
                Connection.status == ConnectionStatus.ACTIVE.value,
            )
        )
        reading_of: dict[uuid.UUID, tuple[int, datetime]] = {}
        without_row: list[uuid.UUID] = []
        for connection_id, tenant_id, has_row, observed_at in known:
            reading = readings[tenant_id]
            if has_row is None:
                without_row.append(connection_id)
            elif observed_at is not None and observed_at >= reading[1]:
                continue
            reading_of[connection_id] = reading
        if not reading_of:
            return 0
        await self._ensure_rows(sorted(without_row))
        # Under the rows' locks (PostgreSQL), what is stored now decides; the UPDATE's own
        # condition keeps a newer reading on SQLite, whose writers queue for its one lock.
        locked = await self.session.execute(
            select(ConnectionSchedule.connection_id, ConnectionSchedule.day_limit_observed_at)
            .where(ConnectionSchedule.connection_id.in_(sorted(reading_of)))
            .order_by(ConnectionSchedule.connection_id)
            .with_for_update()
        )
        writes: list[dict[str, Any]] = []
        for connection_id, observed_at in locked:
            remaining, observed = reading_of[connection_id]
            if observed_at is None or observed_at < observed:
                writes.append(
                    {"id": connection_id, "remaining": remaining, "observed_at": observed}
                )
        if writes:
            schedules = cast(Table, ConnectionSchedule.__table__)
            await self.session.execute(
                update(schedules)
                .where(
                    schedules.c.connection_id == bindparam("id"),
                    or_(
                        schedules.c.day_limit_observed_at.is_(None),
                        schedules.c.day_limit_observed_at < bindparam("observed_at"),
                    ),
                )
                .values(
                    day_limit_remaining=bindparam("remaining"),
                    day_limit_observed_at=bindparam("observed_at"),
                ),
                writes,
            )
        return len(writes)

    async def scheduling_states(self) -> list[SchedulingState]:
        """Every active connection with its schedule, budget reading and runs, oldest first."""
        result = await self.session.execute(scheduling_query())
        states = []
        for row in result.mappings():
            states.append(
                SchedulingState(
                    connection_id=row["id"],
                    organization_id=row["organization_id"],
                    provider=row["provider"],
                    connected_at=row["connected_at"],
                    enabled=row["enabled"] is not False,  # no row: enabled
                    every_minutes={
                        "invoices": row["invoices_every_minutes"],
                        "accounts": row["accounts_every_minutes"],
                    },
                    day_limit_remaining=row["day_limit_remaining"],
                    day_limit_observed_at=row["day_limit_observed_at"],
                    runs={
                        t: RunsOfType(
                            last_started_at=row[f"{t}_last"],
                            last_requested_at=row[f"{t}_requested"],
                            busy=bool(row[f"{t}_busy"]),
                            paused_until=row[f"{t}_paused"],
                        )
                        for t in OBJECT_TYPES
                    },
                )
            )
        return states
