"""Connections from a customer organisation to an accounting provider's tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, UTCDateTime, new_id, utcnow


class Provider(StrEnum):
    XERO = "xero"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DISCONNECTED = "disconnected"


class Connection(Base):
    """One provider tenant (a Xero organisation) connected by one customer organisation.

    Tokens are stored only encrypted (`*_encrypted`); `token_version` increases with every
    refresh so concurrent refreshers can tell whether someone else already rotated the token.
    """

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("organization_id", "provider", "tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(20), default=Provider.XERO.value)
    tenant_id: Mapped[str] = mapped_column(String(64))
    tenant_name: Mapped[str] = mapped_column(String(300), default="")
    tenant_type: Mapped[str] = mapped_column(String(40), default="ORGANISATION")
    provider_connection_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(20), default=ConnectionStatus.ACTIVE.value)
    scopes: Mapped[str] = mapped_column(Text, default="")
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    connected_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
