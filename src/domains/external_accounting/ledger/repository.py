"""All SQL about synced records and sync bookkeeping (runs, leases, cursors).

Over 400 lines on purpose: a page's transaction fences the run and writes its records through
one repository on one session, and the PostgreSQL COPY path beside the portable one is most of
the length. The order these statements run in is `ledger.runs`'s."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import inline_constant, rows_matched, utcnow
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.ledger.changes import (
    ACCOUNT_FIELDS,
    INVOICE_FIELDS,
    LINE_FIELDS,
    AccountWrites,
    StoredAccount,
    StoredInvoice,
    Values,
    account_changes,
    invoice_changes,
)
from src.domains.external_accounting.ledger.filters import InvoiceFilters
from src.domains.external_accounting.ledger.models import (
    MAYBE_UNFINISHED_STATUSES,
    Account,
    Invoice,
    InvoiceLineItem,
    LedgerChange,
    RecordType,
    RunStatus,
    RunTrigger,
    SyncCursor,
    SyncMode,
    SyncRun,
)
from src.domains.external_accounting.ledger.postgres_bulk import (
    Stage,
    stage_for,
    staged_records,
)
from src.domains.external_accounting.ledger.rows import (
    AccountRow,
    ChangeRow,
    InvoiceRow,
    LineItemRow,
    Row,
    as_params,
    as_records,
    columns,
)
from src.domains.external_accounting.ledger.sqlite_bulk import insert_rows

_INVOICE_STAGE = stage_for(cast(Table, Invoice.__table__), InvoiceRow)
_LINE_ITEM_STAGE = stage_for(cast(Table, InvoiceLineItem.__table__), LineItemRow)
# What an upsert of a stored record never changes: its identity and whose it is.
_KEEP = frozenset({"id", "organization_id", "connection_id", "provider_id"})


def _sqlite_upsert_of(table: Table) -> Any:
    """`INSERT ... ON CONFLICT (connection_id, provider_id) DO UPDATE` of every column but
    `_KEEP`, for SQLite's bulk path (built once: `sqlite_bulk` keeps a plan per statement)."""
    statement = sqlite_insert(table)
    return statement.on_conflict_do_update(
        index_elements=["connection_id", "provider_id"],
        set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in _KEEP},
    )


_SQLITE_INVOICE_UPSERT = _sqlite_upsert_of(cast(Table, Invoice.__table__))
_LINE_ITEM_INSERT = insert(cast(Table, InvoiceLineItem.__table__))
_CHANGE_INSERT = insert(cast(Table, LedgerChange.__table__))


async def copy_to_stage(driver: Any, stage: Stage, rows: Sequence[Row]) -> None:
    """PostgreSQL: create the stage if this session has none (else empty it) and COPY `rows`
    into it (`postgres_bulk`)."""
    await driver.execute(stage.create)
    await driver.copy_records_to_table(
        stage.name, records=staged_records(stage, rows), columns=columns(type(rows[0]))
    )


# A select of any columns: `_below_horizon` keeps its type.
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


class StoredVersion(NamedTuple):
    """What the sync needs to know of an invoice already stored."""

    id: uuid.UUID
    provider_updated_at: datetime
    synced_at: datetime


def _labelled(model: Any, fields: dict[str, Any]) -> list[Any]:
    """The model's columns of these fields, labelled by field name (`class_` is `class`)."""
    return [getattr(model, name).label(name) for name in fields]


# A run whose heartbeat is older than this is taken to have died (crash, deploy) and its lease
# is released; a live run beats at every page and, while it waits (limiter, retries), from a
# background task.
STALE_RUN_AFTER = timedelta(minutes=15)


class LedgerRepository:
    """Invoices, line items, accounts, sync runs and cursors."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _one_of(self, column: Any, values: Sequence[Any]) -> Any:
        """`column IN values`. On PostgreSQL as `= ANY(:array)`: one parameter, so the prepared
        statement keeps using the index (a 1,000-parameter IN list got a generic plan that scanned
        the table, and a 100k-invoice sync spent most of its time there)."""
        if self.session.get_bind().dialect.name != "postgresql":
            return column.in_(values)
        element = PG_UUID(as_uuid=True) if values and isinstance(values[0], uuid.UUID) else String()
        return column == any_(bindparam("one_of", list(values), type_=ARRAY(element)))

    async def _upsert(
        self, model: type[Invoice] | type[Account], rows: Sequence[dict[str, Any]]
    ) -> None:
        """`INSERT ... ON CONFLICT (connection_id, provider_id) DO UPDATE` of a page of rows as one
        Core executemany (the driver batches it; the ORM bulk path ran row by row)."""
        table = cast(Table, model.__table__)
        insert_for = (
            postgres_insert
            if self.session.get_bind().dialect.name == "postgresql"
            else sqlite_insert
        )
        statement = insert_for(table)
        statement = statement.on_conflict_do_update(
            index_elements=["connection_id", "provider_id"],
            set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in _KEEP},
        )
        await self.session.execute(statement, list(rows))

    # -- writing records ---------------------------------------------------------------------

    async def invoice_versions(
        self, connection_id: uuid.UUID, provider_ids: Sequence[str]
    ) -> dict[str, StoredVersion]:
        """provider id → what is stored of it, for the invoices already stored."""
        result = await self.session.execute(
            select(
                Invoice.provider_id, Invoice.id, Invoice.provider_updated_at, Invoice.synced_at
            ).where(
                Invoice.connection_id == connection_id,
                self._one_of(Invoice.provider_id, provider_ids),
            )
        )
        return {
            row.provider_id: StoredVersion(row.id, row.provider_updated_at, row.synced_at)
            for row in result
        }

    async def stored_documents(
        self, connection_id: uuid.UUID, provider_ids: Sequence[str]
    ) -> dict[str, tuple[datetime, str]]:
        """provider id → (provider timestamp, the document as stored, verbatim text) of the
        invoices already stored: what the reconciliation sweep compares Xero's answer with."""
        result = await self.session.execute(
            select(
                Invoice.provider_id, Invoice.provider_updated_at, sql_cast(Invoice.raw, Text)
            ).where(
                Invoice.connection_id == connection_id,
                self._one_of(Invoice.provider_id, provider_ids),
            )
        )
        return {row[0]: (row[1], row[2]) for row in result}

    async def mark_verified(self, invoice_ids: Sequence[uuid.UUID], moment: datetime) -> None:
        """Invoices Xero confirmed unchanged: `synced_at` says when they were last checked."""
        if invoice_ids:
            await self.session.execute(
                update(Invoice)
                .where(self._one_of(Invoice.id, invoice_ids))
                .values(synced_at=moment)
                .execution_options(synchronize_session=False)
            )

    async def upsert_invoices(
        self,
        rows: Sequence[InvoiceRow],
        lines: Sequence[LineItemRow],
        replaced: Sequence[uuid.UUID],
        *,
        run_id: uuid.UUID | None,
        seen_at: datetime,
    ) -> None:
        """Insert or update invoices by (connection, provider id), replace their line items, and
        record what changed (`ledger_changes`), all in the caller's transaction so an invoice,
        its lines and its history are never half-written. `replaced`: the rows already stored,
        whose old values are read first (locked on PostgreSQL: a concurrent writer of the same
        invoice waits, then reads this version, so versions never fork)."""
        if not rows:
            return
        stored = await self._stored_invoices(replaced)
        rows, recorded = invoice_changes(rows, lines, stored, run_id=run_id, seen_at=seen_at)
        driver = await self._asyncpg()
        if driver is not None:
            await self._copy_upsert_invoices(driver, rows, lines, replaced)
            await self._copy_changes(driver, recorded)
            return
        await insert_rows(self.session, _SQLITE_INVOICE_UPSERT, rows, {"raw"})
        if replaced:
            await self.session.execute(
                delete(InvoiceLineItem).where(InvoiceLineItem.invoice_id.in_(replaced))
            )
        await insert_rows(self.session, _LINE_ITEM_INSERT, lines, {"tracking"})
        await self._insert_changes(recorded)

    async def _stored_invoices(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StoredInvoice]:
        """The reported fields and lines of these stored invoices: one query for the invoices,
        one for their lines."""
        if not ids:
            return {}
        invoices = await self.session.execute(
            select(Invoice.id, Invoice.version, *_labelled(Invoice, INVOICE_FIELDS))
            .where(self._one_of(Invoice.id, ids))
            .with_for_update()
        )
        lines: dict[uuid.UUID, list[Values]] = {}
        result = await self.session.execute(
            select(InvoiceLineItem.invoice_id, *_labelled(InvoiceLineItem, LINE_FIELDS))
            .where(self._one_of(InvoiceLineItem.invoice_id, ids))
            .order_by(InvoiceLineItem.invoice_id, InvoiceLineItem.position)
        )
        for invoice_id, *values in result:
            lines.setdefault(invoice_id, []).append(tuple(values))
        return {
            invoice_id: StoredInvoice(version, tuple(values), lines.get(invoice_id, []))
            for invoice_id, version, *values in invoices
        }

    async def _asyncpg(self) -> Any | None:
        """On PostgreSQL, the asyncpg connection under this session's open transaction."""
        if self.session.get_bind().dialect.name != "postgresql":
            return None
        connection = await self.session.connection()
        driver: Any = (await connection.get_raw_connection()).driver_connection
        if not driver.is_in_transaction():
            # SQLAlchemy begins the driver's transaction lazily, at its first statement: a COPY
            # sent before one would commit on its own.
            await self.session.execute(select(1))
        return driver

    async def _copy_upsert_invoices(
        self,
        driver: Any,
        rows: Sequence[InvoiceRow],
        lines: Sequence[LineItemRow],
        replaced: Sequence[uuid.UUID],
    ) -> None:
        """PostgreSQL: binary `COPY` of the page into a session-private stage table, one
        set-based `INSERT ... SELECT ... ON CONFLICT DO UPDATE` from it, and the line items the
        same way (`postgres_bulk`). Per-row parameter binding, not the database, was most of a
        page's cost."""
        names = columns(InvoiceRow)
        await copy_to_stage(driver, _INVOICE_STAGE, rows)
        listed = ", ".join(f'"{c}"' for c in names)
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in names if c not in _KEEP)
        await driver.execute(
            f"INSERT INTO invoices ({listed}) SELECT {_INVOICE_STAGE.select} "
            f"FROM {_INVOICE_STAGE.name} ON CONFLICT (connection_id, provider_id) DO UPDATE SET"
            f" {updates}"
        )
        if replaced:
            await driver.execute(
                "DELETE FROM invoice_line_items WHERE invoice_id = ANY($1::uuid[])", list(replaced)
            )
        if lines:
            await copy_to_stage(driver, _LINE_ITEM_STAGE, lines)
            listed = ", ".join(f'"{c}"' for c in columns(LineItemRow))
            await driver.execute(
                f"INSERT INTO invoice_line_items ({listed}) SELECT {_LINE_ITEM_STAGE.select} "
                f"FROM {_LINE_ITEM_STAGE.name}"
            )

    async def _copy_changes(self, driver: Any, recorded: Sequence[ChangeRow]) -> None:
        """PostgreSQL: change rows by `COPY`; `id` and `commit_xid` come from their defaults
        (the sequence, and this transaction's id)."""
        if recorded:
            await driver.copy_records_to_table(
                "ledger_changes", records=as_records(recorded), columns=columns(ChangeRow)
            )

    async def connection_accounts(self, connection_id: uuid.UUID) -> list[Account]:
        """Every stored account of a connection, deleted ones included."""
        result = await self.session.execute(
            select(Account).where(Account.connection_id == connection_id)
        )
        return list(result.scalars())

    async def _insert_changes(self, recorded: Sequence[ChangeRow]) -> None:
        """Change rows, by COPY on PostgreSQL, else SQLite's bulk insert."""
        if not recorded:
            return
        driver = await self._asyncpg()
        if driver is not None:
            await self._copy_changes(driver, recorded)
            return
        await insert_rows(self.session, _CHANGE_INSERT, recorded, {"changes"})

    async def add_changes(self, recorded: Sequence[ChangeRow]) -> None:
        """Record changes written some other way (tests of the feed's ordering use it)."""
        await self._insert_changes(recorded)

    async def _stored_accounts(self, connection_id: uuid.UUID) -> dict[str, StoredAccount]:
        """The connection's stored accounts by provider id, locked on PostgreSQL like invoices."""
        result = await self.session.execute(
            select(
                Account.provider_id,
                Account.id,
                Account.version,
                *_labelled(Account, ACCOUNT_FIELDS),
            )
            .where(Account.connection_id == connection_id)
            .with_for_update()
        )
        return {
            provider_id: StoredAccount(account_id, version, tuple(values))
            for provider_id, account_id, version, *values in result
        }

    async def upsert_accounts(
        self,
        connection_id: uuid.UUID,
        rows: Sequence[AccountRow],
        *,
        run_id: uuid.UUID | None,
        seen_at: datetime,
    ) -> AccountWrites:
        """Write the accounts that are new or whose content changed (nothing else), and record
        each change, in the caller's transaction. An account written with status DELETED is
        recorded as `deleted`."""
        stored = await self._stored_accounts(connection_id)
        writes = account_changes(rows, stored, run_id=run_id, seen_at=seen_at)
        if writes.rows:
            await self._upsert(Account, as_params(writes.rows))
        await self._insert_changes(writes.changes)
        return writes

    async def purge_connection(self, connection_id: uuid.UUID) -> None:
        """Delete everything synced for a connection (line items go with their invoices), and
        the checkpoints that say how far its runs got: nothing of theirs is stored any more."""
        for table in (Invoice, Account, SyncCursor, LedgerChange):
            await self.session.execute(delete(table).where(table.connection_id == connection_id))
        await self.session.execute(
            update(SyncRun)
            .where(SyncRun.connection_id == connection_id)
            .values(checkpoint=None)
            .execution_options(synchronize_session=False)
        )

    # -- cursors -----------------------------------------------------------------------------

    async def get_cursor(self, connection_id: uuid.UUID, scope: str) -> datetime | None:
        cursor = await self.session.get(SyncCursor, (connection_id, scope))
        return cursor.modified_since if cursor else None

    async def advance_cursor(self, connection_id: uuid.UUID, scope: str, moment: datetime) -> None:
        """Move the cursor forward (never back)."""
        cursor = await self.session.get(SyncCursor, (connection_id, scope))
        if cursor is None:
            self.session.add(
                SyncCursor(connection_id=connection_id, scope=scope, modified_since=moment)
            )
        elif moment > cursor.modified_since:
            cursor.modified_since = moment

    # -- runs --------------------------------------------------------------------------------

    async def release_dead_runs(self, connection_id: uuid.UUID, object_type: str) -> None:
        """A `running` run that stopped beating died (crash, kill, deploy): mark it failed, so
        its lease is free and its checkpoint can be resumed. Should it still be alive after all,
        its next page's fence sees the lease gone and it stops."""
        await self.session.execute(
            update(SyncRun)
            .where(
                SyncRun.connection_id == connection_id,
                SyncRun.object_type == object_type,
                SyncRun.status == RunStatus.RUNNING,
                SyncRun.heartbeat_at < utcnow() - STALE_RUN_AFTER,
            )
            .values(
                status=RunStatus.FAILED,
                error="abandoned",
                error_detail="The run stopped beating (its process died).",
                finished_at=utcnow(),
                lease=None,
            )
        )

    async def add_running_run(self, run: SyncRun) -> bool:
        """Insert a `running` run with a fresh lease token; the row is also the lease on
        (connection, object type). False, with the transaction rolled back, when a run already
        holds it."""
        run.status = RunStatus.RUNNING
        run.lease = uuid.uuid4()
        self.session.add(run)
        try:
            await self.session.flush()
        except IntegrityError:
            await self.session.rollback()
            return False
        return True

    async def add_queued_run(self, run: SyncRun) -> bool:
        """Insert a `queued` run (a background sync waiting for a worker). False, with the
        transaction rolled back, when the connection already has one of the object type (the
        partial unique index `uq_sync_runs_one_queued` decides, so two requests cannot both)."""
        run.status = RunStatus.QUEUED
        self.session.add(run)
        try:
            await self.session.flush()
        except IntegrityError:
            await self.session.rollback()
            return False
        return True

    async def add_queued_runs(self, runs: Sequence[SyncRun]) -> set[uuid.UUID]:
        """Insert `queued` runs (not yet in the session) in one statement; the ids inserted. A
        run whose connection already has a queued one of its object type is skipped (the
        partial unique index `uq_sync_runs_one_queued` decides, as in `add_queued_run`). A run
        whose `started_at` is set and later than now is queued for that instant (the scheduler's
        look-ahead); the others start now."""
        if not runs:
            return set()
        table = cast(Table, SyncRun.__table__)
        now = utcnow()
        rows = []
        for run in runs:
            run.id = run.id or uuid.uuid4()
            run.status = RunStatus.QUEUED
            run.heartbeat_at = now
            run.started_at = max(run.started_at or now, now)
            rows.append(
                {
                    column.key: getattr(run, column.key)
                    for column in table.columns
                    if getattr(run, column.key) is not None
                }
            )
        postgres = self.session.get_bind().dialect.name == "postgresql"
        statement = (postgres_insert if postgres else sqlite_insert)(table)
        result = await self.session.execute(
            statement.values(rows).on_conflict_do_nothing().returning(table.c.id)
        )
        return set(result.scalars())

    async def unfinished_pairs(
        self, connection_ids: Collection[uuid.UUID]
    ) -> set[tuple[uuid.UUID, str]]:
        """(connection, object type) of these connections' runs that have not ended (what
        `unfinished_run` finds, for many connections in one query)."""
        if not connection_ids:
            return set()
        result = await self.session.execute(
            select(SyncRun.connection_id, SyncRun.object_type)
            .where(
                SyncRun.connection_id.in_(connection_ids),
                SyncRun.trigger != RunTrigger.WEBHOOK.value,
                self._unfinished(),
            )
            .distinct()
        )
        return {(connection_id, object_type) for connection_id, object_type in result.all()}

    async def set_run_jobs(self, job_ids: Mapping[uuid.UUID, int]) -> None:
        """Name each run's job (`set_run_job(only_if_none=True)` for many runs at once)."""
        if not job_ids:
            return
        table = cast(Table, SyncRun.__table__)
        await self.session.execute(
            update(table)
            .where(
                table.c.id == bindparam("run_id"),
                table.c.job_id.is_(None),
                # (Equalities, not IN: an executemany cannot expand a list.)
                or_(
                    *(
                        table.c.status == status
                        for status in (
                            RunStatus.QUEUED,
                            RunStatus.RUNNING,
                            RunStatus.PAUSED,
                            RunStatus.FAILED,
                        )
                    )
                ),
            )
            .values(job_id=bindparam("job")),
            [{"run_id": run_id, "job": job_id} for run_id, job_id in job_ids.items()],
        )

    def _unfinished(self) -> Any:
        """Runs that have not ended: queued, running, or paused with their resume scheduled.
        The first term only repeats the rest, as MAYBE_UNFINISHED_RUN_CONDITION word for word:
        it lets both planners read these from that partial index instead of every run."""
        return and_(
            SyncRun.status.in_([inline_constant(s.value) for s in MAYBE_UNFINISHED_STATUSES]),
            or_(
                SyncRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)),
                and_(SyncRun.status == RunStatus.PAUSED, SyncRun.job_id.is_not(None)),
            ),
        )

    async def unfinished_run(self, connection_id: uuid.UUID, object_type: str) -> SyncRun | None:
        """The connection's run of this object type that has not ended (queued, running, or
        paused with its resume scheduled), running first. A webhook's targeted run is not one:
        it covers only a few invoices, so a request queues its own run (which waits for it)."""
        result = await self.session.execute(
            select(SyncRun)
            .where(
                SyncRun.connection_id == connection_id,
                SyncRun.object_type == object_type,
                SyncRun.trigger != RunTrigger.WEBHOOK.value,
                self._unfinished(),
            )
            .order_by((SyncRun.status == RunStatus.RUNNING).desc(), SyncRun.started_at.desc())
            .limit(1)
        )
        return result.scalars().first()

    async def unfinished_background_runs(self) -> list[SyncRun]:
        """Every background run that has not ended, oldest first (what a restarted SQLite
        service finds). A synchronous run left `running` is not one: it may belong to another
        live process (the CLI, a benchmark worker), and is released when its heartbeat stops."""
        result = await self.session.execute(
            select(SyncRun)
            .where(
                or_(
                    SyncRun.status == RunStatus.QUEUED,
                    and_(self._unfinished(), SyncRun.job_id.is_not(None)),
                )
            )
            .order_by(SyncRun.started_at)
        )
        return list(result.scalars())

    async def run_by_id(self, run_id: uuid.UUID) -> SyncRun | None:
        """A run, whoever's, read afresh."""
        return await self.session.get(SyncRun, run_id, populate_existing=True)

    async def claim_run(
        self, run_id: uuid.UUID, job_id: int, job_attempt: int
    ) -> Literal["claimed", "busy", "not claimable"]:
        """Make a waiting run `running` with a fresh lease, for the job attempt that runs it: a
        queued or paused run that no other job is responsible for, or a run the same job's
        earlier attempt left running (its worker died: the lease is taken over, and the dead
        attempt, should it still be alive, is fenced off). "busy", with the transaction rolled
        back, when another run of the connection holds the lease."""
        waiting = and_(
            SyncRun.status.in_((RunStatus.QUEUED, RunStatus.PAUSED)),
            or_(SyncRun.job_id.is_(None), SyncRun.job_id == job_id),
        )
        orphaned = and_(
            SyncRun.status == RunStatus.RUNNING,
            SyncRun.job_id == job_id,
            SyncRun.job_attempt < job_attempt,
        )
        try:
            result = await self.session.execute(
                update(SyncRun)
                .where(SyncRun.id == run_id, or_(waiting, orphaned))
                .values(
                    status=RunStatus.RUNNING,
                    lease=uuid.uuid4(),
                    job_id=job_id,
                    job_attempt=job_attempt,
                    heartbeat_at=utcnow(),
                    finished_at=None,
                    paused_until=None,
                    error=None,
                    error_detail=None,
                )
                .execution_options(synchronize_session=False)
            )
        except IntegrityError:  # uq_sync_runs_one_running: another run holds the lease
            await self.session.rollback()
            return "busy"
        return "claimed" if rows_matched(result) == 1 else "not claimable"

    async def set_run_job(
        self, run_id: uuid.UUID, job_id: int, *, only_if_none: bool = False, **values: Any
    ) -> bool:
        """Name the job now responsible for a run that has not ended (and write `values`)."""
        query = update(SyncRun).where(SyncRun.id == run_id, self._unfinished_or_retryable())
        if only_if_none:
            query = query.where(SyncRun.job_id.is_(None))
        result = await self.session.execute(
            query.values(job_id=job_id, **values).execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    def _unfinished_or_retryable(self) -> Any:
        return SyncRun.status.in_(
            (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.FAILED)
        )

    async def reset_interrupted_run(self, run_id: uuid.UUID) -> None:
        """A run a previous process left queued or running goes back to `queued`, its lease
        and job forgotten (its checkpoint kept): a job of this process runs it again."""
        await self.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)))
            .values(status=RunStatus.QUEUED, lease=None, job_id=None, job_attempt=None)
            .execution_options(synchronize_session=False)
        )

    async def cancel_run(self, run_id: uuid.UUID, detail: str) -> bool:
        """Cancel a run that has not ended: a waiting one never runs, a running one loses its
        lease (its next page's fence stops it; what it stored stays, and so does its checkpoint).
        False when the run had already ended."""
        result = await self.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, self._unfinished())
            .values(
                status=RunStatus.CANCELLED,
                error="cancelled",
                error_detail=detail,
                finished_at=utcnow(),
                lease=None,
            )
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def running_run_id(self, connection_id: uuid.UUID, object_type: str) -> uuid.UUID | None:
        """The run holding the lease on (connection, object type), if any."""
        result = await self.session.execute(
            select(SyncRun.id).where(
                SyncRun.connection_id == connection_id,
                SyncRun.object_type == object_type,
                SyncRun.status == RunStatus.RUNNING,
            )
        )
        return result.scalar_one_or_none()

    async def connection_active(self, connection_id: uuid.UUID) -> bool:
        """Whether the connection is still active, read under a share lock on PostgreSQL (a
        disconnect's update waits for this transaction, or this read for the disconnect; SQLite
        serialises writers anyway, and its dialect leaves the lock clause out)."""
        result = await self.session.execute(
            select(Connection.status)
            .where(Connection.id == connection_id)
            .with_for_update(read=True)
        )
        return result.scalar_one_or_none() == ConnectionStatus.ACTIVE.value

    def _ours(self, run_id: uuid.UUID, lease: uuid.UUID) -> Any:
        return and_(
            SyncRun.id == run_id, SyncRun.status == RunStatus.RUNNING, SyncRun.lease == lease
        )

    async def hold_lease(self, run_id: uuid.UUID, lease: uuid.UUID, **values: Any) -> bool:
        """The fence: beat (and write `values`) only while the run is still `running` with this
        lease. False means the run lost it (declared dead, cancelled by a disconnect) and must
        write nothing more. On PostgreSQL the row stays locked to the end of the transaction, so
        a disconnect's fence waits for the page in flight, or the page for the disconnect."""
        return await self._update_ours(run_id, lease, {"heartbeat_at": utcnow(), **values})

    async def finish_run(self, run_id: uuid.UUID, lease: uuid.UUID, **values: Any) -> bool:
        """End a run that still holds its lease (releasing it); a run no longer ours (abandoned,
        cancelled) keeps the status it was given. False when it was not ours."""
        return await self._update_ours(
            run_id, lease, {"heartbeat_at": utcnow(), **values, "lease": None}
        )

    async def _update_ours(
        self, run_id: uuid.UUID, lease: uuid.UUID, values: dict[str, Any]
    ) -> bool:
        result = await self.session.execute(
            update(SyncRun)
            .where(self._ours(run_id, lease))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def discard_run(self, run_id: uuid.UUID, lease: uuid.UUID) -> None:
        """Give back a lease taken for a sync that never ran (another connection of the same
        request was busy): the run leaves no trace."""
        await self.session.execute(delete(SyncRun).where(self._ours(run_id, lease)))

    async def cancel_running_runs(self, connection_id: uuid.UUID, detail: str) -> None:
        """Fence off every running run of a connection (disconnect, purge): each stops at its
        next page's transaction instead of writing after the connection's data is gone. Runs
        waiting for a worker (queued, or paused until their resume) are cancelled too."""
        await self.session.execute(
            update(SyncRun)
            .where(SyncRun.connection_id == connection_id, self._unfinished())
            .values(
                status=RunStatus.CANCELLED,
                error="connection_disconnected",
                error_detail=detail,
                finished_at=utcnow(),
                lease=None,
                checkpoint=None,
            )
            .execution_options(synchronize_session=False)
        )

    async def latest_run(
        self, connection_id: uuid.UUID, object_type: str, *, reconcile: bool = False
    ) -> SyncRun | None:
        """The connection's most recent finished (or paused, or failed) run of an object type:
        of its syncs, or (`reconcile`) of its reconciliation sweeps. The two never resume each
        other's checkpoints. A webhook's targeted run counts only when paused (the daily limit
        is the tenant's): it must not hide the checkpoint of a full sync that stopped before it."""
        sweep = SyncRun.mode == SyncMode.RECONCILE.value
        result = await self.session.execute(
            select(SyncRun)
            .where(
                SyncRun.connection_id == connection_id,
                SyncRun.object_type == object_type,
                SyncRun.status.not_in((RunStatus.RUNNING, RunStatus.QUEUED)),
                or_(
                    SyncRun.trigger != RunTrigger.WEBHOOK.value,
                    SyncRun.status == RunStatus.PAUSED.value,
                ),
                sweep if reconcile else ~sweep,
            )
            .order_by(SyncRun.started_at.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def get_run(self, organization_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun | None:
        run = await self.session.get(SyncRun, run_id)
        return run if run is not None and run.organization_id == organization_id else None

    async def list_runs(self, organization_id: uuid.UUID | None, limit: int) -> list[SyncRun]:
        """The newest runs of an organisation (None: of every organisation, for operators)."""
        query = select(SyncRun)
        if organization_id is not None:
            query = query.where(SyncRun.organization_id == organization_id)
        result = await self.session.execute(query.order_by(SyncRun.started_at.desc()).limit(limit))
        return list(result.scalars())

    # -- reading -----------------------------------------------------------------------------

    async def list_invoices(
        self, organization_id: uuid.UUID, filters: InvoiceFilters
    ) -> list[Invoice]:
        """Invoices newest date first, keyset-paged by (date, id)."""
        query: Select[Invoice] = select(Invoice).where(Invoice.organization_id == organization_id)
        if filters.connection_id:
            query = query.where(Invoice.connection_id == filters.connection_id)
        if filters.types:
            query = query.where(Invoice.type.in_(filters.types))
        if filters.statuses:
            query = query.where(Invoice.status.in_(filters.statuses))
        if filters.contact_id:
            query = query.where(Invoice.contact_id == filters.contact_id)
        if filters.date_from:
            query = query.where(Invoice.date >= filters.date_from)
        if filters.date_to:
            query = query.where(Invoice.date <= filters.date_to)
        if filters.updated_since:
            query = query.where(Invoice.provider_updated_at >= filters.updated_since)
        if filters.after is not None:
            after_date, after_id = filters.after
            if after_date is None:
                query = query.where(and_(Invoice.date.is_(None), Invoice.id < after_id))
            else:
                query = query.where(
                    or_(
                        Invoice.date < after_date,
                        and_(Invoice.date == after_date, Invoice.id < after_id),
                        Invoice.date.is_(None),
                    )
                )
        query = query.order_by(Invoice.date.desc().nulls_last(), Invoice.id.desc())
        return list((await self.session.execute(query.limit(filters.limit))).scalars())

    async def get_invoice(
        self, organization_id: uuid.UUID, invoice_id: uuid.UUID
    ) -> Invoice | None:
        invoice = await self.session.get(Invoice, invoice_id)
        return (
            invoice if invoice is not None and invoice.organization_id == organization_id else None
        )

    async def line_items(self, invoice_id: uuid.UUID) -> list[InvoiceLineItem]:
        result = await self.session.execute(
            select(InvoiceLineItem)
            .where(InvoiceLineItem.invoice_id == invoice_id)
            .order_by(InvoiceLineItem.position)
        )
        return list(result.scalars())

    async def list_accounts(
        self,
        organization_id: uuid.UUID,
        *,
        types: Sequence[str],
        connection_id: uuid.UUID | None,
    ) -> list[Account]:
        """Accounts by code, optionally only some types or one connection's."""
        query = select(Account).where(Account.organization_id == organization_id)
        if types:
            query = query.where(Account.type.in_(types))
        if connection_id:
            query = query.where(Account.connection_id == connection_id)
        result = await self.session.execute(query.order_by(Account.code, Account.id))
        return list(result.scalars())

    # -- history and the change feed ---------------------------------------------------------

    async def changes_after(
        self,
        organization_id: uuid.UUID,
        after: tuple[int, int],
        limit: int,
        *,
        connection_id: uuid.UUID | None = None,
    ) -> list[LedgerChange]:
        """The organisation's changes (only one connection's, given `connection_id`) after the
        feed position `after` = (commit_xid, id), in commit order. On PostgreSQL only rows of
        transactions older than the oldest one still running are served: every transaction
        below that horizon has ended, so no change with a lower position can commit later and
        be skipped by a reader already past it. The horizon and the rows are read in one
        statement, i.e. from one snapshot."""
        position = tuple_(LedgerChange.commit_xid, LedgerChange.id)
        query = select(LedgerChange).where(
            LedgerChange.organization_id == organization_id,
            position > tuple_(literal(after[0], BigInteger), literal(after[1], BigInteger)),
        )
        if connection_id is not None:
            query = query.where(LedgerChange.connection_id == connection_id)
        query = self._below_horizon(query)
        query = query.order_by(LedgerChange.commit_xid, LedgerChange.id).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def latest_position(
        self, organization_id: uuid.UUID, connection_id: uuid.UUID
    ) -> tuple[int, int]:
        """The feed position of the connection's last change below the horizon (the one
        `changes_after` serves up to); (0, 0) when it has none."""
        query = select(LedgerChange.commit_xid, LedgerChange.id).where(
            LedgerChange.organization_id == organization_id,
            LedgerChange.connection_id == connection_id,
        )
        query = self._below_horizon(query).order_by(
            LedgerChange.commit_xid.desc(), LedgerChange.id.desc()
        )
        row = (await self.session.execute(query.limit(1))).first()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def _below_horizon(self, query: _Query) -> _Query:
        """On PostgreSQL: only changes of transactions older than the oldest one running."""
        if self.session.get_bind().dialect.name != "postgresql":
            return query
        horizon = sql_cast(
            sql_cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger
        )
        return query.where(LedgerChange.commit_xid < horizon)

    async def invoice_history(self, invoice_id: uuid.UUID) -> list[LedgerChange]:
        """An invoice's recorded versions, oldest first."""
        result = await self.session.execute(
            select(LedgerChange)
            .where(
                LedgerChange.record_id == invoice_id,
                LedgerChange.record_type == RecordType.INVOICE.value,
            )
            .order_by(LedgerChange.version, LedgerChange.id)
        )
        return list(result.scalars())
