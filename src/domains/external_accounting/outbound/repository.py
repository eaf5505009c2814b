"""All SQL of outbound webhooks: endpoints, the deliveries owed (the outbox) and their attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import rows_matched, utcnow
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.outbound.models import (
    ChangeAnnouncementCursor,
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)


class OutboundRepository:
    """Reads and writes in the caller's session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- endpoints ---------------------------------------------------------------------------

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.session.add(endpoint)
        await self.session.flush()

    async def endpoints(self, organization_id: uuid.UUID) -> list[WebhookEndpoint]:
        """The organisation's endpoints, oldest first."""
        result = await self.session.execute(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.organization_id == organization_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return list(result.scalars())

    async def endpoint(
        self, organization_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint | None:
        """The endpoint, if it belongs to the organisation."""
        result = await self.session.execute(
            select(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id,
                WebhookEndpoint.organization_id == organization_id,
            )
        )
        return result.scalar_one_or_none()

    async def all_endpoints(self) -> list[WebhookEndpoint]:
        """Every organisation's endpoints (a small table: the announcer filters them by the
        events they subscribe to, which are JSON)."""
        result = await self.session.execute(
            select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return list(result.scalars())

    async def endpoint_by_id(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        return await self.session.get(WebhookEndpoint, endpoint_id)

    async def delete_endpoint(self, organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
        """Delete the endpoint; its deliveries and their attempts go with it (foreign keys
        cascade on both databases). False when the organisation has no such endpoint."""
        result = await self.session.execute(
            delete(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == endpoint_id,
                WebhookEndpoint.organization_id == organization_id,
            )
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) > 0

    # -- the outbox --------------------------------------------------------------------------

    async def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> None:
        self.session.add_all(deliveries)
        await self.session.flush()

    async def due_delivery_ids(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Pending deliveries whose next attempt is due, oldest first."""
        result = await self.session.execute(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        return list(result.scalars())

    async def claim(self, delivery_id: uuid.UUID, now: datetime, hold_until: datetime) -> bool:
        """Take a due delivery for one attempt: its next attempt moves to `hold_until`, so no
        other job attempts it meanwhile (one whose worker died is attempted again after it)."""
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=hold_until)
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) > 0

    async def delivery(self, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        return await self.session.get(WebhookDelivery, delivery_id)

    async def record_attempt(
        self,
        attempt: WebhookDeliveryAttempt,
        *,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
        delivered_at: datetime | None,
    ) -> None:
        """Log an attempt and what it makes of its delivery."""
        self.session.add(attempt)
        await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == attempt.delivery_id)
            .values(
                status=status.value,
                attempts=attempt.attempt,
                next_attempt_at=next_attempt_at,
                delivered_at=delivered_at,
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.flush()

    # -- announcing changes ------------------------------------------------------------------

    async def connections_of(self, organization_ids: Sequence[uuid.UUID]) -> list[Connection]:
        """The organisations' connections, whatever their status (a disconnected one's last
        changes are announced too), in id order."""
        if not organization_ids:
            return []
        result = await self.session.execute(
            select(Connection)
            .where(Connection.organization_id.in_(list(organization_ids)))
            .order_by(Connection.id)
        )
        return list(result.scalars())

    async def change_cursor(self, connection_id: uuid.UUID) -> tuple[int, int] | None:
        """How far the connection's changes were announced; None: never."""
        row = await self.session.get(ChangeAnnouncementCursor, connection_id)
        return None if row is None else (row.commit_xid, row.change_id)

    async def move_change_cursor(
        self,
        connection_id: uuid.UUID,
        before: tuple[int, int] | None,
        after: tuple[int, int],
    ) -> bool:
        """Move the connection's announcement cursor from `before` (None: it has none) to
        `after`; False when it is no longer at `before` (another pass announced meanwhile:
        the caller rolls back what it wrote)."""
        if before is None:
            postgres = self.session.get_bind().dialect.name == "postgresql"
            insert = postgres_insert if postgres else sqlite_insert
            statement = insert(ChangeAnnouncementCursor).values(
                connection_id=connection_id,
                commit_xid=after[0],
                change_id=after[1],
                updated_at=utcnow(),
            )
            result = await self.session.execute(
                statement.on_conflict_do_nothing(index_elements=["connection_id"])
            )
            return rows_matched(result) > 0
        result = await self.session.execute(
            update(ChangeAnnouncementCursor)
            .where(
                ChangeAnnouncementCursor.connection_id == connection_id,
                ChangeAnnouncementCursor.commit_xid == before[0],
                ChangeAnnouncementCursor.change_id == before[1],
            )
            .values(commit_xid=after[0], change_id=after[1], updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) > 0

    async def set_change_cursor(self, connection_id: uuid.UUID, position: tuple[int, int]) -> None:
        """Put the connection's announcement cursor at `position`, whatever it was."""
        postgres = self.session.get_bind().dialect.name == "postgresql"
        insert = postgres_insert if postgres else sqlite_insert
        statement = insert(ChangeAnnouncementCursor).values(
            connection_id=connection_id,
            commit_xid=position[0],
            change_id=position[1],
            updated_at=utcnow(),
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["connection_id"],
                set_={
                    "commit_xid": statement.excluded.commit_xid,
                    "change_id": statement.excluded.change_id,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )

    # -- the delivery log --------------------------------------------------------------------

    async def deliveries(self, endpoint_id: uuid.UUID, limit: int) -> list[WebhookDelivery]:
        """The endpoint's latest deliveries, newest first."""
        result = await self.session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(limit)
        )
        return list(result.scalars())

    async def attempts(
        self, delivery_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[WebhookDeliveryAttempt]]:
        """The attempts of these deliveries, in order, by delivery."""
        by_delivery: dict[uuid.UUID, list[WebhookDeliveryAttempt]] = {
            delivery_id: [] for delivery_id in delivery_ids
        }
        if not delivery_ids:
            return by_delivery
        result = await self.session.execute(
            select(WebhookDeliveryAttempt)
            .where(WebhookDeliveryAttempt.delivery_id.in_(list(delivery_ids)))
            .order_by(WebhookDeliveryAttempt.attempt)
        )
        for attempt in result.scalars():
            by_delivery[attempt.delivery_id].append(attempt)
        return by_delivery
