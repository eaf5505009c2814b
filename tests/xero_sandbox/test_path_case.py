"""Xero matches its paths without regard to case; so does the sandbox."""

from __future__ import annotations

import httpx
import pytest

from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import mint_tokens, sandbox_stats, tenant_ids


@pytest.mark.parametrize(
    "path",
    [
        "/api.xro/2.0/invoices",
        "/API.XRO/2.0/INVOICES",
        "/api.xro/2.0/Invoices/",
        "/Api.Xro/2.0/accounts",
    ],
)
def test_accounting_paths_ignore_case(fresh_sandbox: RunningSandbox, path: str) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    bearer = {"Authorization": f"Bearer {mint_tokens(fresh_sandbox)['access_token']}"}
    response = httpx.get(
        f"{fresh_sandbox.base_url}{path}",
        params={"page": 1, "pageSize": 2},
        headers={**bearer, "xero-tenant-id": tenant},
    )
    assert response.status_code == 200, response.text
    assert response.json()["Invoices" if "nvoices" in path.lower() else "Accounts"]
    # Counted (and matched by faults' `path_contains`) under the route's own spelling.
    stats = sandbox_stats(fresh_sandbox)
    assert set(stats["by_path"]) <= {"/Invoices", "/Accounts"}


def test_single_invoice_path_keeps_the_ids_case(fresh_sandbox: RunningSandbox) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    headers = {
        "Authorization": f"Bearer {mint_tokens(fresh_sandbox)['access_token']}",
        "xero-tenant-id": tenant,
    }
    base = f"{fresh_sandbox.base_url}/api.xro/2.0"
    first = httpx.get(f"{base}/Invoices", params={"page": 1}, headers=headers).json()
    invoice = first["Invoices"][0]
    by_number = httpx.get(f"{base}/invoices/{invoice['InvoiceNumber']}", headers=headers)
    assert by_number.status_code == 200, by_number.text
    assert by_number.json()["Invoices"][0]["InvoiceID"] == invoice["InvoiceID"]
    unknown = httpx.get(f"{base}/INVOICES/00000000-0000-4000-8000-000000000000", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["Status"] == 404  # Xero's body, not the router's


def test_connections_as_the_sdks_spell_them(fresh_sandbox: RunningSandbox) -> None:
    bearer = {"Authorization": f"Bearer {mint_tokens(fresh_sandbox)['access_token']}"}
    listed = httpx.get(f"{fresh_sandbox.base_url}/Connections", headers=bearer)
    assert listed.status_code == 200, listed.text
    connection = listed.json()[0]
    deleted = httpx.delete(
        f"{fresh_sandbox.base_url}/Connections/{connection['id']}", headers=bearer
    )
    assert deleted.status_code == 204
    remaining = httpx.get(f"{fresh_sandbox.base_url}/CONNECTIONS", headers=bearer).json()
    assert connection["id"] not in {c["id"] for c in remaining}


def test_identity_paths_ignore_case(fresh_sandbox: RunningSandbox) -> None:
    response = httpx.post(
        f"{fresh_sandbox.base_url}/Connect/Token",
        data={"grant_type": "refresh_token", "refresh_token": "not-a-token"},
    )
    assert response.status_code in (400, 401)  # the token endpoint's own answer, not a 404
    assert "error" in response.json()


def test_unknown_paths_are_still_404(fresh_sandbox: RunningSandbox) -> None:
    assert httpx.get(f"{fresh_sandbox.base_url}/api.xro/2.0/Contacts").status_code in (401, 404)
    assert httpx.get(f"{fresh_sandbox.base_url}/nonsense").status_code == 404
