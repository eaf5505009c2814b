"""Narrow unit tests of the by-id calls webhooks use (`IDs=` for invoices and credit notes),
with a mocked transport: the sandbox has no `/CreditNotes` yet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from src.domains.external_accounting.exceptions import ProviderDataInvalid
from src.domains.external_accounting.xero.data.accounting_client import MAX_IDS_PER_CALL
from src.domains.external_accounting.xero.data.changed_invoices import batches, plan
from tests.domains.external_accounting.xero.mocked_xero import (
    mocked_accounting_client,
    scripted_handler,
    unsaved_connection,
)

INVOICE_A = "11111111-1111-4111-8111-111111111111"
INVOICE_B = "22222222-2222-4222-8222-222222222222"
CREDIT_NOTE_ID = "55d84274-a3da-4829-a7c0-0cab601b95cc"
CREDIT_NOTE = {
    "CreditNoteID": CREDIT_NOTE_ID,
    "Type": "ACCRECCREDIT",
    "Status": "AUTHORISED",
    "Total": 50.0,
    "Allocations": [
        {
            "Amount": 20.00,
            "Date": "/Date(1573755038314+0000)/",
            "Invoice": {"InvoiceID": INVOICE_A, "InvoiceNumber": "INV-1"},
        },
        {
            "Amount": 30.00,
            "Date": "/Date(1573755038314+0000)/",
            "Invoice": {"InvoiceID": INVOICE_B},
        },
        {"Amount": 1.00, "Invoice": {"InvoiceID": INVOICE_A}},
        {"Amount": 1.00},
    ],
    "SomethingNew": [1, 2],
}


async def test_invoices_by_id_ask_for_a_page_so_line_items_come_back() -> None:
    handler, seen = scripted_handler(
        httpx.Response(200, json={"Invoices": [], "pagination": {"pageCount": 0}})
    )
    client, _, _ = mocked_accounting_client(handler)
    await client.get_invoices_by_ids(unsaved_connection(), [INVOICE_A, INVOICE_B])
    [request] = seen
    assert request.url.path.endswith("/Invoices")
    assert request.url.params["IDs"] == f"{INVOICE_A},{INVOICE_B}"
    assert request.url.params["page"] == "1"
    assert "If-Modified-Since" not in request.headers


async def test_credit_notes_by_id_name_the_invoices_they_are_allocated_to() -> None:
    handler, seen = scripted_handler(httpx.Response(200, json={"CreditNotes": [CREDIT_NOTE]}))
    client, _, _ = mocked_accounting_client(handler)
    [note] = await client.get_credit_notes_by_ids(unsaved_connection(), [CREDIT_NOTE_ID])
    [request] = seen
    assert request.url.path.endswith("/CreditNotes")
    assert request.url.params["IDs"] == CREDIT_NOTE_ID
    assert request.headers["xero-tenant-id"] == "tenant-1"
    assert note.allocated_invoice_ids() == [INVOICE_A, INVOICE_B]


async def test_a_credit_note_without_its_id_is_refused() -> None:
    handler, _ = scripted_handler(httpx.Response(200, json={"CreditNotes": [{"Type": "X"}]}))
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderDataInvalid):
        await client.get_credit_notes_by_ids(unsaved_connection(), [str(uuid.uuid4())])


async def test_more_ids_than_xero_takes_are_refused_before_any_call() -> None:
    handler, seen = scripted_handler()
    client, _, _ = mocked_accounting_client(handler)
    ids = [str(uuid.uuid4()) for _ in range(MAX_IDS_PER_CALL + 1)]
    with pytest.raises(ValueError, match="ids per call"):
        await client.get_invoices_by_ids(unsaved_connection(), ids)
    assert seen == []
    assert [len(b) for b in batches(ids)] == [MAX_IDS_PER_CALL, 1]


def test_by_id_unless_an_incremental_pass_takes_fewer_calls() -> None:
    cursor = datetime(2026, 12, 1, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(120)]
    assert plan(ids[:50], [], cursor=cursor, changes_since_cursor=50).incremental_from is None
    # 51 ids: two calls by id, one page incrementally.
    assert plan(ids[:51], [], cursor=cursor, changes_since_cursor=51).incremental_from == cursor
    # Thousands changed since the cursor: three pages incrementally, three calls by id.
    assert plan(ids, [], cursor=cursor, changes_since_cursor=2500).incremental_from is None
    # No cursor (the first sync has not finished): by id, always.
    assert plan(ids, [], cursor=None, changes_since_cursor=0).incremental_from is None
    assert plan(ids + ids, ["n"], cursor=None, changes_since_cursor=0).invoice_ids == ids
