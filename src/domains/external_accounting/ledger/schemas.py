"""Pydantic shapes of synced records and sync runs."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from src.domains.external_accounting.ledger.models import INVOICE_TYPES, RunStatus


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


# Examples for the OpenAPI document (what a caller gets, with made-up ids).
INVOICE_EXAMPLE: dict[str, Any] = {
    "id": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
    "connection_id": "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
    "provider_id": "0f3a7b6c-1d2e-4f50-8a9b-c0d1e2f3a4b5",
    "number": "INV-0042",
    "type": "ACCREC",
    "status": "AUTHORISED",
    "contact_id": "7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b",
    "contact_name": "Ridgeway Bank",
    "reference": "PO 1187",
    "date": "2026-11-02",
    "due_date": "2026-12-02",
    "fully_paid_on": None,
    "currency_code": "NZD",
    "currency_rate": "1.000000",
    "sub_total": "1000.00",
    "total_tax": "150.00",
    "total": "1150.00",
    "amount_due": "1150.00",
    "amount_paid": "0.00",
    "amount_credited": "0.00",
    "provider_updated_at": "2026-11-02T09:14:27+00:00",
    "synced_at": "2026-12-01T08:00:03+00:00",
}
LINE_ITEM_EXAMPLE: dict[str, Any] = {
    "provider_id": "9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
    "position": 0,
    "description": "Consulting, November",
    "quantity": "10.0000",
    "unit_amount": "100.0000",
    "item_code": None,
    "account_code": "200",
    "tax_type": "OUTPUT2",
    "tax_amount": "150.00",
    "line_amount": "1000.00",
    "discount_rate": None,
    "tracking": [],
}
ACCOUNT_EXAMPLE: dict[str, Any] = {
    "id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
    "connection_id": "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
    "provider_id": "ebd06280-af70-4bed-97c6-7451a454ad85",
    "code": "090",
    "name": "Business Bank Account",
    "type": "BANK",
    "class": "ASSET",
    "status": "ACTIVE",
    "bank_account_number": "0121212345678",
    "bank_account_type": "BANK",
    "currency_code": "NZD",
    "tax_type": "NONE",
    "reporting_code": "ASS",
    "provider_updated_at": "2026-10-30T22:01:11+00:00",
    "deleted_at": None,
}
SYNC_RUN_EXAMPLE: dict[str, Any] = {
    "id": "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e",
    "connection_id": "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
    "object_type": "invoices",
    "mode": "incremental",
    "params": {"incremental": True, "invoice_types": list(INVOICE_TYPES), "months_back": 12},
    "status": RunStatus.SUCCESS.value,
    "started_at": "2026-12-01T08:00:00+00:00",
    "finished_at": "2026-12-01T08:00:03.250000+00:00",
    "duration_seconds": 3.25,
    "count": 12,
    "created": 2,
    "updated": 9,
    "unchanged": 1,
    "found": 0,
    "corrected": 0,
    "api_calls": 1,
    "last_modified": "2026-12-01T07:58:41+00:00",
    "error": None,
    "error_detail": None,
    "paused_until": None,
    "pages": 1,
    "phase": "changes",
    "limit_wait_seconds": 0.0,
    "attempts": 0,
}
QUEUED_SYNC_RUNS_EXAMPLE: dict[str, Any] = {
    "sync_runs": [
        {
            "id": SYNC_RUN_EXAMPLE["id"],
            "connection_id": SYNC_RUN_EXAMPLE["connection_id"],
            "object_type": "invoices",
            "status": RunStatus.QUEUED.value,
        }
    ]
}


# `SyncResult` lives with the provider seam; its example is here, with the other API shapes.
SYNC_RESULT_EXAMPLE: dict[str, Any] = {
    "object_type": "invoices",
    "success": True,
    "count": 12,
    "duration_seconds": 3.25,
    "last_modified": "2026-12-01T07:58:41+00:00",
    "sync_run_id": SYNC_RUN_EXAMPLE["id"],
    "created": 2,
    "updated": 9,
    "unchanged": 1,
    "api_calls": 1,
    "error": None,
    "resume_after": None,
    "connections": [
        {
            "connection_id": SYNC_RUN_EXAMPLE["connection_id"],
            "tenant_name": "Demo Company (NZ)",
            "sync_run_id": SYNC_RUN_EXAMPLE["id"],
            "success": True,
            "mode": "incremental",
            "count": 12,
            "created": 2,
            "updated": 9,
            "unchanged": 1,
            "api_calls": 1,
            "duration_seconds": 3.25,
            "last_modified": "2026-12-01T07:58:41+00:00",
            "error": None,
            "error_detail": None,
            "resume_after": None,
        }
    ],
}


class InvoiceOut(_Out):
    model_config = ConfigDict(json_schema_extra={"examples": [INVOICE_EXAMPLE]})

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
    model_config = ConfigDict(json_schema_extra={"examples": [LINE_ITEM_EXAMPLE]})

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
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**INVOICE_EXAMPLE, "line_items": [LINE_ITEM_EXAMPLE]}]}
    )

    line_items: list[LineItemOut]


class InvoicePage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [INVOICE_EXAMPLE], "next_cursor": "MjAyNi0xMS0wMnw1YTZi"}]
        }
    )

    items: list[InvoiceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class AccountOut(_Out):
    model_config = ConfigDict(json_schema_extra={"examples": [ACCOUNT_EXAMPLE]})

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
    deleted_at: datetime | None = Field(
        default=None,
        description="When a sync of the whole chart first missed it (deleted at Xero; status "
        "`DELETED`); null while Xero lists it",
    )


class SyncRunOut(_Out):
    """A sync run. `status`: `queued` (waiting for a worker), `running`, then `success`,
    `failed`, `paused` (Xero's daily limit: it resumes after `paused_until`) or `cancelled`."""

    model_config = ConfigDict(json_schema_extra={"examples": [SYNC_RUN_EXAMPLE]})

    id: uuid.UUID
    connection_id: uuid.UUID
    object_type: str
    mode: str
    params: dict[str, Any]
    status: str
    trigger: str = Field(
        description="`request` (the API, the CLI), `schedule` (queued by the scheduler) or "
        "`reconcile` (the reconciliation sweep)"
    )
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None = None
    count: int
    created: int
    updated: int
    unchanged: int
    found: int = Field(
        default=0,
        description="Records that differed from the provider's although their timestamp had not "
        "moved (silent edits, accounts deleted at the provider)",
    )
    corrected: int = Field(default=0, description="Of those, how many were rewritten")
    api_calls: int
    last_modified: datetime | None
    error: str | None
    error_detail: str | None
    paused_until: datetime | None
    pages: int = Field(description="Pages stored so far")
    phase: str | None = Field(
        description="What the run is doing, or did last: `window`, `outstanding` or `changes` "
        "(invoices), `open` or `recent` (a sweep's invoices), `accounts`; null before it starts"
    )
    limit_wait_seconds: float = Field(
        description="Seconds its calls have waited on Xero's rate limits so far"
    )
    attempts: int = Field(
        description="Retries so far after temporary failures (Xero down, timeouts)"
    )


class QueuedSyncRun(_Out):
    """A background sync run: `queued` when just queued, else the run the connection already
    had (queued, running, or paused until its scheduled resume)."""

    id: uuid.UUID
    connection_id: uuid.UUID
    object_type: str
    status: str = Field(description="`queued`, `running` or `paused`")


class QueuedSyncRuns(BaseModel):
    """What a background sync request answers (202): one run per connection it covers; follow
    each at `GET /sync-runs/{id}`."""

    model_config = ConfigDict(json_schema_extra={"examples": [QUEUED_SYNC_RUNS_EXAMPLE]})

    sync_runs: list[QueuedSyncRun]


# -- history and the change feed ---------------------------------------------------------------

LINE_CHANGE_EXAMPLE: dict[str, Any] = {
    "description": "Consulting, November",
    "quantity": "10.0000",
    "unit_amount": "100.0000",
    "item_code": None,
    "account_code": "200",
    "tax_type": "OUTPUT2",
    "tax_amount": "150.0000",
    "line_amount": "1000.0000",
}
VERSION_EXAMPLE: dict[str, Any] = {
    "version": 2,
    "kind": "updated",
    "seen_at": "2026-12-01T08:15:02+00:00",
    "run_id": SYNC_RUN_EXAMPLE["id"],
    "changes": {
        "status": {"old": "AUTHORISED", "new": "PAID"},
        "amount_due": {"old": "1150.0000", "new": "0.0000"},
        "amount_paid": {"old": "0.0000", "new": "1150.0000"},
        "fully_paid_on": {"old": None, "new": "2026-12-01"},
        "provider_updated_at": {
            "old": "2026-11-02T09:14:27+00:00",
            "new": "2026-12-01T08:10:40+00:00",
        },
    },
}
CHANGE_EXAMPLE: dict[str, Any] = {
    "record_type": "invoice",
    "record_id": INVOICE_EXAMPLE["id"],
    "provider_id": INVOICE_EXAMPLE["provider_id"],
    "connection_id": INVOICE_EXAMPLE["connection_id"],
    **VERSION_EXAMPLE,
}
FEED_CURSOR_EXAMPLE = "djEuODMxMjQuNTAwMQ"


class FieldChange(BaseModel):
    """A field's value before and after (null before a record's first version). Money is exact
    decimal text at the stored scale; dates and instants ISO 8601; `lines` are lists of lines
    (description, quantity, unit_amount, item_code, account_code, tax_type, tax_amount,
    line_amount), old and new in full when any line differs."""

    old: Any = Field(description="The value before this version")
    new: Any = Field(description="The value in this version")


class VersionOut(_Out):
    """One version of a record: what a sync's write changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [VERSION_EXAMPLE]})

    version: int = Field(description="1 when first stored, then one more per recorded change")
    kind: str = Field(
        description="`created`, `updated`, or `deleted` (an account whose status became DELETED)"
    )
    seen_at: datetime = Field(description="When the sync wrote it")
    run_id: uuid.UUID | None = Field(description="The sync run whose transaction wrote it")
    changes: dict[str, FieldChange] = Field(
        description="Old and new value of each field that changed (every field for `created`)"
    )


class ChangeOut(VersionOut):
    """An entry of the change feed: which record, and the version it reached."""

    model_config = ConfigDict(json_schema_extra={"examples": [CHANGE_EXAMPLE]})

    record_type: str = Field(description="`invoice` or `account`")
    record_id: uuid.UUID = Field(description="Our id of the record (`/invoices/{id}`)")
    provider_id: str = Field(description="Xero's InvoiceID or AccountID")
    connection_id: uuid.UUID


class ChangeFeed(BaseModel):
    """A page of the change feed, in commit order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"changes": [CHANGE_EXAMPLE], "next_cursor": FEED_CURSOR_EXAMPLE, "has_more": False}
            ]
        }
    )

    changes: list[ChangeOut]
    next_cursor: str = Field(
        description="Pass as `cursor` for the changes after these (also when this page is "
        "empty: poll with it later)"
    )
    has_more: bool = Field(description="More changes are ready now; false: caught up")


class InvoiceHistory(BaseModel):
    """An invoice's recorded versions, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "invoice_id": INVOICE_EXAMPLE["id"],
                    "provider_id": INVOICE_EXAMPLE["provider_id"],
                    "version": 2,
                    "versions": [VERSION_EXAMPLE],
                }
            ]
        }
    )

    invoice_id: uuid.UUID
    provider_id: str
    version: int = Field(description="The version the stored invoice is at")
    versions: list[VersionOut]
