"""Connections of an organisation, whatever their provider: listing, finding one for a caller,
and disconnecting (the provider's own steps reached through the IntegrationFactory)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import utcnow
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.connections.repository import (
    ConnectionRepository,
    UsageRepository,
)
from src.domains.external_accounting.connections.schemas import (
    ConnectionUsageOut,
    UsageDayOut,
    UsageMonthOut,
)
from src.domains.external_accounting.exceptions import ConnectionNotFound
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.outbound.models import EventType
from src.domains.external_accounting.outbound.service import connection_event_data, emit
from src.domains.organizations.exceptions import NotAMember
from src.domains.organizations.models import Role
from src.domains.organizations.service import ApiCaller, OrganizationService


class ConnectionService:
    """Reads and disconnects connections; the provider-specific steps are its `DisconnectFlow`."""

    def __init__(self, session: AsyncSession, factory: IntegrationFactory) -> None:
        self.session = session
        self.factory = factory
        self.connections = ConnectionRepository(session)
        self.ledger = LedgerRepository(session)

    async def list(self, organization_id: uuid.UUID) -> list[Connection]:
        """The organisation's connections, oldest first."""
        return await self.connections.list_for_org(organization_id)

    async def usage(
        self, organization_id: uuid.UUID, connection_id: uuid.UUID, *, days: int
    ) -> ConnectionUsageOut:
        """The connection's calls and bytes for each of the last `days` UTC days (today
        included) and this month's totals; another organisation's connection is a 404."""
        connection = await self.connections.get_for_org(organization_id, connection_id)
        today = utcnow().date()
        window_start = today - timedelta(days=days - 1)
        month_start = today.replace(day=1)
        rows = await UsageRepository(self.session).days(
            connection.id, min(window_start, month_start)
        )
        by_day = {row.day: row for row in rows}
        window = [window_start + timedelta(days=n) for n in range(days)]
        month = [row for row in rows if row.day >= month_start]
        return ConnectionUsageOut(
            connection_id=connection.id,
            days=[
                UsageDayOut(
                    day=day,
                    calls=by_day[day].calls if day in by_day else 0,
                    bytes=by_day[day].bytes if day in by_day else 0,
                )
                for day in window
            ],
            month=UsageMonthOut(
                month=month_start.strftime("%Y-%m"),
                calls=sum(row.calls for row in month),
                bytes=sum(row.bytes for row in month),
            ),
        )

    async def get_administered(self, caller: ApiCaller, connection_id: uuid.UUID) -> Connection:
        """The connection, if `caller` is an admin of the organisation holding it (with a key
        issued for it). Another organisation's connection is a 404, never a 403: a caller learns
        nothing about it."""
        connection = await self.connections.get(connection_id)
        if connection is None:
            raise ConnectionNotFound(f"Connection {connection_id} does not exist.")
        try:
            await OrganizationService(self.session).require_role(
                caller, connection.organization_id, Role.ADMIN
            )
        except NotAMember:
            raise ConnectionNotFound(f"Connection {connection_id} does not exist.") from None
        return connection

    async def disconnect(self, connection: Connection, *, purge: bool) -> None:
        """Disconnect at the provider and erase the tokens here; synced data is deleted too when
        `purge`. Commits (a failing commit raises before anything is revoked), then revokes the
        token sets nothing uses any more, outside the write transaction."""
        flow = self.factory.get_disconnect_flow(connection.provider, self.session)
        await flow.leave(connection)  # the provider first: no lock is held across the call
        # One transaction fences off running syncs, disconnects and purges. The runs are locked
        # first, as a finishing sync locks its run before the connection (no deadlock); each fenced
        # run stops at its next page instead of writing back what the purge deletes.
        await self.ledger.cancel_running_runs(connection.id, "The connection was disconnected.")
        await flow.forget(connection)
        if purge:
            await self.ledger.purge_connection(connection.id)
        await emit(
            self.session,
            connection.organization_id,
            EventType.CONNECTION_DISCONNECTED,
            connection_event_data(connection, purged=purge),
        )
        await self.session.commit()
        await flow.send_queued_revocations()


async def list_connections(
    session: AsyncSession, organization_id: uuid.UUID | None
) -> list[Connection]:
    """Every connection, or one organisation's, for an operator: no provider is involved."""
    return await ConnectionRepository(session).list_all(organization_id)
