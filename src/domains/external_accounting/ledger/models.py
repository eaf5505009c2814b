"""Provider-neutral copies of the customer's books (invoices, line items, accounts) and the
bookkeeping of syncs (runs, cursors)."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    FetchedValue,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, ExactDecimal, UTCDateTime, new_id, utcnow
from src.domains.external_accounting.connections import models as _connections  # noqa: F401  (FK targets)

# Exact on every backend (SQLite keeps the digits as text, see ExactDecimal).
Money = ExactDecimal(19, 4)
ExchangeRate = ExactDecimal(19, 10)
JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# An invoice's document as Xero sent it: `json` keeps the text verbatim (key order, number
# digits) and costs PostgreSQL far less to store than `jsonb`, and nothing queries inside it.
RawDocument = JSON()


def of_a_connection() -> ForeignKeyConstraint:
    """A row's connection and, through it, its organisation: one foreign key on both columns
    (gone with the connection, and with the organisation, whose connections go with it). It
    makes `organization_id` agree with the connection's, and it is one check per row written
    where a key on each column was two (a page writes 1,000 invoices and 1,000 changes)."""
    return ForeignKeyConstraint(
        ["connection_id", "organization_id"],
        ["connections.id", "connections.organization_id"],
        ondelete="CASCADE",
    )


# The kinds of invoice the ledger stores: receivable (ACCREC) and payable (ACCPAY).
INVOICE_TYPES = ("ACCPAY", "ACCREC")


class Invoice(Base):
    """An invoice as the provider holds it; VOIDED and DELETED ones are kept as tombstones."""

    __tablename__ = "invoices"
    __table_args__ = (
        of_a_connection(),
        UniqueConstraint("connection_id", "provider_id"),
        Index("ix_invoices_org_date", "organization_id", "date", "id"),
        Index("ix_invoices_org_updated", "organization_id", "provider_updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column()
    connection_id: Mapped[uuid.UUID] = mapped_column()
    provider_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    contact_id: Mapped[str | None] = mapped_column(String(64))
    contact_name: Mapped[str | None] = mapped_column(String(500))
    reference: Mapped[str | None] = mapped_column(Text)
    date: Mapped[dt.date | None] = mapped_column(Date)
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    fully_paid_on: Mapped[dt.date | None] = mapped_column(Date)
    line_amount_types: Mapped[str | None] = mapped_column(String(20))
    currency_code: Mapped[str | None] = mapped_column(String(3))
    currency_rate: Mapped[Decimal | None] = mapped_column(ExchangeRate)
    sub_total: Mapped[Decimal | None] = mapped_column(Money)
    total_tax: Mapped[Decimal | None] = mapped_column(Money)
    total: Mapped[Decimal | None] = mapped_column(Money)
    total_discount: Mapped[Decimal | None] = mapped_column(Money)
    amount_due: Mapped[Decimal | None] = mapped_column(Money)
    amount_paid: Mapped[Decimal | None] = mapped_column(Money)
    amount_credited: Mapped[Decimal | None] = mapped_column(Money)
    provider_updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    raw: Mapped[dict[str, Any]] = mapped_column(RawDocument)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The version of its last change recorded in `ledger_changes` (1: as first stored).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class InvoiceLineItem(Base):
    """A line of an invoice, identified by the invoice and its position; the set is replaced
    whenever its invoice is."""

    __tablename__ = "invoice_line_items"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    quantity: Mapped[Decimal | None] = mapped_column(Money)
    unit_amount: Mapped[Decimal | None] = mapped_column(Money)
    item_code: Mapped[str | None] = mapped_column(String(100))
    account_code: Mapped[str | None] = mapped_column(String(50))
    account_id: Mapped[str | None] = mapped_column(String(64))
    tax_type: Mapped[str | None] = mapped_column(String(50))
    tax_amount: Mapped[Decimal | None] = mapped_column(Money)
    line_amount: Mapped[Decimal | None] = mapped_column(Money)
    discount_rate: Mapped[Decimal | None] = mapped_column(Money)
    tracking: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)


class Account(Base):
    """An account of the chart of accounts; one deleted at the provider is kept as a tombstone
    (status DELETED, `deleted_at`), like a voided invoice."""

    __tablename__ = "accounts"
    __table_args__ = (of_a_connection(), UniqueConstraint("connection_id", "provider_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(index=True)
    connection_id: Mapped[uuid.UUID] = mapped_column()
    provider_id: Mapped[str] = mapped_column(String(64))
    code: Mapped[str | None] = mapped_column(String(50))
    name: Mapped[str | None] = mapped_column(String(300))
    type: Mapped[str | None] = mapped_column(String(30))
    class_: Mapped[str | None] = mapped_column("class", String(30))
    status: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    bank_account_number: Mapped[str | None] = mapped_column(String(100))
    bank_account_type: Mapped[str | None] = mapped_column(String(30))
    currency_code: Mapped[str | None] = mapped_column(String(3))
    tax_type: Mapped[str | None] = mapped_column(String(50))
    reporting_code: Mapped[str | None] = mapped_column(String(100))
    reporting_code_name: Mapped[str | None] = mapped_column(String(300))
    system_account: Mapped[str | None] = mapped_column(String(50))
    enable_payments_to_account: Mapped[bool | None] = mapped_column()
    provider_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    raw: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When a sync of the whole chart first missed it (Xero hard-deletes unused accounts); null
    # while the provider lists it (one that reappears is live again).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The version of its last change recorded in `ledger_changes` (1: as first stored).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class RecordType(StrEnum):
    """What a change is about."""

    INVOICE = "invoice"
    ACCOUNT = "account"


class ChangeKind(StrEnum):
    """What happened to the record: stored for the first time, changed, or (accounts) marked
    deleted (its status became DELETED; it is kept, like a voided invoice)."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class LedgerChange(Base):
    """One version of a synced invoice or account: what a sync's write changed, recorded in the
    same transaction as the write. The change feed reads these in commit order.

    `commit_xid` orders the feed on PostgreSQL, where `id` (a sequence) is not commit order: it
    is the writing transaction's id (`pg_current_xact_id()`, the column's server default), and
    rows are served only below the oldest transaction still running, so a transaction that took
    a lower id but commits later is never skipped. SQLite has one writer at a time, so `id` is
    commit order there and `commit_xid` is 0. The defaults are per database, in the migration."""

    __tablename__ = "ledger_changes"
    __table_args__ = (
        of_a_connection(),
        Index("ix_ledger_changes_feed", "organization_id", "commit_xid", "id"),
        Index("ix_ledger_changes_record", "record_id", "version"),
        # One connection's feed (the announcer's position and pages) and a purge's delete.
        Index("ix_ledger_changes_connection", "connection_id", "commit_xid", "id"),
        # Ids never reused on SQLite (a plain rowid reuses the highest after a delete).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    commit_xid: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    organization_id: Mapped[uuid.UUID] = mapped_column()
    connection_id: Mapped[uuid.UUID] = mapped_column()
    record_type: Mapped[str] = mapped_column(String(10))
    record_id: Mapped[uuid.UUID] = mapped_column()
    provider_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))
    version: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The sync run whose transaction wrote it.
    run_id: Mapped[uuid.UUID | None] = mapped_column()
    # {field: {"old": ..., "new": ...}}; money as exact decimal strings; `lines`: old and new
    # line lists when any line differs.
    changes: Mapped[dict[str, Any]] = mapped_column(RawDocument)


class RunStatus(StrEnum):
    """Where a sync run is: `queued` while it waits for a worker (a background sync, or a retry
    of a temporary failure), `running` while it holds its lease, then how it ended."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    # Also a run found dead (`error="abandoned"`).
    FAILED = "failed"
    # The provider's daily call limit stopped it; it resumes after `paused_until` (a background
    # run by itself: its job is scheduled for then).
    PAUSED = "paused"
    # Cancelled by a user, its task was cancelled, or its connection disconnected while it ran.
    CANCELLED = "cancelled"


# A run in one of these statuses has not ended: a background request finds it instead of
# queueing another (a paused run only while its resume is scheduled, i.e. it has a job).
UNFINISHED_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class SyncMode(StrEnum):
    """What a run does: everything in its window, what changed since the cursor, the rest of
    an interrupted full sync, or nothing yet (the daily limit's pause has not ended)."""

    FULL = "full"
    INCREMENTAL = "incremental"
    RESUME = "resume"
    PAUSED = "paused"
    # Only the invoices webhook events named, fetched by id (the cursor does not move).
    TARGETED = "targeted"
    # The reconciliation sweep: re-reads what timestamps cannot vouch for (open and recent
    # invoices, the whole chart) and corrects what differs; it never moves a cursor.
    RECONCILE = "reconcile"


class RunTrigger(StrEnum):
    """Why a run exists: someone asked (the API, the CLI, the demo), the scheduler queued
    it for a connection's slot, or Xero's webhook events asked for it. The scheduler tells them
    apart: a run it queued for one slot, however late, never stands in for the next slot; one
    asked for just before does; a webhook's never does (it covers only the invoices its events
    named, so the schedule stays the safety net for deliveries Xero dropped)."""

    REQUEST = "request"
    SCHEDULE = "schedule"
    WEBHOOK = "webhook"
    # The reconciliation sweep (nightly, or on demand): never stands in for a scheduled sync.
    RECONCILE = "reconcile"


# The runs that stand for a connection's schedule slot (not a webhook's fetch by id, not a
# reconciliation sweep), and of those the ones someone asked for: the scheduler's query
# (schedules/repository.py) repeats these conditions word for word so that both databases
# read the newest such run from the partial index below instead of every run of the history.
SLOT_RUN_CONDITION = f"trigger <> '{RunTrigger.WEBHOOK}' AND mode <> '{SyncMode.RECONCILE}'"
REQUESTED_RUN_CONDITION = f"{SLOT_RUN_CONDITION} AND trigger <> '{RunTrigger.SCHEDULE}'"
PAUSED_RUN_CONDITION = f"status = '{RunStatus.PAUSED}'"
# The reconciliation sweeps, whose scheduler reads each connection's last one every tick.
SWEEP_RUN_CONDITION = f"mode = '{SyncMode.RECONCILE}'"
# The runs that may not have ended (a paused one has not while its resume is scheduled): what
# queueing a sync looks for among a connection's runs, for every due sync of every tick.
MAYBE_UNFINISHED_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED)
MAYBE_UNFINISHED_RUN_CONDITION = "status IN ({})".format(
    ", ".join(f"'{status}'" for status in MAYBE_UNFINISHED_STATUSES)
)


def _runs_index(name: str, condition: str, *columns: str, unique: bool = False) -> Index:
    """A partial index of `condition`'s runs by connection and object type (then `columns`)."""
    return Index(
        name,
        "connection_id",
        "object_type",
        *columns,
        unique=unique,
        postgresql_where=text(condition),
        sqlite_where=text(condition),
    )


class SyncRun(Base):
    """One sync of one connection and object type: the history, and (while `running`) the lease
    that keeps two syncs of the same connection and object type from interleaving. Its status
    is a `RunStatus`."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_org_started", "organization_id", "started_at"),
        # A connection's runs of one object type, newest first (the runs API, the lease checks).
        Index("ix_sync_runs_connection_type_started", "connection_id", "object_type", "started_at"),
        _runs_index("ix_sync_runs_slot_started", SLOT_RUN_CONDITION, "started_at"),
        _runs_index("ix_sync_runs_requested_started", REQUESTED_RUN_CONDITION, "started_at"),
        _runs_index("ix_sync_runs_paused_until", PAUSED_RUN_CONDITION, "paused_until"),
        _runs_index("ix_sync_runs_sweep_started", SWEEP_RUN_CONDITION, "started_at"),
        _runs_index("ix_sync_runs_maybe_unfinished", MAYBE_UNFINISHED_RUN_CONDITION, "started_at"),
        # At most one running run (the lease) and one queued run per connection and type.
        _runs_index("uq_sync_runs_one_running", f"status = '{RunStatus.RUNNING}'", unique=True),
        _runs_index("uq_sync_runs_one_queued", f"status = '{RunStatus.QUEUED}'", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Two keys, not `of_a_connection()`: see migration 0024.
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    object_type: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING)
    trigger: Mapped[str] = mapped_column(
        String(16), default=RunTrigger.REQUEST, server_default=RunTrigger.REQUEST.value
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    last_modified: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(100))
    error_detail: Mapped[str | None] = mapped_column(Text)
    # Where a full sync got to (phase, keyset position), written with every page, so a run that
    # failed or paused is resumed instead of restarted.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument, default=None)
    # Set when Xero's daily limit stopped the run: no call is made for this connection before it.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The fencing token of a running run: each page's transaction writes only while the row is
    # still `running` with this token, so a run that lost its lease (declared dead, cancelled by
    # a disconnect) stops instead of writing beside its successor.
    lease: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # Live progress: pages stored, what the run is doing now, and the seconds it has spent
    # waiting for Xero's limits (the call limiter's pacing and Retry-After holds).
    pages: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str | None] = mapped_column(String(30), default=None)
    limit_wait_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Retries of temporary failures (the provider down, timeouts) so far; bounded by settings.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The background job responsible for the run (queued, running, or its scheduled resume),
    # and which attempt of that job holds the lease: a job re-queued after its worker died takes
    # over the run its earlier attempt left running.
    job_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    job_attempt: Mapped[int | None] = mapped_column(Integer, default=None)
    # Records whose stored content differed from the provider's although its timestamp did not
    # move (a silent edit; an account deleted at the provider), and how many were rewritten.
    found: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    corrected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SyncCursor(Base):
    """How far incremental syncs of a connection and scope have come: the newest
    `UpdatedDateUTC` stored."""

    __tablename__ = "sync_cursors"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    modified_since: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
