"""The sandbox's blind spots (issue 13): a line re-coded without a new UpdatedDateUTC, and an
account deleted outright (409 while an invoice line uses it), over the control API and as
Xero's accounting API then answers."""

from __future__ import annotations

import httpx

from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import delete_account_at_xero, mint_tokens, recode_line, tenant_ids


def accounting(sandbox: RunningSandbox, tenant_id: str, path: str, **params: str) -> httpx.Response:
    token = mint_tokens(sandbox, [tenant_id])["access_token"]
    response = httpx.get(
        f"{sandbox.base_url}/api.xro/2.0/{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}", "xero-tenant-id": tenant_id},
    )
    response.raise_for_status()
    return response


def truth(sandbox: RunningSandbox, tenant_id: str, what: str) -> list[dict[str, object]]:
    response = httpx.get(f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/{what}")
    response.raise_for_status()
    key = "Invoices" if what == "invoices" else "Accounts"
    items: list[dict[str, object]] = response.json()[key]
    return items


def test_a_recoded_line_keeps_updated_date_utc(fresh_sandbox: RunningSandbox) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice = next(i for i in truth(fresh_sandbox, tenant, "invoices") if i["Status"] == "PAID")
    invoice_id = str(invoice["InvoiceID"])
    answered = recode_line(fresh_sandbox, tenant, invoice_id, 0, "429")
    line = answered["LineItems"][0]
    assert (line["AccountCode"], answered["UpdatedDateUTC"]) == ("429", invoice["UpdatedDateUTC"])
    chart = {a["Code"]: a["AccountID"] for a in truth(fresh_sandbox, tenant, "accounts")}
    assert line["AccountID"] == chart["429"]
    # Xero's API shows the new code (the other lines as they were).
    read = accounting(fresh_sandbox, tenant, f"Invoices/{invoice_id}").json()["Invoices"][0]
    assert read["LineItems"][0]["AccountCode"] == "429"
    assert read["LineItems"][1:] == invoice["LineItems"][1:]  # type: ignore[index]


def test_recoding_refuses_what_xero_would(fresh_sandbox: RunningSandbox) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoices = truth(fresh_sandbox, tenant, "invoices")
    voided = next(i for i in invoices if i["Status"] == "VOIDED")
    base = f"{fresh_sandbox.base_url}/_sandbox/tenants/{tenant}/invoices"
    for invoice_id, position, code, status in (
        (voided["InvoiceID"], 0, "200", 400),  # voided invoices are final
        (invoices[0]["InvoiceID"], 0, "999", 400),  # no such account
        (invoices[0]["InvoiceID"], 10, "200", 400),  # no such line
        ("00000000-0000-4000-8000-000000000000", 0, "200", 404),
    ):
        response = httpx.post(
            f"{base}/{invoice_id}/lines/{position}/account-code", json={"account_code": code}
        )
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "detail"}


def test_an_unused_account_is_deleted_and_a_used_one_refused(
    fresh_sandbox: RunningSandbox,
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    chart = {a["Code"]: str(a["AccountID"]) for a in truth(fresh_sandbox, tenant, "accounts")}

    used = delete_account_at_xero(fresh_sandbox, tenant, chart["200"])  # sales lines use it
    assert used.status_code == 409
    assert used.json()["error"] == "account_in_use"

    gone = delete_account_at_xero(fresh_sandbox, tenant, chart["091"])  # a bank account
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted"]["Code"] == "091"
    assert "091" not in {a["Code"] for a in truth(fresh_sandbox, tenant, "accounts")}
    listed = accounting(fresh_sandbox, tenant, "Accounts").json()["Accounts"]
    assert chart["091"] not in {a["AccountID"] for a in listed}
    assert delete_account_at_xero(fresh_sandbox, tenant, chart["091"]).status_code == 404

    # An account only an edited line uses is in use too.
    invoice = next(i for i in truth(fresh_sandbox, tenant, "invoices") if i["Status"] == "DRAFT")
    recode_line(fresh_sandbox, tenant, str(invoice["InvoiceID"]), 0, "980")
    assert delete_account_at_xero(fresh_sandbox, tenant, chart["980"]).status_code == 409
