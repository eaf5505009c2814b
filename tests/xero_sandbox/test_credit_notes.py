"""Credit notes: made through the control API and allocated in full to one invoice, which shows
the credit in the accounting API and the ground truth; served at `/CreditNotes` like Xero's; and
announced by one CREDITNOTE CREATE webhook event (no INVOICE event)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from src.xero_sandbox.webhooks import sign
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import invoices_url
from tests.xero_sandbox.conftest import XeroApi, validate_schema
from tests.xero_sandbox.webhook_receiver import KEY, WebhookReceiver, settle, subscribe


def _decimal(value: object) -> Decimal:
    return Decimal(str(value))


def _authorised_invoice(xero: XeroApi, type_name: str = "ACCREC") -> dict[str, Any]:
    created = httpx.post(
        invoices_url(xero.sandbox, xero.tenant),
        json={
            "type": type_name,
            "status": "AUTHORISED",
            "line_items": [{"quantity": "2", "unit_amount": "50.00", "tax_amount": "15.00"}],
        },
    )
    created.raise_for_status()
    invoice: dict[str, Any] = created.json()
    return invoice


def _credit(xero: XeroApi, invoice_id: str, amount: str) -> httpx.Response:
    return httpx.post(
        f"{xero.sandbox.base_url}/_sandbox/tenants/{xero.tenant}/credit-notes",
        json={"invoice_id": invoice_id, "amount": amount},
    )


def test_a_credit_note_is_allocated_to_its_invoice_everywhere(xero: XeroApi) -> None:
    invoice = _authorised_invoice(xero)
    assert _decimal(invoice["Total"]) == Decimal("115.00")
    answer = _credit(xero, invoice["InvoiceID"], "40.01")
    assert answer.status_code == 201
    note = answer.json()
    assert (note["Type"], note["Status"]) == ("ACCRECCREDIT", "PAID")
    assert _decimal(note["Total"]) == Decimal("40.01")
    assert _decimal(note["RemainingCredit"]) == 0
    [allocation] = note["Allocations"]
    assert _decimal(allocation["Amount"]) == Decimal("40.01")
    assert allocation["Invoice"] == {
        "InvoiceID": invoice["InvoiceID"],
        "InvoiceNumber": invoice["InvoiceNumber"],
    }
    # The accounting API's invoice: credited, less due, updated.
    seen = xero.get(f"/Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert _decimal(seen["AmountCredited"]) == Decimal("40.01")
    assert _decimal(seen["AmountDue"]) == Decimal("74.99")
    assert seen["Status"] == "AUTHORISED"
    assert parse_xero_date(seen["UpdatedDateUTC"]) > parse_xero_date(invoice["UpdatedDateUTC"])
    assert seen["UpdatedDateUTC"] == note["UpdatedDateUTC"]
    assert [c["CreditNoteID"] for c in seen["CreditNotes"]] == [note["CreditNoteID"]]
    # ... and the ground truth agrees.
    truth = httpx.get(
        invoices_url(xero.sandbox, xero.tenant), params={"offset": 300, "limit": 10}
    ).json()["Invoices"]
    [mine] = [i for i in truth if i["InvoiceID"] == invoice["InvoiceID"]]
    assert (_decimal(mine["AmountCredited"]), _decimal(mine["AmountDue"])) == (
        Decimal("40.01"),
        Decimal("74.99"),
    )
    # Crediting the rest pays the invoice off.
    _credit(xero, invoice["InvoiceID"], "74.99").raise_for_status()
    paid = xero.get(f"/Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert paid["Status"] == "PAID"
    assert _decimal(paid["AmountDue"]) == 0
    assert _decimal(paid["AmountCredited"]) == Decimal("115.00")
    assert "FullyPaidOnDate" in paid


def test_the_accounting_api_serves_credit_notes_like_xero(xero: XeroApi) -> None:
    sale, bill = _authorised_invoice(xero), _authorised_invoice(xero, "ACCPAY")
    first = _credit(xero, sale["InvoiceID"], "10.00").json()
    second = _credit(xero, bill["InvoiceID"], "20.00").json()
    assert second["Type"] == "ACCPAYCREDIT"
    one = xero.get(f"/CreditNotes/{first['CreditNoteID']}")
    assert one.status_code == 200
    body = one.json()
    validate_schema(body, "CreditNotes")
    [served] = body["CreditNotes"]
    assert served["CreditNoteID"] == first["CreditNoteID"]
    assert served["Contact"]["ContactID"] == sale["Contact"]["ContactID"]
    parse_xero_date(served["UpdatedDateUTC"])
    both = xero.get(
        "/creditnotes", params={"IDs": f"{first['CreditNoteID']},{second['CreditNoteID']}"}
    ).json()
    validate_schema(both, "CreditNotes")
    assert {n["CreditNoteID"] for n in both["CreditNotes"]} == {
        first["CreditNoteID"],
        second["CreditNoteID"],
    }
    paged = xero.get("/CreditNotes", params={"page": 1}).json()
    assert paged["pagination"]["itemCount"] == 2
    assert xero.get(f"/CreditNotes/{sale['InvoiceID']}").status_code == 404
    assert xero.get("/CreditNotes", params={"where": 'Type=="ACCPAYCREDIT"'}).status_code == 400
    # Same gate as every accounting endpoint: a token and a tenant it may read.
    url = f"{xero.sandbox.base_url}/api.xro/2.0/CreditNotes/{first['CreditNoteID']}"
    assert httpx.get(url, headers={"xero-tenant-id": xero.tenant}).status_code == 401
    other_tenant = {"Authorization": f"Bearer {xero.token}", "xero-tenant-id": "nope"}
    assert httpx.get(url, headers=other_tenant).status_code == 403
    stats = httpx.get(f"{xero.sandbox.base_url}/_sandbox/stats").json()
    assert stats["by_path"]["/CreditNotes/{id}"] >= 2


def test_credit_notes_xero_would_refuse_are_refused(xero: XeroApi) -> None:
    invoice = _authorised_invoice(xero)
    for amount in ("115.01", "0", "1.005"):
        refused = _credit(xero, invoice["InvoiceID"], amount)
        assert refused.status_code in (400, 422), amount
        assert refused.json()["error"] in ("invalid_mutation", "invalid_request")
    assert _credit(xero, invoice["InvoiceID"], "lots").status_code == 422
    draft = httpx.post(invoices_url(xero.sandbox, xero.tenant), json={"status": "DRAFT"}).json()
    assert _credit(xero, draft["InvoiceID"], "1.00").json()["error"] == "invalid_mutation"
    assert _credit(xero, "not-an-invoice", "1.00").status_code == 404
    untouched = xero.get(f"/Invoices/{invoice['InvoiceID']}").json()["Invoices"][0]
    assert _decimal(untouched["AmountCredited"]) == 0


def test_a_credit_note_emits_one_creditnote_event_whose_url_serves_it(xero: XeroApi) -> None:
    invoice = _authorised_invoice(xero)
    with WebhookReceiver() as receiver:
        subscribe(xero.sandbox, receiver, batch_window_s=0.2)
        note = _credit(xero, invoice["InvoiceID"], "5.00").json()
        [delivery] = receiver.wait_for(1)
        settle(xero.sandbox)
    assert delivery.signature == sign(KEY, delivery.body)
    payload = delivery.payload
    validate_schema(payload, "CreditNoteWebhookEvent", spec="xero-webhooks.yaml")
    [event] = payload["events"]  # no INVOICE event: the receiver follows the allocation
    assert event["eventCategory"] == "CREDITNOTE"
    assert event["eventType"] == "CREATE"
    assert event["resourceId"] == note["CreditNoteID"]
    assert event["data"] == {"Type": "ACCRECCREDIT", "Status": "PAID"}
    served = httpx.get(
        event["resourceUrl"],
        headers={"Authorization": f"Bearer {xero.token}", "xero-tenant-id": xero.tenant},
    ).json()["CreditNotes"][0]
    assert served["Allocations"][0]["Invoice"]["InvoiceID"] == invoice["InvoiceID"]
