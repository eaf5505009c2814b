"""Every response the sandbox gives validates against Xero's own OpenAPI schemas."""

from __future__ import annotations

from src.xero_sandbox.xero_dates import parse_xero_date
from tests.xero_sandbox.conftest import XeroApi, schema_properties, validate_schema

# Xero sends a few fields its schema does not declare; clients must accept them.
UNDECLARED_INVOICE_FIELDS = {"DateString", "DueDateString"}


def _check_invoices(body: dict[str, object]) -> list[dict[str, object]]:
    validate_schema(body, "Invoices")
    invoices = body["Invoices"]
    assert isinstance(invoices, list)
    declared = schema_properties("Invoice") | UNDECLARED_INVOICE_FIELDS
    for invoice in invoices:
        assert set(invoice) <= declared, set(invoice) - declared
        for line in invoice.get("LineItems", []):
            assert set(line) <= schema_properties("LineItem")
    return invoices


def test_paged_invoices_match_the_schema_and_carry_line_items(xero: XeroApi) -> None:
    response = xero.get("/Invoices", params={"page": 1, "pageSize": 50})
    assert response.status_code == 200
    body = response.json()
    invoices = _check_invoices(body)
    assert body["pagination"] == {"page": 1, "pageSize": 50, "pageCount": 6, "itemCount": 300}
    assert len(invoices) == 50
    assert all(invoice["LineItems"] for invoice in invoices)
    assert body["Status"] == "OK"
    parse_xero_date(body["DateTimeUTC"])


def test_unpaged_invoices_have_no_line_items(xero: XeroApi) -> None:
    body = xero.get("/Invoices").json()
    invoices = _check_invoices(body)
    assert len(invoices) == 300
    assert all(invoice["LineItems"] == [] for invoice in invoices)
    assert "pagination" not in body


def test_summary_only_is_lighter(xero: XeroApi) -> None:
    invoices = _check_invoices(
        xero.get("/Invoices", params={"page": 1, "summaryOnly": "true"}).json()
    )
    assert invoices
    assert all("LineItems" not in invoice and "Payments" not in invoice for invoice in invoices)


def test_single_invoice_and_accounts_match_the_schema(xero: XeroApi) -> None:
    first = xero.get("/Invoices", params={"page": 1, "pageSize": 1}).json()["Invoices"][0]
    one = xero.get(f"/Invoices/{first['InvoiceID']}").json()
    assert _check_invoices(one)[0]["InvoiceID"] == first["InvoiceID"]
    accounts = xero.get("/Accounts").json()
    validate_schema(accounts, "Accounts")
    assert {a["Class"] for a in accounts["Accounts"]} == {
        "ASSET",
        "EQUITY",
        "EXPENSE",
        "LIABILITY",
        "REVENUE",
    }
    assert any(a["Status"] == "ARCHIVED" for a in accounts["Accounts"])
    account = accounts["Accounts"][0]
    validate_schema(xero.get(f"/Accounts/{account['AccountID']}").json(), "Accounts")


def test_currencies_match_the_schema(xero: XeroApi) -> None:
    body = xero.get("/Currencies").json()
    validate_schema(body, "Currencies")
    assert len(body["Currencies"]) >= 2


def test_validation_errors_use_xeros_error_shape(xero: XeroApi) -> None:
    response = xero.get("/Invoices", params={"where": 'Reference=="x"'})
    assert response.status_code == 400
    body = response.json()
    validate_schema(body, "Error")
    assert body["Type"] == "ValidationException"
    assert body["ErrorNumber"] == 10
    assert "Reference" in body["Elements"][0]["ValidationErrors"][0]["Message"]


def test_unknown_invoice_is_404(xero: XeroApi) -> None:
    response = xero.get("/Invoices/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()["Status"] == 404


def test_invoice_dates_are_midnight_utc_and_match_their_strings(xero: XeroApi) -> None:
    for invoice in xero.get("/Invoices", params={"page": 1}).json()["Invoices"]:
        date = parse_xero_date(invoice["Date"])
        assert (date.hour, date.minute, date.second) == (0, 0, 0)
        assert invoice["DateString"] == date.strftime("%Y-%m-%dT00:00:00")
        updated = parse_xero_date(invoice["UpdatedDateUTC"])
        assert invoice["UpdatedDateUTCString"] == updated.strftime("%Y-%m-%dT%H:%M:%SZ")
