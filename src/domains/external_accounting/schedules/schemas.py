"""What the schedule API takes and sends."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# A week: a connection synced less often than that is better disabled.
MAX_EVERY_MINUTES = 10_080

Minutes = Annotated[
    int | None,
    Field(
        ge=1,
        le=MAX_EVERY_MINUTES,
        description=f"Minutes between syncs, 1 to {MAX_EVERY_MINUTES}; null: the service default",
    ),
]

SCHEDULE_IN_EXAMPLE: dict[str, Any] = {
    "invoices_every_minutes": 5,
    "accounts_every_minutes": None,
    "enabled": True,
}
SCHEDULE_OUT_EXAMPLE: dict[str, Any] = {
    "connection_id": "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
    "enabled": True,
    "invoices_every_minutes": 5,
    "accounts_every_minutes": None,
    "effective_invoices_every_minutes": 5,
    "effective_accounts_every_minutes": 60,
    "day_limit_remaining": 4210,
    "day_limit_observed_at": "2026-12-01T08:00:03Z",
    "scheduled_syncs": True,
}


class ScheduleIn(BaseModel):
    """A connection's schedule, replaced whole: the intervals it overrides (null: the default)
    and whether it is synced by schedule at all. Types are strict: `"5"` is not a number."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [SCHEDULE_IN_EXAMPLE]}
    )

    invoices_every_minutes: Minutes = None
    accounts_every_minutes: Minutes = None
    enabled: bool = Field(True, description="false: only syncs someone asks for")


class ScheduleOut(BaseModel):
    """A connection's schedule as set, the intervals in force, and the last daily budget Xero
    reported for it (the scheduler spares a connection near its daily reserve)."""

    model_config = ConfigDict(json_schema_extra={"examples": [SCHEDULE_OUT_EXAMPLE]})

    connection_id: uuid.UUID
    enabled: bool
    invoices_every_minutes: int | None = Field(description="The override; null: the default")
    accounts_every_minutes: int | None = Field(description="The override; null: the default")
    effective_invoices_every_minutes: int
    effective_accounts_every_minutes: int
    day_limit_remaining: int | None = Field(
        description="The provider's last X-DayLimit-Remaining for this connection"
    )
    day_limit_observed_at: datetime | None
    scheduled_syncs: bool = Field(
        description="Whether this deployment queues scheduled syncs at all (SCHEDULED_SYNCS); "
        "when false the schedule is kept but not followed: only syncs someone asks for run"
    )
