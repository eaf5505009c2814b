"""Xero's webhook events as we received them: one row per (tenant, category, resource, event
time), whatever number of times Xero delivered it, and what became of it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, UTCDateTime, new_id, utcnow

# The foreign keys below name these tables; importing them keeps every process's metadata whole.
from src.domains.external_accounting.connections import models as _connections  # noqa: F401
from src.domains.external_accounting.ledger import models as _ledger  # noqa: F401


class EventCategory(StrEnum):
    """Xero's event categories; others (Xero adds them without notice) are ignored unread."""

    INVOICE = "INVOICE"
    CREDITNOTE = "CREDITNOTE"
    CONTACT = "CONTACT"
    SUBSCRIPTION = "SUBSCRIPTION"


# The categories that change what we store; the others are recorded and otherwise ignored.
SYNCED_CATEGORIES = (EventCategory.INVOICE, EventCategory.CREDITNOTE)


class EventStatus(StrEnum):
    """What became of an event: `pending` until its connection's job reads it; then `synced`
    (fetched by the run named), `stale` (we already held that version or a newer one: no
    call), `ignored` (a category we do not sync), `skipped` (its connection needs a new
    consent or was disconnected: no call), or `failed` (the run failed; the schedule's next
    incremental sync catches the change)."""

    PENDING = "pending"
    SYNCED = "synced"
    STALE = "stale"
    IGNORED = "ignored"
    SKIPPED = "skipped"
    FAILED = "failed"


class WebhookEvent(Base):
    """One event of a Xero webhook delivery, for a tenant one of our connections holds."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        # Xero retries deliveries and may send an event twice: the same event is one row.
        UniqueConstraint("tenant_id", "category", "resource_id", "event_at"),
        # A connection's job reads its pending events.
        Index(
            "ix_webhook_events_pending",
            "connection_id",
            "received_at",
            postgresql_where=text(f"status = '{EventStatus.PENDING}'"),
            sqlite_where=text(f"status = '{EventStatus.PENDING}'"),
        ),
        # How many invoices changed since a cursor (the targeted-or-incremental estimate).
        Index("ix_webhook_events_connection_time", "connection_id", "category", "event_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(20))
    resource_id: Mapped[str] = mapped_column(String(64))
    event_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    connection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The job that read it, and the run that fetched it (a stale or skipped event has none).
    job_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sync_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="SET NULL"), default=None
    )
