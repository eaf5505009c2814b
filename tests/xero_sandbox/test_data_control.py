"""The control API's data: the ground truth, and the edits a Xero user makes to invoices (each as
Xero allows it, each bumping UpdatedDateUTC)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from src.xero_sandbox.xero_dates import parse_xero_date
from tests.xero_sandbox.conftest import XeroApi


def _decimal(value: object) -> Decimal:
    return Decimal(str(value))


def test_mutations_follow_xeros_rules_and_bump_updated_date(xero: XeroApi) -> None:
    base, tenant = xero.sandbox.base_url, xero.tenant
    invoices = f"{base}/_sandbox/tenants/{tenant}/invoices"
    draft = httpx.post(invoices, json={"status": "DRAFT", "lines": 3}).json()
    invoice_id = draft["InvoiceID"]
    assert len(draft["LineItems"]) == 3
    authorised = httpx.post(f"{invoices}/{invoice_id}/authorise").json()
    assert authorised["Status"] == "AUTHORISED"
    assert parse_xero_date(authorised["UpdatedDateUTC"]) > parse_xero_date(draft["UpdatedDateUTC"])
    part = httpx.post(f"{invoices}/{invoice_id}/pay", json={"amount": "10.00"}).json()
    assert _decimal(part["AmountPaid"]) == Decimal("10.00")
    assert _decimal(part["AmountDue"]) == _decimal(part["Total"]) - Decimal("10.00")
    refused = httpx.post(f"{invoices}/{invoice_id}/void")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_mutation"
    paid = httpx.post(f"{invoices}/{invoice_id}/pay").json()
    assert paid["Status"] == "PAID"
    assert _decimal(paid["AmountDue"]) == 0
    assert "FullyPaidOnDate" in paid
    over = httpx.post(f"{invoices}/{invoice_id}/pay", json={"amount": "1"})
    assert over.status_code == 400
    assert httpx.post(f"{invoices}/{invoice_id}/delete").status_code == 400
    gone = httpx.post(invoices, json={"status": "DRAFT"}).json()
    deleted = httpx.post(f"{invoices}/{gone['InvoiceID']}/delete").json()
    assert deleted["Status"] == "DELETED"
    # The accounting API sees the same invoice.
    seen = xero.get(f"/Invoices/{invoice_id}").json()["Invoices"][0]
    assert seen["Status"] == "PAID"
    assert httpx.post(f"{invoices}/not-an-id/pay").status_code == 404
    assert httpx.post(f"{base}/_sandbox/tenants/nope/invoices", json={}).status_code == 404
    assert httpx.post(invoices, json={"status": "PAID"}).status_code == 422


def test_ground_truth_lists_every_invoice_with_line_items(xero: XeroApi) -> None:
    base, tenant = xero.sandbox.base_url, xero.tenant
    truth = httpx.get(f"{base}/_sandbox/tenants/{tenant}/invoices", params={"limit": 500}).json()
    assert truth["total"] == 300 == len(truth["Invoices"])
    assert all(i["LineItems"] for i in truth["Invoices"])
    touched = httpx.post(
        f"{base}/_sandbox/tenants/{tenant}/invoices/touch", json={"count": 3}
    ).json()
    assert touched == {"touched": 3}
