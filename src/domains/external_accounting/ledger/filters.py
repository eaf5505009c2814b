"""What a reader of the synced invoices can ask for: one object from the route to the SQL."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict


class InvoiceFilters(BaseModel):
    """A page of an organisation's invoices: which ones, after which (date, id), how many.
    Empty lists and None mean "any"."""

    model_config = ConfigDict(frozen=True)

    connection_id: uuid.UUID | None = None
    types: list[str] = []
    statuses: list[str] = []
    contact_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    updated_since: datetime | None = None
    # The keyset position the previous page ended at: (its last invoice's date, its id).
    after: tuple[date | None, uuid.UUID] | None = None
    limit: int = 100
