"""Control API for what Xero changes without telling: edits that leave `UpdatedDateUTC` where it
was, so no incremental sync sees them (the reconciliation sweep's reason to exist).

- A line's account code re-coded: Xero does not mark the invoice updated (documented by Fivetran).
- An account deleted outright (`DELETE /Accounts/{id}`, allowed for accounts no line uses): it
  vanishes from `GET /Accounts`, so only a diff of the full list notices.

Neither emits webhooks: Xero sends none for them either.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from src.xero_sandbox.control import runtime_of
from src.xero_sandbox.render import render_account, render_invoice
from src.xero_sandbox.responses import JsonResponse
from src.xero_sandbox.store import AccountInUse, SandboxDataError, TenantData

router = APIRouter(tags=["sandbox blind spots"])


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status_code=status)


def _tenant(request: Request, tenant_id: str) -> TenantData | None:
    return runtime_of(request).store.tenants.get(tenant_id.lower())


class AccountCodeChange(BaseModel):
    account_code: str = Field(min_length=1, max_length=10, description="An account of the chart")


@router.post("/tenants/{tenant_id}/invoices/{invoice_id}/lines/{position}/account-code")
async def recode_line(
    request: Request,
    tenant_id: str,
    invoice_id: str,
    position: Annotated[int, Path(ge=0, description="The line's position, from 0")],
    body: Annotated[AccountCodeChange, Body()],
) -> Response:
    """Re-code one line to another account without bumping the invoice's UpdatedDateUTC;
    answers the invoice as it now is."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    if tenant.index_of(invoice_id) is None:
        return _error(404, "unknown_invoice", f"No invoice {invoice_id} in tenant {tenant_id}")
    try:
        record = tenant.set_line_account_code(invoice_id, position, body.account_code)
    except SandboxDataError as error:
        return _error(400, "invalid_mutation", str(error))
    return JsonResponse(render_invoice(record, line_items=True))


@router.delete("/tenants/{tenant_id}/accounts/{account_id}")
async def delete_account(request: Request, tenant_id: str, account_id: str) -> Response:
    """Delete an account outright (gone from GET /Accounts and the ground truth); 409 when an
    invoice line uses it, as Xero refuses; answers the account as it was."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    try:
        account = tenant.delete_account(account_id)
    except AccountInUse as error:
        return _error(409, "account_in_use", str(error))
    except LookupError:
        return _error(404, "unknown_account", f"No account {account_id} in tenant {tenant_id}")
    return JsonResponse({"deleted": render_account(account)})
