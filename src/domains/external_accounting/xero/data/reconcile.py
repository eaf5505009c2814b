"""The reconciliation sweep's invoice pass: what Xero changes without moving `UpdatedDateUTC` (a
line's account code; contact and attachment changes) is invisible to every incremental sync, so
the sweep re-reads the invoices such edits can still matter for and compares each with what we
store, writing the ones that differ.

What it re-reads, with full pages (line items, 1,000 invoices a call), oldest change first:

1. `open`: every DRAFT, SUBMITTED or AUTHORISED invoice, whatever its date;
2. `recent`: PAID, VOIDED and DELETED invoices dated in the last `window_days` days.

It compares only invoices we hold (the syncs decide what is in scope) by their document as stored
(the verbatim JSON, parsed with exact decimals): anything Xero renders differently is caught, not
only the fields we map. It stops after `max_calls` calls; the run keeps its checkpoint (phase and
keyset position) and the next sweep goes on from there, so a large organisation is covered over
several sweeps at a bounded cost each. It never moves the incremental cursor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import JsonText
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.runs import RunProgress
from src.domains.external_accounting.xero.data.accounting_client import XeroAccountingClient
from src.domains.external_accounting.xero.data.invoice_phases import InvoicePhases
from src.domains.external_accounting.xero.data.xero_models import XeroInvoicePage

OPEN_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
CLOSED_STATUSES = ("PAID", "VOIDED", "DELETED")
# A sweep's checkpoint says `scope: reconcile`: a sync never resumes from it, nor it from a sync's.
SWEEP_SCOPE = "reconcile"
SWEEP_PHASES = ("open", "recent")


def _document(text: str | bytes) -> Any:
    """An invoice's JSON as values (numbers exact): equal documents, whatever their spacing."""
    return json.loads(text, parse_float=Decimal)


def _last_page(page: XeroInvoicePage) -> bool:
    """Xero's pagination says no page follows (unknown: assume one does)."""
    return page.page_count is not None and page.page >= page.page_count


class InvoiceSweep:
    """Re-reads a connection's open and recent invoices and corrects what differs silently."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        client: XeroAccountingClient,
        invoices: InvoicePhases,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.invoices = invoices

    async def sweep(
        self,
        connection: Connection,
        progress: RunProgress,
        *,
        window_days: int,
        max_calls: int,
        checkpoint: dict[str, Any] | None,
    ) -> None:
        """Both passes, from `checkpoint` (where the last sweep stopped) when given; stops once
        the run has made `max_calls` calls, leaving its checkpoint for the next sweep."""
        window_start = datetime.now(UTC).date() - timedelta(days=window_days)
        phases: list[dict[str, Any]] = [
            {"statuses": OPEN_STATUSES},
            {"statuses": CLOSED_STATUSES, "date_from": window_start},
        ]
        first = int(checkpoint["phase"]) if checkpoint else 0
        progress.keep_checkpoint = True
        progress.checkpoint_base = {"scope": SWEEP_SCOPE}
        for index, filters in enumerate(phases):
            if index < first:
                continue
            progress.phase, progress.phase_name = index, SWEEP_PHASES[index]
            resume_at = checkpoint.get("since") if checkpoint and index == first else None
            progress.phase_since = datetime.fromisoformat(resume_at) if resume_at else None
            if self._spent(progress) >= max_calls:
                return  # the checkpoint says: this phase, from its start
            # Not prefetched: the next page is asked for only when the cap allows its call.
            pages = self.client.iter_invoice_pages(
                connection, modified_since=progress.phase_since, **filters
            )
            async for page in pages:
                if page.resume_from is not None:
                    progress.phase_since = page.resume_from
                await self._compare_and_store(connection, progress, page)
                # After a phase's last page the generator ends without another call.
                if self._spent(progress) >= max_calls and not _last_page(page):
                    return  # the checkpoint stays: the next sweep continues here
        progress.checkpoint_base = None  # a whole cycle: the next sweep starts over

    def _spent(self, progress: RunProgress) -> int:
        """Calls this run has made (earlier attempts of it included)."""
        return progress.api_calls_before + self.client.api_calls

    async def _compare_and_store(
        self, connection: Connection, progress: RunProgress, page: XeroInvoicePage
    ) -> None:
        """One page: which of our invoices differ although their UpdatedDateUTC is the one we
        hold (found), then the page stored with those rewritten (corrected). Invoices whose
        timestamp moved are stored as any sync would; ones we do not hold are left alone."""
        pairs: list[tuple[Any, JsonText]] = list(zip(page.invoices, page.raw, strict=True))
        async with self.session_factory() as session:
            stored = await LedgerRepository(session).stored_documents(
                connection.id, [invoice.invoice_id for invoice, _ in pairs]
            )
        ours = [(invoice, raw) for invoice, raw in pairs if invoice.invoice_id in stored]
        silent = {
            invoice.invoice_id
            for invoice, raw in ours
            if stored[invoice.invoice_id][0] == invoice.updated_date_utc
            and _document(bytes(raw)) != _document(stored[invoice.invoice_id][1])
        }
        progress.found += len(silent)
        await self.invoices.store(connection, progress, ours, None, rewrite=silent)
        progress.corrected += len(silent)
