"""Paging Xero's invoices into the ledger: one pass over a filter (a phase), the full sync's
phases in order, and the transaction that stores one page."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.aio import prefetch
from src.core.database import JsonText, utcnow
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.repository import LedgerRepository, StoredVersion
from src.domains.external_accounting.ledger.rows import InvoiceRow, LineItemRow
from src.domains.external_accounting.ledger.runs import RunProgress, SyncRuns
from src.domains.external_accounting.xero.data.accounting_client import XeroAccountingClient
from src.domains.external_accounting.xero.data.mapping import invoice_row, line_item_rows
from src.domains.external_accounting.xero.data.xero_models import XeroInvoice

# What each phase of a full sync is called in a run's live progress (`phase`); an incremental
# pass is "changes".
PHASE_NAMES = ("window", "outstanding", "changes")

# Xero's If-Modified-Since has one-second resolution and unknown inclusiveness: re-read one
# second before the cursor and let the upserts absorb what was already stored.
CURSOR_OVERLAP = timedelta(seconds=1)


class InvoicePhases:
    """Fetches pages of a connection's invoices and stores each in its own transaction."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        client: XeroAccountingClient,
        runs: SyncRuns,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.runs = runs

    async def full_sync(
        self,
        connection: Connection,
        progress: RunProgress,
        scope: str,
        type_filter: list[str] | None,
        window_start: date,
        months_back: int,
        checkpoint: dict[str, Any] | None,
        *,
        cursor_before: datetime | None,
        started_at: datetime,
    ) -> None:
        """Phase 1: everything dated inside the window. Phase 2: every invoice still outstanding
        and dated before the window (those inside it are phase 1's), so no invoice is fetched
        twice and a window covering the whole history costs phase 2 a single call.

        Phase 2 skips old invoices that are no longer AUTHORISED, so the full sync cannot move
        the incremental cursor past their changes: with a cursor, phase 3 is the incremental
        pass from it (an old invoice stored as AUTHORISED and paid since is caught there);
        without one nothing older is stored, and the cursor starts where this sync began (an
        invoice phase 2 stored and that changed afterwards changed after that)."""
        phases: list[dict[str, Any]] = [
            {"types": type_filter, "date_from": window_start},
            {
                "types": type_filter,
                "statuses": ["AUTHORISED"],
                "date_to": window_start - timedelta(days=1),
            },
        ]
        if cursor_before is not None:
            phases.append(
                {
                    "types": type_filter,
                    "modified_since": cursor_before - CURSOR_OVERLAP,
                    "cursor_phase": True,
                }
            )
        first = int(checkpoint["phase"]) if checkpoint else 0
        if checkpoint and checkpoint.get("newest"):
            progress.note_updated_at(datetime.fromisoformat(checkpoint["newest"]))
        progress.checkpoint_base = {
            "scope": scope,
            "months_back": months_back,
            "window_start": window_start.isoformat(),
            "cursor_before": cursor_before.isoformat() if cursor_before else None,
            "started_at": started_at.isoformat(),
        }
        for index, phase in enumerate(phases):
            if index < first:
                continue
            progress.phase = index
            progress.phase_name = PHASE_NAMES[index]
            resume_at = checkpoint.get("since") if checkpoint and index == first else None
            progress.phase_since = datetime.fromisoformat(resume_at) if resume_at else None
            filters = dict(phase)
            if progress.phase_since is not None:
                filters["modified_since"] = progress.phase_since
            await self.phase(connection, progress, scope, **filters)
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            await self.runs.fence(repository, progress)
            if cursor_before is None:
                await repository.advance_cursor(connection.id, scope, started_at)

    async def phase(
        self,
        connection: Connection,
        progress: RunProgress,
        scope: str,
        *,
        cursor_phase: bool = False,
        **filters: Any,
    ) -> None:
        """Every invoice matching `filters`, page by page; a cursor phase (pages oldest change
        first) also moves the incremental cursor with each page."""
        if progress.phase_name is None:
            progress.phase_name = "changes"
        async for page in prefetch(self.client.iter_invoice_pages(connection, **filters)):
            # After this page is stored, this phase can restart from `resume_from` without
            # missing anything (the client knows: keyset position, or a busy second's start).
            if page.resume_from is not None:
                progress.phase_since = page.resume_from
            pairs = list(zip(page.invoices, page.raw, strict=True))
            cursor_at = (
                page.resume_from + CURSOR_OVERLAP
                if cursor_phase and page.resume_from is not None
                else None
            )
            await self.store(
                connection, progress, pairs, scope if cursor_at else None, cursor_at=cursor_at
            )

    async def store(
        self,
        connection: Connection,
        progress: RunProgress,
        pairs: list[tuple[XeroInvoice, JsonText]],
        cursor_scope: str | None,
        *,
        cursor_at: datetime | None = None,
        rewrite: Collection[str] = (),
    ) -> None:
        """One page in one transaction: the fence (the run still holds its lease, else nothing
        is written), invoices, their line items, what changed in them (`ledger_changes`), the
        run's counters and (for incremental passes, whose pages come oldest change first) the
        cursor. Invoices named in `rewrite` (provider ids) are written even though their
        UpdatedDateUTC equals the stored one: the reconciliation sweep found their content
        changed silently."""
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            await self.runs.fence(repository, progress)
            versions = await repository.invoice_versions(
                connection.id, [i.invoice_id for i, _ in pairs]
            )
            now = utcnow()
            progress.pages += 1
            rows: list[InvoiceRow] = []
            lines: list[LineItemRow] = []
            replaced: list[uuid.UUID] = []
            verified: list[uuid.UUID] = []
            for invoice, raw in pairs:
                progress.note_updated_at(invoice.updated_date_utc)
                existing = versions.get(invoice.invoice_id)
                unchanged = (
                    existing is not None
                    and existing.provider_updated_at == invoice.updated_date_utc
                    and invoice.invoice_id not in rewrite
                )
                # Seen earlier in this run only if edited while the run paged: count it once.
                counted = existing is not None and existing.synced_at >= progress.started_at
                if not counted and (progress.count_unchanged or not unchanged):
                    progress.count += 1
                if unchanged:
                    progress.unchanged += 1
                    verified.append(existing.id)  # type: ignore[union-attr]
                    continue
                row_id = existing.id if existing else uuid.uuid4()
                if existing:
                    replaced.append(row_id)
                    progress.updated += 1
                else:
                    progress.created += 1
                versions[invoice.invoice_id] = StoredVersion(row_id, invoice.updated_date_utc, now)
                rows.append(
                    invoice_row(connection, row_id=row_id, invoice=invoice, raw=raw, synced_at=now)
                )
                lines.extend(line_item_rows(row_id, invoice))
            await repository.upsert_invoices(
                rows, lines, replaced, run_id=progress.run_id, seen_at=now
            )
            await repository.mark_verified(verified, now)
            await self.runs.checkpoint(repository, progress)
            if cursor_scope is not None:
                moment = cursor_at or progress.newest
                if moment is not None:
                    await repository.advance_cursor(connection.id, cursor_scope, moment)
