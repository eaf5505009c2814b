"""Pydantic shapes of synced records and sync runs."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class InvoiceOut(_Out):
    id: uuid.UUID
    connection_id: uuid.UUID
    provider_id: str
    number: str | None
    type: str
    status: str
    contact_id: str | None
    contact_name: str | None
    reference: str | None
    date: dt.date | None
    due_date: dt.date | None
    fully_paid_on: dt.date | None
    currency_code: str | None
    currency_rate: Decimal | None
    sub_total: Decimal | None
    total_tax: Decimal | None
    total: Decimal | None
    amount_due: Decimal | None
    amount_paid: Decimal | None
    amount_credited: Decimal | None
    provider_updated_at: datetime
    synced_at: datetime


class LineItemOut(_Out):
    provider_id: str | None
    position: int
    description: str | None
    quantity: Decimal | None
    unit_amount: Decimal | None
    item_code: str | None
    account_code: str | None
    tax_type: str | None
    tax_amount: Decimal | None
    line_amount: Decimal | None
    discount_rate: Decimal | None
    tracking: list[dict[str, Any]]


class InvoiceDetail(InvoiceOut):
    line_items: list[LineItemOut]


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class AccountOut(_Out):
    id: uuid.UUID
    connection_id: uuid.UUID
    provider_id: str
    code: str | None
    name: str | None
    type: str | None
    account_class: str | None = Field(validation_alias="class_", serialization_alias="class")
    status: str | None
    bank_account_number: str | None
    bank_account_type: str | None
    currency_code: str | None
    tax_type: str | None
    reporting_code: str | None
    provider_updated_at: datetime | None


class SyncRunOut(_Out):
    id: uuid.UUID
    connection_id: uuid.UUID
    object_type: str
    mode: str
    params: dict[str, Any]
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None = None
    count: int
    created: int
    updated: int
    unchanged: int
    api_calls: int
    last_modified: datetime | None
    error: str | None
    error_detail: str | None
    paused_until: datetime | None
