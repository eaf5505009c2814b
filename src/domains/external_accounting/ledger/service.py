"""Reading back what was synced: invoices, accounts, sync runs. Starting a sync is
`syncs.service`'s."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.external_accounting.exceptions import RecordNotFound
from src.domains.external_accounting.ledger.filters import InvoiceFilters
from src.domains.external_accounting.ledger.models import (
    Account,
    Invoice,
    InvoiceLineItem,
    SyncRun,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository


class LedgerService:
    """Answers questions about what was synced for an organisation."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.ledger = LedgerRepository(session)

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

    async def list_runs(self, organization_id: uuid.UUID | None, limit: int) -> list[SyncRun]:
        """Recent sync runs, newest first (None: every organisation's, for operators)."""
        return await self.ledger.list_runs(organization_id, limit)

    async def get_run(self, organization_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun:
        """One sync run."""
        run = await self.ledger.get_run(organization_id, run_id)
        if run is None:
            raise RecordNotFound(f"Sync run {run_id} does not exist.")
        return run

    async def find_run(self, run_id: uuid.UUID) -> SyncRun:
        """One sync run, whichever organisation's (for operators), read afresh."""
        run = await self.ledger.run_by_id(run_id)
        if run is None:
            raise RecordNotFound(f"Sync run {run_id} does not exist.")
        return run
