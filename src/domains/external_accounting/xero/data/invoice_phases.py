"""Paging Xero's invoices into the ledger: one pass over a filter (a phase), the full sync's
phases in order, and the transaction that stores one page."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from contextlib import aclosing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.aio import prefetch
from src.core.database import JsonText, utcnow
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.repository import LedgerRepository, StoredVersion
from src.domains.external_accounting.ledger.rows import InvoiceRow, LineItemRow
from src.domains.external_accounting.ledger.runs import RunProgress, SyncRuns
from src.domains.external_accounting.xero.data.accounting_client import (
    MAX_PAGE_SIZE,
    XeroAccountingClient,
)
from src.domains.external_accounting.xero.data.mapping import invoice_row, line_item_rows
from src.domains.external_accounting.xero.data.partitions import (
    CURSOR_PHASE,
    Partition,
    PartitionPlan,
    initial_partitions,
)
from src.domains.external_accounting.xero.data.xero_models import XeroInvoice, XeroInvoicePage

# What each phase of a full sync is called in a run's live progress (`phase`); an incremental
# pass is "changes".
PHASE_NAMES = ("window", "outstanding", "changes")

# Xero's If-Modified-Since has one-second resolution and unknown inclusiveness: re-read one
# second before the cursor and let the upserts absorb what was already stored.
CURSOR_OVERLAP = timedelta(seconds=1)

# How long the other partitions may go on with the call in hand after one failed (their pages
# are stored: less to fetch again) before they are cancelled.
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class _Fetched:
    """A partition's page on its way to the writer, or (no page) that the partition is done
    or split into `children` after its last page; and where its keyset stands."""

    key: str
    page: XeroInvoicePage | None
    since: datetime | None
    done: bool
    children: list[Partition]


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class InvoicePhases:
    """Fetches pages of a connection's invoices and stores each in its own transaction."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        client: XeroAccountingClient,
        runs: SyncRuns,
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.runs = runs
        self.page_size = page_size

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
        twice and a window covering the whole history costs phase 2 a single call. Both run
        side by side, as partitions (`partitions`) up to the tenant's in-flight limit.

        Phase 2 skips old invoices that are no longer AUTHORISED, so the full sync cannot move
        the incremental cursor past their changes: with a cursor, phase 3 is the incremental
        pass from it (an old invoice stored as AUTHORISED and paid since is caught there);
        without one nothing older is stored, and the cursor starts where this sync began (an
        invoice phase 2 stored and that changed afterwards changed after that)."""
        if checkpoint and checkpoint.get("newest"):
            progress.note_updated_at(datetime.fromisoformat(checkpoint["newest"]))
        progress.checkpoint_base = {
            "scope": scope,
            "months_back": months_back,
            "window_start": window_start.isoformat(),
            "cursor_before": cursor_before.isoformat() if cursor_before else None,
            "started_at": started_at.isoformat(),
        }
        partitions = initial_partitions(window_start, checkpoint)
        if any(not p.done for p in partitions):
            await self.partitioned(connection, progress, type_filter, partitions)
        if cursor_before is not None:
            progress.phase, progress.phase_name = CURSOR_PHASE, PHASE_NAMES[CURSOR_PHASE]
            progress.partitions = []
            resume_at = (
                checkpoint.get("since")
                if checkpoint and int(checkpoint.get("phase") or 0) == CURSOR_PHASE
                else None
            )
            since = datetime.fromisoformat(resume_at) if resume_at else None
            progress.phase_since = since
            await self.phase(
                connection,
                progress,
                scope,
                cursor_phase=True,
                types=type_filter,
                modified_since=since or cursor_before - CURSOR_OVERLAP,
            )
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            await self.runs.fence(repository, progress)
            if cursor_before is None:
                await repository.advance_cursor(connection.id, scope, started_at)

    async def partitioned(
        self,
        connection: Connection,
        progress: RunProgress,
        type_filter: list[str] | None,
        partitions: list[Partition],
    ) -> None:
        """Page the partitions side by side, at most the tenant's in-flight limit at once (each
        has one call in flight at most; the call limiter still decides when each starts), and
        store their pages one at a time in the order they arrived: one writer, so page
        transactions never contend (no deadlock on PostgreSQL, no wait for SQLite's single
        writer) and the checkpoint each saves is what the pages stored so far reached. A
        partition that fails stops the others; the pages already fetched are stored first, so
        each partition resumes from its own last page."""
        limits = self.client.throttle.limiter.limits
        plan = PartitionPlan(
            partitions,
            concurrency=max(1, limits.concurrent),
            page_size=self.page_size,
            today=utcnow().date(),
            per_minute=limits.minute,
            window_s=limits.window_s,
        )
        progress.phase = 0
        progress.phase_name = PHASE_NAMES[0 if plan.window_left() else 1]
        progress.partitions = plan.checkpoint_with("", None, False)
        queue: asyncio.Queue[_Fetched | None] = asyncio.Queue(maxsize=plan.concurrency)
        writer = asyncio.create_task(self._write(connection, progress, plan, queue))
        drivers: dict[asyncio.Task[None], Partition] = {}
        failure: BaseException | None = None
        try:
            while failure is None:
                while len(drivers) < plan.concurrency and (partition := plan.next()):
                    task = asyncio.create_task(
                        self._drive(connection, plan, partition, type_filter, queue)
                    )
                    drivers[task] = partition
                if not drivers:
                    break
                done, _ = await asyncio.wait(
                    {*drivers, writer}, return_when=asyncio.FIRST_COMPLETED
                )
                if writer in done:
                    writer.result()  # a store failed (lease lost, database): raised here
                    raise RuntimeError("the page writer stopped before the partitions")
                for task in done:
                    del drivers[task]
                    if failure is None and task.exception() is not None:
                        failure = task.exception()
        except BaseException:
            await _cancel(*drivers, writer)
            raise
        if drivers:
            # A failure stops every partition at its next page; the calls already in flight
            # were counted by Xero, so their pages are stored, within a grace period.
            plan.stopping = True
            await asyncio.wait(drivers, timeout=STOP_GRACE_S)
            await _cancel(*drivers)
        # What was fetched before a failure is stored all the same: less to fetch again.
        await queue.put(None)
        await writer
        if failure is not None:
            raise failure

    async def _drive(
        self,
        connection: Connection,
        plan: PartitionPlan,
        partition: Partition,
        type_filter: list[str] | None,
        queue: asyncio.Queue[_Fetched | None],
    ) -> None:
        """One partition's keyset, page by page, into the writer's queue; it stops at a page
        after which it splits (its children go on from there)."""
        pages = self.client.iter_invoice_pages(
            connection, page_size=self.page_size, **partition.filters(type_filter)
        )
        async with aclosing(pages):
            while True:
                asked = plan.clock()
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    break
                plan.fetched(asked, plan.clock() - asked, page.decode_s)
                if page.resume_from is not None:
                    partition.since = page.resume_from
                partition.remaining = page.remaining
                dates = [i.date for i in page.invoices if i.date is not None]
                if dates:
                    partition.page_dates = (min(dates), max(dates))
                done = page.remaining == 0
                await queue.put(_Fetched(partition.key, page, partition.since, done, []))
                if not done:
                    # Whether a split pays off depends on how long a page takes to store, too:
                    # the run's first decision waits for its first page to be stored.
                    await plan.first_write.wait()
                    if children := plan.split(partition):
                        split = _Fetched(partition.key, None, partition.since, False, children)
                        await queue.put(split)
                        return
                if plan.stopping:
                    return
        plan.finished(partition)
        await queue.put(_Fetched(partition.key, None, partition.since, True, []))

    async def _write(
        self,
        connection: Connection,
        progress: RunProgress,
        plan: PartitionPlan,
        queue: asyncio.Queue[_Fetched | None],
    ) -> None:
        """Store the partitions' pages in arrival order, each with the checkpoint it reached."""
        while (item := await queue.get()) is not None:
            if item.page is not None:
                progress.partitions = plan.checkpoint_with(item.key, item.since, item.done)
                progress.phase_name = PHASE_NAMES[0 if plan.window_left() else 1]
                pairs = list(zip(item.page.invoices, item.page.raw, strict=True))
                began = plan.clock()
                await self.store(connection, progress, pairs, None)
                plan.wrote(plan.clock() - began)
                plan.commit_page(item.key, item.since, item.done)
            elif item.done:
                plan.commit_done(item.key)
            if item.children:
                plan.commit_split(item.key, item.children)
            progress.partitions = plan.checkpoint_with("", None, False)

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
        async for page in prefetch(
            self.client.iter_invoice_pages(connection, page_size=self.page_size, **filters)
        ):
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
