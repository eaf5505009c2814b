"""`XeroSyncService`: what a sync of a Xero connection does — the full, incremental, resume or
pause decision for invoices, and the accounts sync. Paging and storing invoices is in
`invoice_phases`, the mapping to rows in `mapping`, the run's life in `ledger.runs`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.domains.external_accounting.base.sync import (
    ConnectionSyncResult,
    RunClaim,
    StartedSync,
    months_ago,
)
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.exceptions import ProviderRateLimited
from src.domains.external_accounting.ledger.models import (
    INVOICE_TYPES,
    Account,
    RunTrigger,
    SyncMode,
    SyncRun,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.rows import AccountRow
from src.domains.external_accounting.ledger.runs import RunProgress, SyncRuns, new_run
from src.domains.external_accounting.xero.data.accounting_client import (
    MAX_PAGE_SIZE,
    XeroAccountingClient,
)
from src.domains.external_accounting.xero.data.changed_invoices import (
    ALL_TYPES_SCOPE,
    ChangedInvoices,
    plan,
)
from src.domains.external_accounting.xero.data.invoice_phases import CURSOR_OVERLAP, InvoicePhases
from src.domains.external_accounting.xero.data.mapping import account_row, deleted_account_row
from src.domains.external_accounting.xero.data.reconcile import SWEEP_SCOPE, InvoiceSweep


class XeroSyncService:
    """Syncs one Xero connection's invoices and chart of accounts into our tables."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        client: XeroAccountingClient,
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.runs = SyncRuns(
            session_factory,
            lambda: client.api_calls,
            lambda: client.limit_wait_s,
            usage=client.usage,
        )
        self.invoices = InvoicePhases(session_factory, client, self.runs, page_size=page_size)
        self.changed = ChangedInvoices(session_factory, client, self.invoices)
        self.sweep = InvoiceSweep(session_factory, client, self.invoices)

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
        claim: RunClaim | None = None,
    ) -> StartedSync:
        """Take the invoice lease and decide what the run does; `SyncInProgress` when another
        run holds the lease. Nothing is fetched until the result's `run`. With `claim`, the run
        is that queued one (a background sync): resumed from its own checkpoint when an earlier
        attempt left one (paused, failed for a while, or its worker died)."""
        types = sorted(set(invoice_types) or set(INVOICE_TYPES))
        # Filtering by type only when it narrows: both types is every invoice.
        type_filter = types if set(types) != set(INVOICE_TYPES) else None
        scope = "invoices:" + ",".join(types)
        async with self.session_factory() as session:
            repository = LedgerRepository(session)
            # The lease first (a run that died mid-sync is released by it, so its checkpoint is
            # resumed): what is read next no other run changes while we hold it.
            if claim is None:
                run = new_run(connection, "invoices", mode=SyncMode.FULL, params={})
                await self.runs.take_lease(repository, run)
            else:
                run = await self.runs.claim(repository, claim)
            cursor = await repository.get_cursor(connection.id, scope)
            previous = (
                run
                if claim is not None and run.checkpoint
                else await repository.latest_run(connection.id, "invoices")
            )
            if previous is not None and previous.paused_until and previous.paused_until > utcnow():
                paused = _still_paused(connection, previous)
                await session.rollback()  # no run: nothing will be called
                return StartedSync(run_id=None, run=lambda: _ready(paused))
            mode = SyncMode.INCREMENTAL if incremental and cursor is not None else SyncMode.FULL
            checkpoint = previous.checkpoint if previous is not None else None
            if mode == SyncMode.FULL and not (
                checkpoint
                and checkpoint.get("scope") == scope
                and checkpoint.get("months_back") == months_back
            ):
                checkpoint = None
            if mode == SyncMode.FULL and checkpoint is not None:
                mode = SyncMode.RESUME
            window_start = (
                date.fromisoformat(checkpoint["window_start"])
                if checkpoint
                else months_ago(datetime.now(UTC).date(), months_back)
            )
            run.mode = mode
            run.params = {
                **({"background": True} if claim is not None else {}),
                "incremental": incremental,
                "invoice_types": types,
                "months_back": months_back,
                "cursor": cursor.isoformat() if cursor else None,
                "resumed_from": str(previous.id) if checkpoint and previous else None,
            }
            await session.commit()
        progress = self.runs.started(connection, run, claim)
        progress.count_unchanged = mode != SyncMode.INCREMENTAL
        if mode == SyncMode.INCREMENTAL and cursor is not None:
            since = cursor - CURSOR_OVERLAP

            async def work() -> None:
                await self.invoices.phase(
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
                await self.invoices.full_sync(
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

        return self._started_sync(connection, progress, work)

    async def sync_changed_invoices(
        self,
        connection: Connection,
        *,
        invoice_ids: Sequence[str],
        credit_note_ids: Sequence[str] = (),
        changes_since_cursor: int = 0,
    ) -> ConnectionSyncResult:
        """A targeted run (trigger `webhook`): the invoices named, and those of ours the credit
        notes named are allocated to, fetched by id; or an incremental pass when that takes
        fewer calls (`changes_since_cursor`: how many changes the caller knows of since the
        cursor). It takes the invoice lease like any sync (`SyncInProgress` when another holds
        it) and answers without calling Xero while a daily-limit pause lasts."""
        async with self.session_factory() as session:
            repository = LedgerRepository(session)
            run = new_run(
                connection,
                "invoices",
                mode=SyncMode.TARGETED,
                params={},
                trigger=RunTrigger.WEBHOOK,
            )
            await self.runs.take_lease(repository, run)
            previous = await repository.latest_run(connection.id, "invoices")
            if previous is not None and previous.paused_until and previous.paused_until > utcnow():
                await session.rollback()  # no run: nothing will be called
                return _still_paused(connection, previous)
            cursor = await repository.get_cursor(connection.id, ALL_TYPES_SCOPE)
            targets = plan(
                invoice_ids,
                credit_note_ids,
                cursor=cursor,
                changes_since_cursor=changes_since_cursor,
            )
            if targets.incremental_from is not None:
                run.mode = SyncMode.INCREMENTAL
            run.params = {
                "invoice_ids": len(targets.invoice_ids),
                "credit_note_ids": len(targets.credit_note_ids),
                "cursor": cursor.isoformat() if cursor else None,
            }
            await session.commit()
        progress = self.runs.started(connection, run)
        progress.count_unchanged = False

        async def work() -> None:
            await self.changed.sync(connection, progress, targets)

        return await self.runs.run(connection, progress, work)

    async def sync_accounts(
        self,
        connection: Connection,
        *,
        account_types: Sequence[str] | None = None,
    ) -> ConnectionSyncResult:
        """The chart of accounts (one call: Xero does not paginate it)."""
        started = await self.start_accounts(connection, account_types=account_types)
        return await started.run()

    async def start_accounts(
        self,
        connection: Connection,
        *,
        account_types: Sequence[str] | None = None,
        claim: RunClaim | None = None,
    ) -> StartedSync:
        """Take the accounts lease (`SyncInProgress` when held); `run` syncs the chart. With
        `claim`, the run is that queued one (a background sync)."""
        types = sorted(set(account_types or []))
        if claim is None:
            run = new_run(
                connection, "accounts", mode=SyncMode.FULL, params={"account_types": types}
            )
            progress = await self.runs.start(connection, run)
        else:
            async with self.session_factory() as session:
                run = await self.runs.claim(LedgerRepository(session), claim)
                await session.commit()
            progress = self.runs.started(connection, run, claim)
        progress.phase_name = "accounts"

        async def work() -> None:
            await self._store_accounts(connection, progress, types)

        return self._started_sync(connection, progress, work)

    async def _store_accounts(
        self, connection: Connection, progress: RunProgress, types: list[str]
    ) -> None:
        """The chart in one transaction: only accounts that are new or whose content changed
        are written, each with its change recorded."""
        accounts, raws = await self.client.get_accounts(connection, types=types or None)
        async with self.session_factory() as session, session.begin():
            repository = LedgerRepository(session)
            await self.runs.fence(repository, progress)
            # Every stored account, deleted ones too: those the whole chart no longer lists.
            stored = {a.provider_id: a for a in await repository.connection_accounts(connection.id)}
            progress.pages += 1
            rows = []
            for account, raw in zip(accounts, raws, strict=True):
                progress.count += 1
                progress.note_updated_at(account.updated_date_utc)
                rows.append(account_row(connection, account, raw))
            if not types:
                rows += self._deleted_at_xero(progress, stored, {a.account_id for a in accounts})
            writes = await repository.upsert_accounts(
                connection.id, rows, run_id=progress.run_id, seen_at=utcnow()
            )
            progress.created += writes.created
            progress.updated += writes.updated
            progress.unchanged += writes.unchanged
            await self.runs.checkpoint(repository, progress)

    def _deleted_at_xero(
        self, progress: RunProgress, stored: dict[str, Account], listed: set[str]
    ) -> list[AccountRow]:
        """Xero hard-deletes unused accounts and says nothing (no timestamp moves): an account
        the whole chart no longer lists is marked deleted, kept with its data. Only a list of
        every type can tell; it costs no call beyond the sync's own."""
        noticed_at = utcnow()
        rows = [
            deleted_account_row(account, noticed_at=noticed_at)
            for provider_id, account in stored.items()
            if provider_id not in listed and account.deleted_at is None
        ]
        progress.found += len(rows)
        progress.corrected += len(rows)
        return rows

    async def start_reconcile(
        self,
        connection: Connection,
        *,
        window_days: int,
        max_calls: int,
        claim: RunClaim | None = None,
    ) -> StartedSync:
        """Take the invoice lease for a reconciliation sweep (`SyncInProgress` when held): it
        goes on from where the connection's last sweep stopped at its call cap, if one did."""
        async with self.session_factory() as session:
            repository = LedgerRepository(session)
            if claim is None:
                run = new_run(
                    connection,
                    "invoices",
                    mode=SyncMode.RECONCILE,
                    params={},
                    trigger=RunTrigger.RECONCILE,
                )
                await self.runs.take_lease(repository, run)
            else:
                run = await self.runs.claim(repository, claim)
            # A resumed attempt of this run goes on from its own checkpoint.
            previous = (
                run
                if run.checkpoint
                else await repository.latest_run(connection.id, "invoices", reconcile=True)
            )
            checkpoint = previous.checkpoint if previous is not None else None
            if not checkpoint or checkpoint.get("scope") != SWEEP_SCOPE:
                checkpoint = None
            run.params = {
                **(run.params or {}),
                "window_days": window_days,
                "max_calls": max_calls,
                "continued_from": str(previous.id) if checkpoint and previous else None,
            }
            await session.commit()
        progress = self.runs.started(connection, run, claim)

        async def work() -> None:
            await self.sweep.sweep(
                connection,
                progress,
                window_days=window_days,
                max_calls=max_calls,
                checkpoint=checkpoint,
            )

        return self._started_sync(connection, progress, work)

    def _started_sync(
        self,
        connection: Connection,
        progress: RunProgress,
        work: Callable[[], Awaitable[None]],
    ) -> StartedSync:
        return StartedSync(
            run_id=progress.run_id,
            run=lambda: self.runs.run(connection, progress, work),
            release=lambda: self.runs.release(progress),
        )


def _still_paused(connection: Connection, paused: SyncRun) -> ConnectionSyncResult:
    """Xero's daily limit is still spent: answer without calling Xero at all."""
    return ConnectionSyncResult(
        connection_id=connection.id,
        tenant_name=connection.tenant_name,
        sync_run_id=paused.id,
        success=False,
        mode=SyncMode.PAUSED.value,
        error=ProviderRateLimited.code,
        error_detail="Paused by Xero's daily call limit; the sync resumes after resume_after.",
        resume_after=paused.paused_until,
    )


async def _ready(result: ConnectionSyncResult) -> ConnectionSyncResult:
    return result


def _moment(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None
