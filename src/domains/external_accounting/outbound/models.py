"""Outbound webhooks: the endpoints an organisation registers to hear about its syncs and
connections, the deliveries owed to them (the outbox: one row per endpoint and event, written in
the transaction of what happened), and every attempt at each (the delivery log)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, UTCDateTime, new_id, utcnow

# The foreign keys below name these tables; importing them keeps every process's metadata whole.
from src.domains.external_accounting.connections import models as _connections  # noqa: F401
from src.domains.organizations import models as _organizations  # noqa: F401


class EventType(StrEnum):
    """What an endpoint may subscribe to."""

    SYNC_FINISHED = "sync.finished"
    SYNC_FAILED = "sync.failed"
    CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
    CONNECTION_DISCONNECTED = "connection.disconnected"
    # Batches of changed records, announced from the change feed (`ChangeAnnouncer`).
    INVOICES_CHANGED = "invoices.changed"
    ACCOUNTS_CHANGED = "accounts.changed"


# The change events, by the `ledger_changes.record_type` they announce.
CHANGE_EVENTS: dict[str, EventType] = {
    "invoice": EventType.INVOICES_CHANGED,
    "account": EventType.ACCOUNTS_CHANGED,
}


class DeliveryStatus(StrEnum):
    """`pending` until the endpoint answers 2xx (`delivered`) or the attempts run out (`failed`)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpoint(Base):
    """An organisation's receiver: where events go, which ones, and the signing secret
    (encrypted with the TokenCipher; shown to the caller once, when created)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one endpoint. Its id is the Standard Webhooks `webhook-id`, the same
    on every attempt, so a receiver can drop a repeat."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The dispatcher's scan: what is due.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text(f"status = '{DeliveryStatus.PENDING}'"),
            sqlite_where=text(f"status = '{DeliveryStatus.PENDING}'"),
        ),
        # The delivery log of an endpoint, newest first.
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(40))
    # The whole body as sent: {"type", "timestamp", "data"}.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class WebhookDeliveryAttempt(Base):
    """One POST of a delivery: when, what the endpoint answered (or why there was no answer)."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    # A short reason without the body or any secret: "HTTP 500", "timeout", "ConnectError".
    error: Mapped[str | None] = mapped_column(String(200), default=None)
    duration_ms: Mapped[int] = mapped_column(Integer)


class ChangeAnnouncementCursor(Base):
    """How far a connection's changes have been announced (`invoices.changed`,
    `accounts.changed`): the change feed position (commit_xid, change id) of the last change
    read. Moved only by a conditional update from the position the announcer read, in the
    transaction that writes the announcing deliveries, so announcing twice sends nothing twice."""

    __tablename__ = "webhook_change_cursors"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    commit_xid: Mapped[int] = mapped_column(BigInteger)
    change_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
