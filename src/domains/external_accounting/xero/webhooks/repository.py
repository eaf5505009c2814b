"""All SQL of webhook events: finding the connections that hold the tenants of a delivery,
storing its events once each (an insert that ignores duplicates, on both databases), reading a
connection's pending events and recording what became of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import utcnow
from src.domains.external_accounting.connections.models import (
    Connection,
    ConnectionStatus,
    Provider,
)
from src.domains.external_accounting.xero.webhooks.models import (
    EventCategory,
    EventStatus,
    WebhookEvent,
)

# Rows per INSERT: 11 parameters each stays far inside both drivers' parameter limits.
INSERT_CHUNK = 1000
_DEDUPE_KEY = ["tenant_id", "category", "resource_id", "event_at"]
# Which connection of a tenant an event belongs to when several exist (one active at most:
# a Xero organisation is held actively by one ledgersync organisation).
_STATUS_RANK = {
    ConnectionStatus.ACTIVE.value: 0,
    ConnectionStatus.NEEDS_REAUTH.value: 1,
    ConnectionStatus.DISCONNECTED.value: 2,
}


class WebhookEventRepository:
    """Webhook events and the connections they are for."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def connections_by_tenant(self, tenant_ids: Iterable[str]) -> dict[str, uuid.UUID]:
        """Xero tenant id → the connection that holds it (the active one first, else the
        newest); tenants no connection of ours holds are absent."""
        wanted = sorted(set(tenant_ids))
        if not wanted:
            return {}
        result = await self.session.execute(
            select(
                Connection.tenant_id, Connection.id, Connection.status, Connection.connected_at
            ).where(Connection.provider == Provider.XERO.value, Connection.tenant_id.in_(wanted))
        )
        best: dict[str, tuple[int, float, uuid.UUID]] = {}
        for row in result:
            rank = (_STATUS_RANK.get(row.status, 3), -row.connected_at.timestamp(), row.id)
            if row.tenant_id not in best or rank < best[row.tenant_id]:
                best[row.tenant_id] = rank
        return {tenant: rank[2] for tenant, rank in best.items()}

    async def add_events(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert the events not already stored (same tenant, category, resource and event
        time: a redelivery); how many were new."""
        insert = postgres_insert if self._dialect() == "postgresql" else sqlite_insert
        added = 0
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            statement = (
                insert(WebhookEvent)
                .values(list(chunk))
                .on_conflict_do_nothing(index_elements=_DEDUPE_KEY)
                .returning(WebhookEvent.id)
            )
            added += len((await self.session.execute(statement)).all())
        return added

    async def connections_with_pending(
        self, connection_ids: Iterable[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Which of these connections have events waiting for their job."""
        wanted = sorted(set(connection_ids))
        if not wanted:
            return []
        result = await self.session.execute(
            select(WebhookEvent.connection_id)
            .where(
                WebhookEvent.connection_id.in_(wanted),
                WebhookEvent.status == EventStatus.PENDING.value,
            )
            .distinct()
        )
        return sorted(c for c in result.scalars() if c is not None)

    async def pending_events(self, connection_id: uuid.UUID) -> list[WebhookEvent]:
        """The connection's events waiting to be handled, oldest received first."""
        result = await self.session.execute(
            select(WebhookEvent)
            .where(
                WebhookEvent.connection_id == connection_id,
                WebhookEvent.status == EventStatus.PENDING.value,
            )
            .order_by(WebhookEvent.received_at, WebhookEvent.id)
        )
        return list(result.scalars())

    async def invoice_changes_since(self, connection_id: uuid.UUID, moment: datetime) -> int:
        """How many distinct invoices events said changed after `moment`."""
        result = await self.session.execute(
            select(func.count(func.distinct(WebhookEvent.resource_id))).where(
                WebhookEvent.connection_id == connection_id,
                WebhookEvent.category == EventCategory.INVOICE.value,
                WebhookEvent.event_at > moment,
            )
        )
        return int(result.scalar_one())

    async def mark(
        self,
        event_ids: Sequence[uuid.UUID],
        status: EventStatus,
        *,
        job_id: int | None,
        sync_run_id: uuid.UUID | None = None,
    ) -> None:
        """Record what became of pending events (one that is no longer pending is left as is)."""
        for start in range(0, len(event_ids), INSERT_CHUNK):
            await self.session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id.in_(event_ids[start : start + INSERT_CHUNK]),
                    WebhookEvent.status == EventStatus.PENDING.value,
                )
                .values(
                    status=status.value,
                    processed_at=utcnow(),
                    job_id=job_id,
                    sync_run_id=sync_run_id,
                )
            )

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name
