"""Console sign-ins: one server-side row per browser session, so that signing out, or the API
key's revocation or expiry, really ends it (a signed cookie alone could not be taken back)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, UTCDateTime, new_id, utcnow

# The foreign key below names this table; importing it keeps every process's metadata whole.
from src.domains.organizations import models as _organizations  # noqa: F401


class ConsoleSession(Base):
    """A browser signed in with an API key. Only hashes are stored: the cookie's token, and the
    CSRF token derived from it (the page's forms carry the token itself)."""

    __tablename__ = "console_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    csrf_token_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
