"""Syncing an organisation's connections and reading back what was synced."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.settings import Settings
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.base.sync import (
    ConnectionSyncResult,
    StartedSync,
    SyncResult,
)
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.exceptions import (
    ConnectionNotFound,
    InvalidSyncParameter,
    NoActiveConnection,
    ReauthorisationRequired,
    RecordNotFound,
)
from src.domains.external_accounting.ledger.filters import InvoiceFilters
from src.domains.external_accounting.ledger.models import (
    Account,
    Invoice,
    InvoiceLineItem,
    SyncRun,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.xero.auth.auth_manager import connect_url


class ExternalAccountingService:
    """Runs syncs over an organisation's connections and answers questions about the results."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.connections = ConnectionRepository(session)
        self.ledger = LedgerRepository(session)

    async def connections_to_sync(
        self, organization_id: uuid.UUID, connection_id: uuid.UUID | None, tenant_id: str | None
    ) -> list[Connection]:
        """The connections a sync request covers: the one asked for, or every active one."""
        if connection_id is not None:
            chosen = [await self.connections.get_for_org(organization_id, connection_id)]
            if tenant_id is not None and chosen[0].tenant_id != tenant_id:
                raise InvalidSyncParameter(
                    f"Connection {connection_id} is not the connection to tenant {tenant_id}; "
                    "give one of connection_id and tenant_id.",
                    parameter="tenant_id",
                )
        elif tenant_id is not None:
            found = await self.connections.get_by_tenant(organization_id, "xero", tenant_id)
            if found is None:
                raise ConnectionNotFound(
                    f"No connection to tenant {tenant_id} in this organisation."
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
                connect_url=connect_url(self.settings, organization_id),
            )
        raise NoActiveConnection(
            "This organisation has no active accounting connection; connect Xero first."
        )

    async def sync_invoices(
        self,
        factory: IntegrationFactory,
        connections: Sequence[Connection],
        *,
        incremental: bool,
        invoice_types: Sequence[str],
        months_back: int,
    ) -> SyncResult:
        """Sync invoices of each connection (in parallel: each Xero tenant has its own limits);
        all or nothing: `SyncInProgress` when any connection's sync is already running."""
        started = time.monotonic()
        await self.session.commit()  # hold no transaction open for the length of a sync
        runs = await self._start_all(
            connections,
            lambda c: factory.get_sync_service(c).start_invoices(
                c, incremental=incremental, invoice_types=invoice_types, months_back=months_back
            ),
        )
        parts = await asyncio.gather(*(run.run() for run in runs))
        return self._combine("invoices", connections, parts, started)

    async def sync_accounts(
        self,
        factory: IntegrationFactory,
        connections: Sequence[Connection],
        *,
        account_types: Sequence[str] | None,
    ) -> SyncResult:
        """Sync the chart of accounts of each connection (all or nothing, as invoices)."""
        started = time.monotonic()
        await self.session.commit()
        runs = await self._start_all(
            connections,
            lambda c: factory.get_sync_service(c).start_accounts(c, account_types=account_types),
        )
        parts = await asyncio.gather(*(run.run() for run in runs))
        return self._combine("accounts", connections, parts, started)

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
        object_type: str,
        connections: Sequence[Connection],
        parts: Sequence[ConnectionSyncResult],
        started: float,
    ) -> SyncResult:
        if parts and all(p.error == ReauthorisationRequired.code for p in parts):
            raise ReauthorisationRequired(
                "The Xero connection must be authorised again by an admin.",
                connect_url=connect_url(self.settings, connections[0].organization_id),
            )
        return SyncResult.combine(object_type, parts, time.monotonic() - started)  # type: ignore[arg-type]

    # -- reading -------------------------------------------------------------------------------

    async def list_invoices(
        self, organization_id: uuid.UUID, filters: InvoiceFilters
    ) -> list[Invoice]:
        """A page of synced invoices, newest first."""
        return await self.ledger.list_invoices(organization_id, filters)

    async def get_invoice(
        self, organization_id: uuid.UUID, invoice_id: uuid.UUID
    ) -> tuple[Invoice, list[InvoiceLineItem]]:
        """One synced invoice with its line items."""
        invoice = await self.ledger.get_invoice(organization_id, invoice_id)
        if invoice is None:
            raise RecordNotFound(f"Invoice {invoice_id} does not exist.")
        return invoice, await self.ledger.line_items(invoice.id)

    async def list_accounts(
        self,
        organization_id: uuid.UUID,
        *,
        types: Sequence[str],
        connection_id: uuid.UUID | None,
    ) -> list[Account]:
        """Synced accounts, by code."""
        return await self.ledger.list_accounts(
            organization_id, types=types, connection_id=connection_id
        )

    async def list_runs(self, organization_id: uuid.UUID, limit: int) -> list[SyncRun]:
        """Recent sync runs, newest first."""
        return await self.ledger.list_runs(organization_id, limit)

    async def get_run(self, organization_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun:
        """One sync run."""
        run = await self.ledger.get_run(organization_id, run_id)
        if run is None:
            raise RecordNotFound(f"Sync run {run_id} does not exist.")
        return run
