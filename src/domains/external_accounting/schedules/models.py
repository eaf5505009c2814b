"""A connection's sync schedule: its own intervals (unset: the settings' defaults), whether it
is scheduled at all, and the last daily budget its provider reported (the scheduler spares a
connection whose budget is near the reserve)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from src.core.database import Base, UTCDateTime, utcnow

# The foreign key below names this table; importing it keeps every process's metadata whole.
from src.domains.external_accounting.connections import models as _connections  # noqa: F401


class ConnectionSchedule(Base):
    """One row per connection that has an override or a budget reading; a connection without
    one is scheduled by the defaults."""

    __tablename__ = "connection_schedules"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # None: SCHEDULE_INVOICES_MINUTES / SCHEDULE_ACCOUNTS_MINUTES.
    invoices_every_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    accounts_every_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    # The provider's last `X-DayLimit-Remaining` for the connection's tenant, and when it was
    # read. The call limiter keeps it per process only; this is what every scheduler sees.
    day_limit_remaining: Mapped[int | None] = mapped_column(Integer, default=None)
    day_limit_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
