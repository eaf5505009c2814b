"""Reading back what was synced: invoices, accounts, sync runs. Starting a sync is
`syncs.service`'s."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.external_accounting.exceptions import InvalidCursor, RecordNotFound
from src.domains.external_accounting.ledger.filters import InvoiceFilters
from src.domains.external_accounting.ledger.models import (
    Account,
    Invoice,
    InvoiceLineItem,
    LedgerChange,
    SyncRun,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository

# A feed position: (commit_xid, id) of the last change served; (0, 0) is before every change.
FeedPosition = tuple[int, int]
_START: FeedPosition = (0, 0)
_CURSOR = re.compile(r"v1\.(\d{1,19})\.(\d{1,19})")
_BIGINT_MAX = 2**63 - 1


def encode_feed_cursor(position: FeedPosition) -> str:
    """The opaque cursor of a feed position."""
    return base64.urlsafe_b64encode(f"v1.{position[0]}.{position[1]}".encode()).decode().rstrip("=")


def decode_feed_cursor(cursor: str) -> FeedPosition:
    """The feed position of a cursor this API issued; `InvalidCursor` for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    match = _CURSOR.fullmatch(text)
    if match is None or max(int(match[1]), int(match[2])) > _BIGINT_MAX:
        raise InvalidCursor("The cursor is not one this API issued; pass `next_cursor` as is.")
    return int(match[1]), int(match[2])


class ChangePage(NamedTuple):
    """A page of the change feed and the cursor after it."""

    changes: list[LedgerChange]
    next_cursor: str
    has_more: bool


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

    async def changes(
        self, organization_id: uuid.UUID, cursor: str | None, limit: int
    ) -> ChangePage:
        """The organisation's changes after `cursor` (from the first without one), in commit
        order; the next cursor is where this page ended (where it began, when nothing is new)."""
        after = decode_feed_cursor(cursor) if cursor else _START
        changes = await self.ledger.changes_after(organization_id, after, limit + 1)
        has_more = len(changes) > limit
        changes = changes[:limit]
        if changes:
            after = (changes[-1].commit_xid, changes[-1].id)
        return ChangePage(changes, encode_feed_cursor(after), has_more)

    async def invoice_history(
        self, organization_id: uuid.UUID, invoice_id: uuid.UUID
    ) -> tuple[Invoice, list[LedgerChange]]:
        """An invoice of the organisation with its recorded versions, oldest first."""
        invoice = await self.ledger.get_invoice(organization_id, invoice_id)
        if invoice is None:
            raise RecordNotFound(f"Invoice {invoice_id} does not exist.")
        return invoice, await self.ledger.invoice_history(invoice.id)
