"""All SQL of the reconciliation sweep's scheduling: when each active connection was last swept
(one query for the whole fleet)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import inline_constant
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import SyncMode, SyncRun
from src.domains.external_accounting.schedules.repository import active_connections_query


@dataclass(frozen=True)
class SweepState:
    """An active connection as the sweep's scheduler sees it."""

    connection_id: uuid.UUID
    organization_id: uuid.UUID
    provider: str
    connected_at: datetime
    enabled: bool  # its schedule's switch: a connection nobody syncs unasked is not swept either
    last_swept_at: datetime | None  # when its last invoice sweep started


def sweep_states_query() -> Select[*tuple[Any, ...]]:
    """The sweep scheduler's one query: every active connection, its schedule's switch, and
    when its last invoice sweep started."""
    last = (
        select(func.max(SyncRun.started_at))
        .where(
            SyncRun.connection_id == Connection.id,
            SyncRun.object_type == "invoices",
            # Inline, as SWEEP_RUN_CONDITION: the newest entry of its partial index, not a walk
            # through every run of the connection.
            SyncRun.mode == inline_constant(SyncMode.RECONCILE.value),
        )
        .correlate(Connection)
        .scalar_subquery()
    )
    return active_connections_query(last.label("last_swept_at"))


class ReconcileRepository:
    """What the sweep's scheduler reads."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sweep_states(self) -> list[SweepState]:
        """Every active connection with the start of its last invoice sweep, oldest first."""
        result = await self.session.execute(sweep_states_query())
        return [
            SweepState(
                connection_id=row.id,
                organization_id=row.organization_id,
                provider=row.provider,
                connected_at=row.connected_at,
                enabled=row.enabled is not False,  # no schedule row: enabled
                last_swept_at=row.last_swept_at,
            )
            for row in result
        ]
