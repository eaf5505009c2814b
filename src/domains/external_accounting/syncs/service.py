"""The one call that starts a sync, whoever asks (a route, the CLI, a queued job, a webhook): a
typed request in, a `SyncResult` out, nothing of HTTP in between."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.base.sync import (
    AccountSyncRequest,
    ConnectionSyncResult,
    InvoiceSyncRequest,
    ObjectType,
    StartedSync,
    SyncResult,
    SyncTarget,
)
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.exceptions import (
    ConnectionNotFound,
    InvalidSyncParameter,
    NoActiveConnection,
    ReauthorisationRequired,
)

SyncRequest = InvoiceSyncRequest | AccountSyncRequest


class SyncsService:
    """Syncs the connections a request covers, all or nothing, in parallel."""

    def __init__(self, session: AsyncSession, factory: IntegrationFactory) -> None:
        self.session = session
        self.factory = factory
        self.connections = ConnectionRepository(session)

    async def sync(self, request: SyncRequest) -> SyncResult:
        """Sync what `request` asks for; `SyncInProgress` (and nothing started) when any of its
        connections' syncs is already running. Commits the session's transaction first: none
        stays open for the length of a sync."""
        connections = await self.connections_to_sync(request)
        started = time.monotonic()
        await self.session.commit()
        runs = await self._start_all(connections, lambda c: self._start(c, request))
        parts = await asyncio.gather(*(run.run() for run in runs))
        return self._combine(request.object_type, connections, parts, started)

    async def _start(self, connection: Connection, request: SyncRequest) -> StartedSync:
        """Take the connection's lease for `request` (its provider's sync service decides how)."""
        service = self.factory.get_sync_service(connection)
        if isinstance(request, InvoiceSyncRequest):
            return await service.start_invoices(
                connection,
                incremental=request.incremental,
                invoice_types=request.invoice_types,
                months_back=request.months_back,
            )
        return await service.start_accounts(connection, account_types=request.account_types)

    async def connections_to_sync(self, target: SyncTarget) -> list[Connection]:
        """The connections a sync request covers: the one asked for, or every active one."""
        organization_id = target.organization_id
        if target.connection_id is not None:
            chosen = [await self.connections.get_for_org(organization_id, target.connection_id)]
            if target.tenant_id is not None and chosen[0].tenant_id != target.tenant_id:
                raise InvalidSyncParameter(
                    f"Connection {target.connection_id} is not the connection to tenant "
                    f"{target.tenant_id}; give one of connection_id and tenant_id.",
                    parameter="tenant_id",
                )
        elif target.tenant_id is not None:
            found = await self.connections.get_by_tenant(
                organization_id, target.provider, target.tenant_id
            )
            if found is None:
                raise ConnectionNotFound(
                    f"No connection to tenant {target.tenant_id} in this organisation."
                )
            chosen = [found]
        else:
            chosen = await self.connections.list_for_org(organization_id)
        active = [c for c in chosen if c.status == ConnectionStatus.ACTIVE.value]
        if active:
            return active
        stale = [c for c in chosen if c.status == ConnectionStatus.NEEDS_REAUTH.value]
        if stale:
            raise ReauthorisationRequired(
                "Every Xero connection of this organisation must be authorised again.",
                connect_url=self.factory.connect_url(stale[0].provider, organization_id),
            )
        raise NoActiveConnection(
            "This organisation has no active accounting connection; connect Xero first."
        )

    async def _start_all(
        self,
        connections: Sequence[Connection],
        start: Callable[[Connection], Awaitable[StartedSync]],
    ) -> list[StartedSync]:
        """Every connection's lease, or none: a request answers for exactly what it started, so
        one busy connection (409) must not leave the others' runs going. Leases are taken in
        one order (by connection id) so concurrent requests over the same connections cannot
        each hold a part."""
        taken: dict[uuid.UUID, StartedSync] = {}
        try:
            for connection in sorted(connections, key=lambda c: c.id):
                taken[connection.id] = await start(connection)
        except BaseException:
            for run in taken.values():
                await run.release()
            raise
        return [taken[c.id] for c in connections]

    def _combine(
        self,
        object_type: ObjectType,
        connections: Sequence[Connection],
        parts: Sequence[ConnectionSyncResult],
        started: float,
    ) -> SyncResult:
        if parts and all(p.error == ReauthorisationRequired.code for p in parts):
            first = connections[0]
            raise ReauthorisationRequired(
                "The Xero connection must be authorised again by an admin.",
                connect_url=self.factory.connect_url(first.provider, first.organization_id),
            )
        return SyncResult.combine(object_type, parts, time.monotonic() - started)
