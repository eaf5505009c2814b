"""`XeroSyncService`: fetch, de-duplicate and upsert a connection's invoices and accounts,
recording every run."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.aio import prefetch
from src.core.database import JsonText, utcnow
from src.core.errors import LedgersyncError
from src.domains.external_accounting.base.sync import ConnectionSyncResult, StartedSync
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.exceptions import (
    ProviderRateLimited,
    SyncCrashed,
    SyncLeaseLost,
)
from src.domains.external_accounting.ledger.models import SyncRun
from src.domains.external_accounting.ledger.repository import (
    InvoiceRecord,
    LedgerRepository,
    LineRecord,
    StoredVersion,
)
from src.domains.external_accounting.xero.data.accounting_client import XeroAccountingClient
from src.domains.external_accounting.xero.data.xero_models import (
    XeroAccount,
    XeroInvoice,
    XeroLineItem,
)

logger = logging.getLogger(__name__)

INVOICE_TYPES = ("ACCPAY", "ACCREC")
# Xero's If-Modified-Since has one-second resolution and unknown inclusiveness: re-read one
# second before the cursor and let the upserts absorb what was already stored.
CURSOR_OVERLAP = timedelta(seconds=1)
# How often a live run beats while it waits (call limiter, Retry-After, backoff): well inside
# STALE_RUN_AFTER, so a long legitimate wait is never taken for a dead run.
HEARTBEAT_EVERY_S = 60.0


def months_ago(today: date, months: int) -> date:
    """The same day `months` calendar months earlier (clamped to the month's last day)."""
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    month += 1
    for day in (today.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    return date(year, month, 28)


@dataclass
class RunProgress:
    """Counters of a run, written to its `sync_runs` row after every page."""

    run_id: uuid.UUID
    # The run's fencing token: every write of the run is conditional on still holding it.
    lease: uuid.UUID
    connection_id: uuid.UUID
    # An incremental run re-reads the second before its cursor; those unchanged re-reads are
    # not news and do not count. A full run counts every invoice it covered.
    count_unchanged: bool = True
    started: float = field(default_factory=time.monotonic)
    # Counting each invoice once without remembering ids (memory stays flat whatever the size):
    # an invoice already written or verified by this run has `synced_at` at or after this.
    started_at: datetime = field(default_factory=utcnow)
    # Full syncs: which phase is running and its keyset position, saved with every page.
    checkpoint_base: dict[str, Any] | None = None
    phase: int = 0
    phase_since: datetime | None = None

    def checkpoint(self) -> dict[str, Any] | None:
        if self.checkpoint_base is None:
            return None
        return {
            **self.checkpoint_base,
            "phase": self.phase,
            "since": self.phase_since.isoformat() if self.phase_since else None,
            "newest": self.newest.isoformat() if self.newest else None,
        }

    count: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    newest: datetime | None = None

    def note_updated_at(self, moment: datetime | None) -> None:
        if moment is not None and (self.newest is None or moment > self.newest):
            self.newest = moment


def invoice_record(
    connection: Connection,
    row_id: uuid.UUID,
    invoice: XeroInvoice,
    raw: JsonText,
    synced_at: datetime,
) -> InvoiceRecord:
    """The `invoices` row of a Xero invoice."""
    contact = invoice.contact
    return InvoiceRecord(
        row_id,
        connection.organization_id,
        connection.id,
        invoice.invoice_id,
        invoice.invoice_number,
        invoice.type,
        invoice.status,
        contact.contact_id if contact else None,
        contact.name if contact else None,
        invoice.reference,
        invoice.date,
        invoice.due_date,
        invoice.fully_paid_on_date,
        invoice.line_amount_types,
        invoice.currency_code,
        invoice.currency_rate,
        invoice.sub_total,
        invoice.total_tax,
        invoice.total,
        invoice.total_discount,
        invoice.amount_due,
        invoice.amount_paid,
        invoice.amount_credited,
        invoice.updated_date_utc,
        raw.decode(),
        synced_at,
    )


def _tracking_text(line: XeroLineItem) -> str:
    """The line's tracking categories as Xero sent them; a missing or null list is empty."""
    text = bytes(line.tracking).decode().strip()
    return "[]" if text in ("", "null") else text


def line_records(invoice_row_id: uuid.UUID, invoice: XeroInvoice) -> list[LineRecord]:
    """The `invoice_line_items` rows of a Xero invoice."""
    return [
        LineRecord(
            invoice_row_id,
            position,
            line.line_item_id,
            line.description,
            line.quantity,
            line.unit_amount,
            line.item_code,
            line.account_code,
            line.account_id,
            line.tax_type,
            line.tax_amount,
            line.line_amount,
            line.discount_rate,
            _tracking_text(line),
        )
        for position, line in enumerate(invoice.line_items)
    ]


def account_row(connection: Connection, account: XeroAccount, raw: JsonText) -> dict[str, Any]:
    """The `accounts` row of a Xero account."""
    return {
        "id": uuid.uuid4(),
        "organization_id": connection.organization_id,
        "connection_id": connection.id,
        "provider_id": account.account_id,
        "code": account.code,
        "name": account.name,
        "type": account.type,
        "class": account.class_,
        "status": account.status,
        "description": account.description,
        "bank_account_number": account.bank_account_number,
        "bank_account_type": account.bank_account_type,
        "currency_code": account.currency_code,
        "tax_type": account.tax_type,
        "reporting_code": account.reporting_code,
        "reporting_code_name": account.reporting_code_name,
        "system_account": account.system_account,
        "enable_payments_to_account": account.enable_payments_to_account,
        "provider_updated_at": account.updated_date_utc,
        "raw": raw,
        "synced_at": utcnow(),
    }


class XeroSyncService:
    """Syncs one Xero connection's invoices and chart of accounts into our tables."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], client: XeroAccountingClient
    ) -> None:
        self.session_factory = session_factory
        self.client = client

    async def sync_invoices(
        self,
        connection: Connection,
        *,
        incremental: bool = True,
        invoice_types: Sequence[str] = INVOICE_TYPES,
        months_back: int = 12,
    ) -> ConnectionSyncResult:
        """Full (two-phase) or incremental invoice sync of one connection; a full sync that failed
        or paused earlier resumes from its checkpoint."""
        started = await self.start_invoices(
            connection,
            incremental=incremental,
            invoice_types=invoice_types,
            months_back=months_back,
        )
        return await started.run()

    async def start_invoices(
        self,
        connection: Connection,
        *,
        incremental: bool = True,
        invoice_types: Sequence[str] = INVOICE_TYPES,
        months_back: int = 12,
    ) -> StartedSync:
        """Take the invoice lease and decide what the run does; `SyncInProgress` when another
        run holds the lease. Nothing is fetched until the result's `run`."""
        types = sorted(set(invoice_types) or set(INVOICE_TYPES))
        # Filtering by type only when it narrows: both types is every invoice.
        type_filter = types if set(types) != set(INVOICE_TYPES) else None
        scope = "invoices:" + ",".join(types)
        run = self._new_run(connection, "invoices")
        async with self.session_factory() as session:
            repository = LedgerRepository(session)
            # The lease first (a run that died mid-sync is released by it, so its checkpoint is
            # resumed): what is read next no other run changes while we hold it.
            await repository.start_run(run)
            cursor = await repository.get_cursor(connection.id, scope)
            previous = await repository.latest_run(connection.id, "invoices")
            if previous is not None and previous.paused_until and previous.paused_until > utcnow():
                paused = self._still_paused(connection, previous)
                await session.rollback()  # no run: nothing will be called
                return StartedSync(run_id=None, run=lambda: _ready(paused))
            mode = "incremental" if incremental and cursor is not None else "full"
            checkpoint = previous.checkpoint if previous is not None else None
            if mode == "full" and not (
                checkpoint
                and checkpoint.get("scope") == scope
                and checkpoint.get("months_back") == months_back
            ):
                checkpoint = None
            if mode == "full" and checkpoint is not None:
                mode = "resume"
            window_start = (
                date.fromisoformat(checkpoint["window_start"])
                if checkpoint
                else months_ago(datetime.now(UTC).date(), months_back)
            )
            run.mode = mode
            run.params = {
                "incremental": incremental,
                "invoice_types": types,
                "months_back": months_back,
                "cursor": cursor.isoformat() if cursor else None,
                "resumed_from": str(previous.id) if checkpoint and previous else None,
            }
            await session.commit()
        progress = self._started(connection, run)
        progress.count_unchanged = mode != "incremental"
        if mode == "incremental" and cursor is not None:
            since = cursor - CURSOR_OVERLAP

            async def work() -> None:
                await self._invoice_phase(
                    connection,
                    progress,
                    scope,
                    cursor_phase=True,
                    types=type_filter,
                    modified_since=since,
                )

        else:
            # Where the cursor was when this full sync (or the one it resumes) began.
            first_cursor = (
                _moment(checkpoint.get("cursor_before"))
                if checkpoint is not None and "cursor_before" in checkpoint
                else cursor
            )
            full_started = (
                _moment(checkpoint.get("started_at")) if checkpoint is not None else None
            ) or (previous.started_at if checkpoint and previous else progress.started_at)

            async def work() -> None:
                await self._full_sync(
                    connection,
                    progress,
                    scope,
                    type_filter,
                    window_start,
                    months_back,
                    checkpoint,
                    cursor_before=first_cursor,
                    started_at=full_started,
                )

        return StartedSync(
            run_id=run.id,
            run=lambda: self._run(connection, progress, mode, work),
            release=lambda: self._release(progress),
        )

    async def _full_sync(
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
            resume_at = checkpoint.get("since") if checkpoint and index == first else None
            progress.phase_since = datetime.fromisoformat(resume_at) if resume_at else None
            filters = dict(phase)
            if progress.phase_since is not None:
                filters["modified_since"] = progress.phase_since
            await self._invoice_phase(connection, progress, scope, **filters)
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            await self._fence(repository, progress)
            if cursor_before is None:
                await repository.advance_cursor(connection.id, scope, started_at)

    def _still_paused(self, connection: Connection, paused: SyncRun) -> ConnectionSyncResult:
        """Xero's daily limit is still spent: answer without calling Xero at all."""
        return ConnectionSyncResult(
            connection_id=connection.id,
            tenant_name=connection.tenant_name,
            sync_run_id=paused.id,
            success=False,
            mode="paused",
            error=ProviderRateLimited.code,
            error_detail="Paused by Xero's daily call limit; the sync resumes after resume_after.",
            resume_after=paused.paused_until,
        )

    async def _invoice_phase(
        self,
        connection: Connection,
        progress: RunProgress,
        scope: str,
        *,
        cursor_phase: bool = False,
        **filters: Any,
    ) -> None:
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
            await self._store_invoices(
                connection, progress, pairs, scope if cursor_at else None, cursor_at=cursor_at
            )

    async def _store_invoices(
        self,
        connection: Connection,
        progress: RunProgress,
        pairs: list[tuple[XeroInvoice, JsonText]],
        cursor_scope: str | None,
        *,
        cursor_at: datetime | None = None,
    ) -> None:
        """One page in one transaction: the fence (the run still holds its lease, else nothing
        is written), invoices, their line items, the run's counters and (for incremental
        passes, whose pages come oldest change first) the cursor."""
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            await self._fence(repository, progress)
            versions = await repository.invoice_versions(
                connection.id, [i.invoice_id for i, _ in pairs]
            )
            now = utcnow()
            rows: list[InvoiceRecord] = []
            lines: list[LineRecord] = []
            replaced: list[uuid.UUID] = []
            verified: list[uuid.UUID] = []
            for invoice, raw in pairs:
                progress.note_updated_at(invoice.updated_date_utc)
                existing = versions.get(invoice.invoice_id)
                unchanged = (
                    existing is not None
                    and existing.provider_updated_at == invoice.updated_date_utc
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
                rows.append(invoice_record(connection, row_id, invoice, raw, now))
                lines.extend(line_records(row_id, invoice))
            await repository.upsert_invoices(rows, lines, replaced)
            await repository.mark_verified(verified, now)
            await self._beat(repository, progress)
            if cursor_scope is not None:
                moment = cursor_at or progress.newest
                if moment is not None:
                    await repository.advance_cursor(connection.id, cursor_scope, moment)

    async def sync_accounts(
        self, connection: Connection, *, account_types: Sequence[str] | None = None
    ) -> ConnectionSyncResult:
        """The chart of accounts (one call: Xero does not paginate it)."""
        started = await self.start_accounts(connection, account_types=account_types)
        return await started.run()

    async def start_accounts(
        self, connection: Connection, *, account_types: Sequence[str] | None = None
    ) -> StartedSync:
        """Take the accounts lease (`SyncInProgress` when held); `run` syncs the chart."""
        types = sorted(set(account_types or []))
        progress = await self._start(connection, "accounts", "full", {"account_types": types})

        async def work() -> None:
            accounts, raws = await self.client.get_accounts(connection, types=types or None)
            async with self.session_factory() as session, session.begin():
                repository = LedgerRepository(session)
                await self._fence(repository, progress)
                versions = await repository.account_versions(connection.id)
                rows = []
                for account, raw in zip(accounts, raws, strict=True):
                    progress.count += 1
                    progress.note_updated_at(account.updated_date_utc)
                    if account.account_id in versions:
                        if versions[account.account_id] == account.updated_date_utc:
                            progress.unchanged += 1
                            continue
                        progress.updated += 1
                    else:
                        progress.created += 1
                    rows.append(account_row(connection, account, raw))
                await repository.upsert_accounts(rows)
                await self._beat(repository, progress)

        return StartedSync(
            run_id=progress.run_id,
            run=lambda: self._run(connection, progress, "full", work),
            release=lambda: self._release(progress),
        )

    # -- run bookkeeping ---------------------------------------------------------------------

    def _new_run(self, connection: Connection, object_type: str) -> SyncRun:
        return SyncRun(
            organization_id=connection.organization_id,
            connection_id=connection.id,
            object_type=object_type,
            mode="full",
            params={},
            status="running",
        )

    async def _start(
        self, connection: Connection, object_type: str, mode: str, params: dict[str, Any]
    ) -> RunProgress:
        """Record a `running` run (the lease); `SyncInProgress` when another holds it."""
        run = self._new_run(connection, object_type)
        run.mode, run.params = mode, params
        async with self.session_factory() as session:
            await LedgerRepository(session).start_run(run)
            await session.commit()
        return self._started(connection, run)

    def _started(self, connection: Connection, run: SyncRun) -> RunProgress:
        assert run.lease is not None
        logger.info(
            "sync started",
            extra={
                "sync_run_id": str(run.id),
                "connection_id": str(connection.id),
                "object_type": run.object_type,
                "mode": run.mode,
            },
        )
        return RunProgress(run_id=run.id, lease=run.lease, connection_id=run.connection_id)

    async def _release(self, progress: RunProgress) -> None:
        """Give the lease back unused: the run never happened."""
        async with self.session_factory() as session, session.begin():
            await LedgerRepository(session).discard_run(progress.run_id, progress.lease)

    async def _run(
        self,
        connection: Connection,
        progress: RunProgress,
        mode: str,
        work: Callable[[], Awaitable[None]],
    ) -> ConnectionSyncResult:
        """Do a run's work while beating in the background, and record how it ended: whatever
        ends it (an error, a crash, a cancelled task) releases the lease it still holds."""
        heartbeat = asyncio.create_task(self._keep_beating(progress))
        try:
            await work()
        except LedgersyncError as error:
            heartbeat.cancel()
            return await self._finish(connection, progress, mode, error)
        except asyncio.CancelledError:
            heartbeat.cancel()
            # Task cancelled (client gone, shutdown): record it even if cancelled again meanwhile.
            await asyncio.shield(self._finish(connection, progress, mode, None, cancelled=True))
            raise
        except Exception as error:
            heartbeat.cancel()
            await self._finish(connection, progress, mode, SyncCrashed(type(error).__name__))
            raise
        heartbeat.cancel()
        return await self._finish(connection, progress, mode, None)

    async def _keep_beating(self, progress: RunProgress) -> None:
        """Beat every HEARTBEAT_EVERY_S while the run is alive: a page may wait on the limiter,
        Retry-After and backoff far longer than a page takes, and a silent run is declared dead.
        Stops once the lease is lost (the next page's fence stops the run)."""
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            try:
                async with self.session_factory() as session, session.begin():
                    held = await LedgerRepository(session).hold_lease(
                        progress.run_id, progress.lease
                    )
            except Exception as error:  # a missed beat is retried; the run must not die of it
                logger.warning(
                    "sync heartbeat failed",
                    extra={"sync_run_id": str(progress.run_id), "error": type(error).__name__},
                )
                continue
            if not held:
                return

    async def _fence(self, repository: LedgerRepository, progress: RunProgress) -> None:
        """First statements of every write transaction of a run: it still holds its lease, and
        its connection is still active (a run started from a stale copy of a connection that a
        disconnect has since purged must not write it back). The run's row is locked before the
        connection's, the order a disconnect takes them in too."""
        if not await repository.hold_lease(
            progress.run_id, progress.lease
        ) or not await repository.connection_active(progress.connection_id):
            raise SyncLeaseLost(
                "The sync stopped: it no longer holds its lease (its connection was "
                "disconnected, or it was taken for dead and another sync took over)."
            )

    async def _beat(self, repository: LedgerRepository, progress: RunProgress) -> None:
        """Write the run's counters and checkpoint inside a page's transaction."""
        await repository.hold_lease(
            progress.run_id,
            progress.lease,
            checkpoint=progress.checkpoint(),
            **self._counters(progress),
        )

    def _counters(self, progress: RunProgress) -> dict[str, Any]:
        return {
            "count": progress.count,
            "created": progress.created,
            "updated": progress.updated,
            "unchanged": progress.unchanged,
            "api_calls": self.client.api_calls,
            "last_modified": progress.newest,
        }

    async def _finish(
        self,
        connection: Connection,
        progress: RunProgress,
        mode: str,
        error: LedgersyncError | None,
        *,
        cancelled: bool = False,
    ) -> ConnectionSyncResult:
        duration = time.monotonic() - progress.started
        resume_after = None
        if isinstance(error, ProviderRateLimited):
            resume_after = datetime.fromisoformat(str(error.extra["resume_after"]))
        status = (
            "cancelled"
            if cancelled
            else "success"
            if error is None
            else "paused"
            if resume_after
            else "failed"
        )
        finished: dict[str, Any] = {
            **self._counters(progress),
            "status": status,
            "finished_at": utcnow(),
            "paused_until": resume_after,
            "error": "cancelled" if cancelled else error.code if error else None,
            "error_detail": "The sync was cancelled."
            if cancelled
            else error.detail
            if error
            else None,
        }
        if error is None and not cancelled:
            finished["checkpoint"] = None
        # The checkpoint stays as the last stored page left it (the page in hand may not have
        # been stored); a finished run needs none.
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            ours = await repository.finish_run(progress.run_id, progress.lease, **finished)
            if ours and error is None and not cancelled:
                await session.execute(
                    update(Connection)
                    .where(Connection.id == connection.id)
                    .values(last_sync_at=utcnow())
                )
        if not ours and not isinstance(error, SyncLeaseLost) and not cancelled:
            # Abandoned or cancelled meanwhile: that status stands, and so does the answer.
            error, status = SyncLeaseLost("The sync lost its lease before it ended."), "lost"
        log = logger.warning if error or cancelled else logger.info
        log(
            "sync finished",
            extra={
                "sync_run_id": str(progress.run_id),
                "connection_id": str(connection.id),
                "status": status,
                "count": progress.count,
                "created_count": progress.created,
                "updated_count": progress.updated,
                "api_calls": self.client.api_calls,
                "duration_s": round(duration, 3),
                "error": error.code if error else None,
            },
        )
        return ConnectionSyncResult(
            connection_id=connection.id,
            tenant_name=connection.tenant_name,
            sync_run_id=progress.run_id,
            success=error is None and not cancelled,
            mode=mode,
            count=progress.count,
            created=progress.created,
            updated=progress.updated,
            unchanged=progress.unchanged,
            api_calls=self.client.api_calls,
            duration_seconds=round(duration, 3),
            last_modified=progress.newest,
            error=error.code if error else None,
            error_detail=error.detail if error else None,
            resume_after=resume_after,
        )


async def _ready(result: ConnectionSyncResult) -> ConnectionSyncResult:
    return result


def _moment(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None
