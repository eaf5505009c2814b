"""Connections from a customer organisation to an accounting provider's tenant."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, UTCDateTime, new_id, utcnow

# The foreign keys below name these tables; importing them keeps every process's metadata whole.
from src.domains.organizations import models as _organizations  # noqa: F401


class Provider(StrEnum):
    XERO = "xero"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    DISCONNECTED = "disconnected"


class OAuthGrant(Base):
    """One token set from one consent. Xero's tokens cover every tenant the user picked in that
    consent, so several connections share a grant, and refreshing is per grant, not per tenant.

    Tokens are stored only encrypted; `token_version` increases with every refresh."""

    __tablename__ = "oauth_grants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(20), default=Provider.XERO.value)
    status: Mapped[str] = mapped_column(String(20), default=ConnectionStatus.ACTIVE.value)
    scopes: Mapped[str] = mapped_column(Text, default="")
    auth_event_id: Mapped[str | None] = mapped_column(String(64), default=None)
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # Who is refreshing the token set right now, and until when the claim holds (a process that
    # died mid-refresh loses it then); no lock is held across the call to Xero.
    refresh_claim_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    refresh_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Connection(Base):
    """One provider tenant (a Xero organisation) connected by one customer organisation."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("organization_id", "provider", "tenant_id"),
        # What the ledger's (connection_id, organization_id) foreign keys refer to (an index,
        # which SQLite adds in place: a constraint would copy the table).
        Index("uq_connections_id_organization_id", "id", "organization_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(20), default=Provider.XERO.value)
    tenant_id: Mapped[str] = mapped_column(String(64))
    tenant_name: Mapped[str] = mapped_column(String(300), default="")
    tenant_type: Mapped[str] = mapped_column(String(40), default="ORGANISATION")
    provider_connection_id: Mapped[str | None] = mapped_column(String(64), default=None)
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="SET NULL"), default=None, index=True
    )
    status: Mapped[str] = mapped_column(String(20), default=ConnectionStatus.ACTIVE.value)
    connected_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class OAuthState(Base):
    """A pending connect: the single-use `state` (only its hash is stored), who started it, and
    the PKCE verifier (encrypted)."""

    __tablename__ = "oauth_states"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    secret_hash: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A connect session (a link a person opens in a browser) binds the state to that browser:
    # the link's single-use secret, and the cookie set when it was opened (hashes only). States
    # without a link were started through the API and need the starting user's key at the callback.
    link_secret_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    browser_binding_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    link_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ConsentTenant(Base):
    """Every tenant a consent (token set) covered at Xero, including tenants we refused because
    another organisation holds them: revoking the token set removes all of their Xero connections,
    so it must not be revoked while another organisation relies on one of them."""

    __tablename__ = "oauth_grant_tenants"

    grant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class PendingRevocation(Base):
    """A token set to revoke at Xero (replaced or disconnected) whose revocation has not yet
    succeeded: kept, encrypted, and retried with backoff until Xero confirms."""

    __tablename__ = "pending_revocations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(20), default=Provider.XERO.value)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(String(20))
    refresh_token_encrypted: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConnectionUsage(Base):
    """A connection's Xero accounting calls and response bytes on one UTC day: Xero meters API
    egress per month, so this is what the connection costs. Added to in batches (each stored
    page, each run's end), never one write per call."""

    __tablename__ = "connection_usage"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
