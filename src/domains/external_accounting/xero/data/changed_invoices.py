"""A targeted sync: the invoices Xero's webhook events named, fetched by id (`IDs=`, 50 at a
time, `page=1` so line items come back) and stored through the same page transaction as every
sync (`InvoicePhases.store`), or an ordinary incremental pass when that costs fewer calls.
Credit notes named by events are read for the invoices they are allocated to, and those of
ours are fetched again (their `AmountCredited` and `AmountDue` moved)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.runs import RunProgress
from src.domains.external_accounting.xero.data.accounting_client import (
    MAX_IDS_PER_CALL,
    MAX_PAGE_SIZE,
    XeroAccountingClient,
)
from src.domains.external_accounting.xero.data.invoice_phases import CURSOR_OVERLAP, InvoicePhases

# Every invoice type: the scope of the cursor an incremental pass reads and moves.
ALL_TYPES_SCOPE = "invoices:ACCPAY,ACCREC"


def batches(ids: Sequence[str], size: int = MAX_IDS_PER_CALL) -> Iterator[list[str]]:
    """`ids` in lists of at most `size`."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


@dataclass(frozen=True)
class TargetedPlan:
    """What a targeted run fetches, decided before it starts."""

    invoice_ids: list[str]
    credit_note_ids: list[str]
    # Set when an incremental pass from this cursor is cheaper than fetching by id.
    incremental_from: datetime | None

    @property
    def calls_by_id(self) -> int:
        return math.ceil(len(self.invoice_ids) / MAX_IDS_PER_CALL)


def plan(
    invoice_ids: Sequence[str],
    credit_note_ids: Sequence[str],
    *,
    cursor: datetime | None,
    changes_since_cursor: int,
) -> TargetedPlan:
    """Fetch by id unless an incremental pass takes fewer calls: it reads everything changed
    since the cursor, at least one page, one page per MAX_PAGE_SIZE changes (estimated from the
    events received since the cursor, `changes_since_cursor`). Without a cursor (no sync has
    finished yet) by id, always: the first sync is a full one and is someone else's."""
    wanted = list(dict.fromkeys(invoice_ids))
    notes = list(dict.fromkeys(credit_note_ids))
    by_id = math.ceil(len(wanted) / MAX_IDS_PER_CALL)
    incremental_pages = max(1, math.ceil(max(changes_since_cursor, len(wanted)) / MAX_PAGE_SIZE))
    cheaper = cursor is not None and by_id > incremental_pages
    return TargetedPlan(wanted, notes, cursor if cheaper else None)


class ChangedInvoices:
    """Fetches and stores what a targeted plan names, page by page, under a run's lease."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        client: XeroAccountingClient,
        phases: InvoicePhases,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.phases = phases

    async def sync(self, connection: Connection, progress: RunProgress, plan: TargetedPlan) -> None:
        """The plan's invoices (or the incremental pass), then the invoices of ours its credit
        notes are allocated to."""
        fetched: set[str] = set()
        if plan.incremental_from is not None:
            progress.phase_name = "changes"
            await self.phases.phase(
                connection,
                progress,
                ALL_TYPES_SCOPE,
                cursor_phase=True,
                modified_since=plan.incremental_from - CURSOR_OVERLAP,
            )
        else:
            progress.phase_name = "targeted"
            await self.fetch(connection, progress, plan.invoice_ids)
            fetched.update(plan.invoice_ids)
        if plan.credit_note_ids:
            progress.phase_name = "credit_notes"
            allocated = await self._allocated_invoices(connection, plan.credit_note_ids)
            await self.fetch(connection, progress, [i for i in allocated if i not in fetched])

    async def fetch(
        self, connection: Connection, progress: RunProgress, invoice_ids: Sequence[str]
    ) -> None:
        """The invoices named, MAX_IDS_PER_CALL per call, each page stored in its transaction
        (the cursor is left alone: these are not in `UpdatedDateUTC` order)."""
        for batch in batches(invoice_ids):
            page = await self.client.get_invoices_by_ids(connection, batch)
            pairs = list(zip(page.invoices, page.raw, strict=True))
            await self.phases.store(connection, progress, pairs, None)

    async def _allocated_invoices(
        self, connection: Connection, credit_note_ids: Sequence[str]
    ) -> list[str]:
        """The stored invoices of this connection the credit notes are allocated to (one we do
        not hold is not ours to fetch: an incremental sync brings it when it exists for us)."""
        allocated: list[str] = []
        for batch in batches(credit_note_ids):
            for note in await self.client.get_credit_notes_by_ids(connection, batch):
                allocated.extend(note.allocated_invoice_ids())
        if not allocated:
            return []
        async with self.session_factory() as session:
            stored = await LedgerRepository(session).invoice_versions(connection.id, allocated)
        return [i for i in dict.fromkeys(allocated) if i in stored]
