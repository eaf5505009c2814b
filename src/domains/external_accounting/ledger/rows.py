"""The rows a sync writes, one type per table, built by keyword only: a mapper that swapped two
columns of the same type (`total_tax` and `total`) would still type-check if they were positional.

msgspec Structs because a page of 1,000 invoices builds 4,000 of them: construction and
`astuple` (the COPY fast path's records) are C code. Field order is the COPY column order."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from src.core.database import JsonText

_Date = date  # the row's `date` field would shadow the type in the annotations after it


class InvoiceRow(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """An `invoices` row."""

    id: uuid.UUID
    organization_id: uuid.UUID
    connection_id: uuid.UUID
    provider_id: str
    number: str | None
    type: str
    status: str
    contact_id: str | None
    contact_name: str | None
    reference: str | None
    date: _Date | None
    due_date: _Date | None
    fully_paid_on: _Date | None
    line_amount_types: str | None
    currency_code: str | None
    currency_rate: Decimal | None
    sub_total: Decimal | None
    total_tax: Decimal | None
    total: Decimal | None
    total_discount: Decimal | None
    amount_due: Decimal | None
    amount_paid: Decimal | None
    amount_credited: Decimal | None
    provider_updated_at: datetime
    raw: str  # the invoice's JSON text, verbatim
    synced_at: datetime
    version: int = 1  # the writer sets it when the invoice's content changed


class LineItemRow(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """An `invoice_line_items` row."""

    invoice_id: uuid.UUID
    position: int
    provider_id: str | None
    description: str | None
    quantity: Decimal | None
    unit_amount: Decimal | None
    item_code: str | None
    account_code: str | None
    account_id: str | None
    tax_type: str | None
    tax_amount: Decimal | None
    line_amount: Decimal | None
    discount_rate: Decimal | None
    tracking: str  # JSON text, verbatim


class AccountRow(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """An `accounts` row (`class_` is the column `class`)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    connection_id: uuid.UUID
    provider_id: str
    code: str | None
    name: str | None
    type: str | None
    class_: str | None
    status: str | None
    description: str | None
    bank_account_number: str | None
    bank_account_type: str | None
    currency_code: str | None
    tax_type: str | None
    reporting_code: str | None
    reporting_code_name: str | None
    system_account: str | None
    enable_payments_to_account: bool | None
    provider_updated_at: datetime | None
    raw: JsonText
    synced_at: datetime
    # Set when the provider's whole chart no longer lists the account (kept as a tombstone).
    deleted_at: datetime | None = None
    version: int = 1  # the writer sets it when the account's content changed


class ChangeRow(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A `ledger_changes` row (`id` and `commit_xid` are the database's)."""

    organization_id: uuid.UUID
    connection_id: uuid.UUID
    record_type: str
    record_id: uuid.UUID
    provider_id: str
    kind: str
    version: int
    seen_at: datetime
    run_id: uuid.UUID | None
    changes: str  # JSON text


Row = InvoiceRow | LineItemRow | AccountRow | ChangeRow

# Fields named differently from their column (a Python keyword).
_COLUMN_OF = {"class_": "class"}


def columns(row_type: type[Row]) -> list[str]:
    """The table's column names in the row's field order."""
    return [_COLUMN_OF.get(name, name) for name in row_type.__struct_fields__]


def as_records(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Rows as tuples in `columns` order (COPY's records)."""
    return list(map(msgspec.structs.astuple, rows))


def as_params(rows: Sequence[Row], json_columns: Collection[str] = ()) -> list[dict[str, Any]]:
    """Rows as executemany parameters keyed by column; JSON text as JsonText, so JSON columns
    store it as is."""
    if not rows:
        return []
    names = columns(type(rows[0]))
    params = []
    for row in rows:
        values = dict(zip(names, msgspec.structs.astuple(row), strict=True))
        for name in json_columns:
            values[name] = JsonText(values[name].encode())
        params.append(values)
    return params
